// Fault-suite helpers (test/integration/fault_test.cpp, scripts/soak): checked
// byte streams with half-close both ways, a load of short connections that
// records when each one started and how it ended, sluice under a descriptor
// limit, and the soak switch.
//
// Helper threads never touch Catch2: they report through the values returned
// or through mutex-protected state read on the test's main thread.
#pragma once

#include "harness.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace sluice::test {

// ---- soak switch ---------------------------------------------------------------

// SLUICE_SOAK=1 (scripts/soak) asks for the long variants of the fault tests.
bool soak_enabled();
// SLUICE_SOAK_MINUTES (default 10): the time a soak run may spend in all.
double soak_minutes();
// Prints "fault summary: <text>" on stderr; scripts/soak collects these lines.
void print_summary(const std::string& text);

// ---- descriptors -----------------------------------------------------------------

// Raises this process's soft RLIMIT_NOFILE to min(wanted, hard); returns the
// soft limit now in force.
long raise_own_fd_limit(long wanted);
// The hard RLIMIT_NOFILE of this process.
long hard_fd_limit();

// ---- checked streams -----------------------------------------------------------

// What one end of a stream does: it sends `send_bytes` pseudo-random bytes
// (from `data_seed`) in writes of random sizes while reading whatever comes,
// and shuts its write side with shutdown(SHUT_WR). An end that shuts first
// sends everything and shuts without waiting; the other sends an eighth,
// waits for the peer's FIN, then sends the rest over the half-closed
// connection and shuts. Both ends read until EOF.
struct EndPlan {
    std::uint64_t send_bytes = 0;
    std::uint64_t data_seed = 0;
    std::uint64_t io_seed = 0;  // write and read sizes
    bool shut_first = false;
    // Reads 32 KiB every 5 ms at most, in small pieces: sluice's writes to
    // this end are often partial.
    bool slow_reader = false;
    int receive_buffer = 0;  // SO_RCVBUF of a client end, set before connect; 0: the kernel's
    // Once only `hold_tail` of the `receive_bytes` the peer sends are left,
    // stops reading until the peer's FIN is out (FinBoard), for kMaxHold at
    // most. A tail larger than the kernel buffers between sluice and this end
    // (about 4 MB on loopback) leaves sluice waiting for room with the rest
    // of the tail and the FIN queued on its other socket, and then moving
    // them in a burst: the state in which the fault probe's streams hung.
    std::uint64_t receive_bytes = 0;
    std::uint64_t hold_tail = 0;  // 0: never
};

// How one end finished. `error` is empty when it sent everything, shut its
// write side and read the peer's FIN, all before its deadline.
struct EndResult {
    std::uint64_t sent = 0;
    std::uint64_t received = 0;
    std::string sent_sha256;
    std::string received_sha256;
    bool eof_seen = false;  // read returned 0: the peer's FIN arrived
    bool shut = false;      // our FIN went out
    std::string error;
    double seconds = 0;
};

// One stream: the client end and the backend end.
struct StreamPlan {
    std::uint32_t id = 0;
    EndPlan client;
    EndPlan backend;
};

// Which ends of each stream have sent their FIN. Both ends of a stream run in
// this process, so an end holding its tail can wait for its peer's FIN.
class FinBoard {
public:
    explicit FinBoard(std::size_t streams);
    // Lowers every flag, for the next round of streams.
    void reset() noexcept;
    // nullptr for an id out of range.
    std::atomic<bool>* client(std::uint32_t id) noexcept;
    std::atomic<bool>* backend(std::uint32_t id) noexcept;

private:
    std::size_t streams_;
    std::unique_ptr<std::atomic<bool>[]> client_, backend_;
};

// `count` streams from `seed`: directions of `bulk_bytes` (up to 25 % less,
// at random), some nearly empty (0 to 64 KiB) or empty; the client shuts
// first in even streams, the backend in odd ones. In seven streams of eight,
// each end holds a tail of 4 to 5 MiB of a bulk direction (of at least 5
// MiB); in the eighth both ends are slow readers, the client's with a 16 KiB
// receive buffer. Other receive buffers are 64 KiB (StreamServer's too).
std::vector<StreamPlan> integrity_plans(int count, std::uint64_t bulk_bytes, std::uint64_t seed);

