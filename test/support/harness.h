// Integration-test harness: real processes, real sockets on loopback.
//
// Every wait here waits for a condition with a deadline; nothing sleeps and
// hopes. Deadlines are generous (seconds) because the CI machine is shared.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace sluice::test {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Polls `condition` every few milliseconds until it holds or `timeout` passes.
bool wait_until(const std::function<bool()>& condition, std::chrono::milliseconds timeout = 10s);

// Path of a binary the build passes in an environment variable (SLUICE_BIN...).
std::string binary_from_env(const char* variable);

// A child process with its stdout and stderr captured line by line.
class Process {
public:
    Process(const std::string& program, const std::vector<std::string>& args,
            const std::vector<std::string>& extra_env = {});
    ~Process();  // SIGKILL and reap if still running
    Process(const Process&) = delete;
    Process& operator=(const Process&) = delete;

    pid_t pid() const noexcept { return pid_; }
    void send_signal(int signal);
    // Waits for the exit status (exit code, or 128+signal); nullopt on timeout.
    std::optional<int> wait_exit(std::chrono::milliseconds timeout = 10s);
    bool running();

    // Waits for a line containing `needle` on stdout or stderr that was not
    // consumed by an earlier wait; returns the whole line.
    std::optional<std::string> wait_for_line(const std::string& needle, std::chrono::milliseconds timeout = 10s);
    // How many lines so far contain `needle`.
    std::size_t count_lines(const std::string& needle);
    std::string output();  // every line so far (both streams), for failure messages
    // The raw text of one stream so far.
    std::string stdout_text();
    std::string stderr_text();

private:
    void read_output(int stdout_fd, int stderr_fd);

    pid_t pid_ = -1;
    std::optional<int> exit_status_;
    std::thread reader_;
    std::mutex mutex_;
    std::condition_variable changed_;
    std::vector<std::string> lines_;
    std::string raw_[2];  // stdout, stderr as received
    std::size_t consumed_ = 0;  // lines before this index were matched by a wait
};

// A temporary directory removed with its contents at destruction.
class TempDir {
public:
    TempDir();
    ~TempDir();
    const std::string& path() const noexcept { return path_; }
    std::string write(const std::string& name, const std::string& contents) const;

private:
    std::string path_;
};

// sluice itself, started on a config text; learns each listener's real port
// from its "listener NAME listening on ADDR" log lines. "@DIR@" in the config
// text becomes a private temporary directory (for admin sockets, access logs).
class Sluice {
public:
    explicit Sluice(const std::string& config_text, std::vector<std::string> extra_args = {},
                    std::vector<std::string> extra_env = {});
    std::uint16_t port(const std::string& listener) const;
    Process& process() noexcept { return *process_; }
    const std::string& config_path() const noexcept { return config_path_; }
    const std::string& dir() const noexcept { return dir_.path(); }
    // Replaces the config file (same "@DIR@" rule); send SIGHUP to load it.
    void rewrite_config(const std::string& config_text);
    // The port of `metrics = "...:0"`, from the "metrics at http://ADDR/metrics" line.
    std::uint16_t metrics_port();

private:
    TempDir dir_;
    std::string config_path_;
    std::unique_ptr<Process> process_;
    std::map<std::string, std::uint16_t> ports_;
};

enum class Transport { Tcp, Udp };

// sluice-echo on a free loopback port (`Transport::Udp`: sluice-echo --udp).
class EchoBackend {
public:
    explicit EchoBackend(const std::string& name, const std::string& mode = "echo",
                         const std::string& listen = "127.0.0.1:0", Transport transport = Transport::Tcp);
    std::uint16_t port() const noexcept { return port_; }
    std::string address() const;  // "127.0.0.1:PORT"
    void stop();
    Process& process() noexcept { return *process_; }

private:
    std::string listen_ip_;
    std::unique_ptr<Process> process_;
    std::uint16_t port_ = 0;
};

// Catch2 is not thread-safe: REQUIRE, CHECK and INFO may run only on the
// test's main thread. The helpers below that can fail the test (send_all,
// connect_tcp, bind_loopback) therefore behave in two ways. On the main thread
// they fail the test at once, as their comments say. On any other thread (a
// ScriptedServer handler, a test's sender thread) they record the failure
// (record_helper_failure, also printed to stderr) and give up on the operation
// instead, and the main thread asserts on the record: ScriptedServer does so
// for its handlers when it is destroyed; a test with its own threads calls
// check_helper_failures() after joining them (bytes a helper failed to send
// also fail the test's own checks on what arrived).
bool on_main_thread() noexcept;
void record_helper_failure(const std::string& message);

// Failure messages recorded off the main thread. Thread-safe.
class FailureRecord {
public:
    void add(std::string message);
    std::vector<std::string> snapshot();
    std::vector<std::string> take();  // and forget them

private:
    std::mutex mutex_;
    std::vector<std::string> messages_;
};
// Main thread only: fails the test (CHECK) once per failure recorded on
// threads that no ScriptedServer owns, and forgets them.
void check_helper_failures();

// A scripted TCP server for corner cases: runs `handler` on a thread for each
// accepted connection (blocking socket, 10 s receive timeout). Handlers run off
// the main thread, so they must not use Catch2 macros: they report through
// atomics or mutex-protected state the test reads, and the harness helpers
// they call record their failures (see above), as does an exception escaping
// the handler. The destructor, on the main thread, joins every handler and
// fails the test once per recorded failure.
class ScriptedServer {
public:
    explicit ScriptedServer(std::function<void(int fd)> handler);
    // May throw: it asserts on the handlers' failures (not while unwinding).
    ~ScriptedServer() noexcept(false);
    std::uint16_t port() const noexcept { return port_; }
    std::string address() const;
    // What the handlers recorded so far (failed sends, escaped exceptions).
    std::vector<std::string> failures() { return failures_.snapshot(); }

private:
    int listen_fd_ = -1;
    std::uint16_t port_ = 0;
    std::function<void(int)> handler_;
    std::thread acceptor_;
    std::vector<std::thread> handlers_;
    std::mutex mutex_;  // guards handlers_ against the acceptor
    FailureRecord failures_;
};

// A listening socket whose accept queue is full, so further SYNs are dropped
// and a connect to it never completes (for connect_timeout tests).
class BlackholeServer {
public:
    BlackholeServer();
    ~BlackholeServer();
    std::uint16_t port() const noexcept { return port_; }
    std::string address() const;

private:
    int listen_fd_ = -1;
    std::uint16_t port_ = 0;
    std::vector<int> fillers_;
};

// A client of the admin socket: one command, one reply (the lines up to the
// empty line that ends every reply, without it).
class AdminClient {
public:
    explicit AdminClient(const std::string& socket_path);
    ~AdminClient();
    AdminClient(const AdminClient&) = delete;
    AdminClient& operator=(const AdminClient&) = delete;
    std::string command(const std::string& line);
    // Sends raw bytes (no newline added) and reads one reply.
    std::string raw(const std::string& bytes);
    int fd() const noexcept { return fd_; }

private:
    int fd_ = -1;
    std::string buffer_;
};

// One HTTP/1.1 GET on loopback; returns the whole response (status line,
// headers, body) read until the server closes.
std::string http_get(std::uint16_t port, const std::string& path);

// Owns a client socket: closes it at the end of its scope. Move-only.
class Fd {
public:
    explicit Fd(int fd) noexcept : fd(fd) {}
    Fd(Fd&& other) noexcept : fd(std::exchange(other.fd, -1)) {}
    Fd& operator=(Fd&& other) noexcept;
    ~Fd();
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    operator int() const noexcept { return fd; }

    int fd;
};

// A loopback port nothing listens on (bound once to learn a free port, then
// closed): a connect to 127.0.0.1 on it is refused.
std::uint16_t unused_port();
// A socket of `type` (SOCK_STREAM, SOCK_DGRAM) bound to 127.0.0.1 on a port
// the kernel picks, returned in `port`. Fails the test on error; off the main
// thread records the failure and returns -1.
int bind_loopback(int type, std::uint16_t* port);

// Blocking client helpers. All calls fail the test on error unless they report
// the error; off the main thread they record the failure instead (see
// record_helper_failure): connect_tcp returns -1, send_all stops sending.
int connect_tcp(std::uint16_t port, const std::string& ip = "127.0.0.1", const std::string& source_ip = "");
void set_receive_timeout(int fd, std::chrono::milliseconds timeout);
void send_all(int fd, const void* data, std::size_t length);
void send_all(int fd, const std::string& data);
// Reads exactly `length` bytes; returns fewer only on EOF/error/timeout.
std::string recv_exact(int fd, std::size_t length);
// Reads one line (without the newline).
std::string recv_line(int fd);
// Reads until EOF; `error` receives errno if the read ended with an error.
std::string recv_until_eof(int fd, int* error = nullptr);
// Descriptors a process holds open whose /proc/PID/fd link starts with `kind`
// ("socket:", "pipe:"), to prove none leak or to see what it uses.
std::size_t open_fd_count(pid_t pid, std::string_view kind);
// Sockets a process holds open, to prove none leak.
inline std::size_t open_socket_count(pid_t pid) { return open_fd_count(pid, "socket:"); }
// Resident set size of a process in KiB (VmRSS).
long rss_kib(pid_t pid);
// Deterministic pseudo-random bytes.
std::string random_bytes(std::size_t length, std::uint64_t seed);

// The shipped recipes (conf/examples/) as tests adapt them: the whole file
// (fails the test when it cannot be read), and every `from` replaced by `to`
// (fails the test when there is none: the example changed under the test).
std::string read_text_file(const std::string& path);
void replace_all(std::string& text, const std::string& from, const std::string& to);

} // namespace sluice::test