// Runs one end on a connected socket (made non-blocking here) until it is
// done or `deadline` passes; raises `own_fin` once its FIN is out and, when
// holding its tail, watches `peer_fin`. Does not close the socket.
EndResult run_stream_end(int fd, const EndPlan& plan, Clock::time_point deadline, std::atomic<bool>* own_fin,
                         const std::atomic<bool>* peer_fin);

// The backend side of the checked streams: reads the plan of the stream from
// a header the client end sends first, then runs the backend end, one thread
// per connection, each with `deadline` from its accept.
class StreamServer {
public:
    StreamServer(std::chrono::milliseconds deadline, FinBoard& fins);
    ~StreamServer();
    StreamServer(const StreamServer&) = delete;
    StreamServer& operator=(const StreamServer&) = delete;
    std::uint16_t port() const noexcept { return port_; }
    std::string address() const;
    // Results by stream id of the backend ends that have finished, handed
    // over (the next round starts with none).
    std::map<std::uint32_t, EndResult> take_results();
    std::size_t finished();

private:
    void serve(int fd);

    std::chrono::milliseconds deadline_;
    FinBoard& fins_;
    int listen_fd_ = -1;
    std::uint16_t port_ = 0;
    std::mutex mutex_;
    std::map<std::uint32_t, EndResult> results_;
    struct Handler {
        std::thread thread;
        std::shared_ptr<std::atomic<bool>> done;  // shared with the thread, which may outlive a vector slot move
    };
    std::vector<Handler> handlers_;  // guarded by mutex_
    std::thread acceptor_;
};

// Connects to 127.0.0.1:`port`, sends the stream's header and runs the client
// end. Connect failures are reported in `error`. Any thread.
EndResult run_stream_client(std::uint16_t port, const StreamPlan& plan, Clock::time_point deadline, FinBoard& fins);

// ---- short connections -------------------------------------------------------------

// Client threads that connect, read the backend's whoami line, send a line,
// read it echoed and close, over and over (backends: sluice-echo --mode
// whoami). Every connection that did not complete is kept with its start time
// and why, so a test can tell a session cut by a backend's death from a new
// connection that failed.
class ShortConnectionLoad {
public:
    struct Failure {
        Clock::time_point started;
        std::string backend;  // whoami answer, "" if none came
        std::string why;
    };

    ShortConnectionLoad(std::uint16_t port, int threads);
    ~ShortConnectionLoad();
    ShortConnectionLoad(const ShortConnectionLoad&) = delete;
    ShortConnectionLoad& operator=(const ShortConnectionLoad&) = delete;
    void stop();

    std::uint64_t ok() const noexcept { return ok_.load(); }
    std::uint64_t ok_by(const std::string& backend);
    std::vector<Failure> failures();

private:
    void run(std::uint16_t port, int thread);

    std::atomic<bool> stop_{false};
    std::atomic<std::uint64_t> ok_{0};
    std::mutex mutex_;
    std::map<std::string, std::uint64_t> ok_by_;
    std::vector<Failure> failures_;
    std::vector<std::thread> threads_;
};

// A TCP connect to 127.0.0.1:`port` that reports failure (-1, errno set)
// instead of failing the test, with a receive timeout. Any thread.
int connect_or_fail(std::uint16_t port, std::chrono::milliseconds receive_timeout = 10s);

// ---- sluice under a descriptor limit ---------------------------------------------

// sluice started through prlimit(1) with RLIMIT_NOFILE soft = hard =
// `fd_limit` (sluice raises its soft limit to the hard one at start, so both
// must be set). Same "@DIR@" rule and port discovery as Sluice.
class LimitedSluice {
public:
    LimitedSluice(const std::string& config_text, long fd_limit);
    std::uint16_t port(const std::string& listener) const;
    Process& process() noexcept { return *process_; }
    const std::string& dir() const noexcept { return dir_.path(); }

private:
    TempDir dir_;
    std::unique_ptr<Process> process_;
    std::map<std::string, std::uint16_t> ports_;
};

// M in the "sluice started: N workers, max M sessions, ..." line of a log, or -1.
long started_max_sessions(const std::string& log);

} // namespace sluice::test
