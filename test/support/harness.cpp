#include "harness.h"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <netinet/in.h>
#include <poll.h>
#include <sstream>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

namespace sluice::test {

// ---- failures off the main thread ---------------------------------------------

namespace {

// Static initialisation runs on the main thread, before Catch2's main().
const std::thread::id g_main_thread = std::this_thread::get_id();

// Failures on threads that no ScriptedServer owns.
FailureRecord g_helper_failures;
// Where this thread's failures go: its ScriptedServer's record, or the global one.
thread_local FailureRecord* t_failures = nullptr;

// Fails the test on the main thread (throws, like REQUIRE); elsewhere records
// the failure and returns, and the caller gives up on what it was doing.
void fail(const std::string& message)
{
    if (on_main_thread())
        FAIL(message);
    record_helper_failure(message);
}

// Main thread: one failed CHECK per message. While unwinding from a failure an
// assertion must not throw again, so the messages only go to stderr then.
void check_recorded(std::vector<std::string> messages, const char* where)
{
    for (const auto& message : messages) {
        if (std::uncaught_exceptions() > 0)
            std::fprintf(stderr, "%s failed: %s\n", where, message.c_str());
        else
            FAIL_CHECK(where << " failed: " << message);
    }
}

} // namespace

bool on_main_thread() noexcept { return std::this_thread::get_id() == g_main_thread; }

void record_helper_failure(const std::string& message)
{
    // Also at once on stderr: the test log shows it even if a hang follows.
    std::fprintf(stderr, "helper thread failure: %s\n", message.c_str());
    (t_failures ? *t_failures : g_helper_failures).add(message);
}

void check_helper_failures() { check_recorded(g_helper_failures.take(), "helper thread"); }

void FailureRecord::add(std::string message)
{
    std::lock_guard lock(mutex_);
    messages_.push_back(std::move(message));
}

std::vector<std::string> FailureRecord::snapshot()
{
    std::lock_guard lock(mutex_);
    return messages_;
}

std::vector<std::string> FailureRecord::take()
{
    std::lock_guard lock(mutex_);
    return std::exchange(messages_, {});
}

// ---- waiting --------------------------------------------------------------------

bool wait_until(const std::function<bool()>& condition, std::chrono::milliseconds timeout)
{
    auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
        if (condition())
            return true;
        std::this_thread::sleep_for(5ms);
    }
    return condition();
}

std::string binary_from_env(const char* variable)
{
    const char* value = std::getenv(variable);
    if (!value || !*value)
        FAIL(std::string("environment variable ") + variable + " is not set (run through meson test)");
    return value;
}

// ---- Process ----------------------------------------------------------------

Process::Process(const std::string& program, const std::vector<std::string>& args,
                 const std::vector<std::string>& extra_env)
{
    int out[2], err[2];
    REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
    REQUIRE(::pipe2(err, O_CLOEXEC) == 0);
    std::vector<std::string> argv_storage{program};
    argv_storage.insert(argv_storage.end(), args.begin(), args.end());
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
        ::dup2(out[1], STDOUT_FILENO);
        ::dup2(err[1], STDERR_FILENO);
        for (const auto& e : extra_env)
            ::putenv(const_cast<char*>(e.c_str()));
        std::vector<char*> argv;
        for (auto& a : argv_storage)
            argv.push_back(a.data());
        argv.push_back(nullptr);
        // Tests block no signals, but be explicit: the child starts clean.
        sigset_t none;
        sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
        ::execv(program.c_str(), argv.data());
        ::_exit(127);
    }
    ::close(out[1]);
    ::close(err[1]);
    reader_ = std::thread([this, o = out[0], e = err[0]] { read_output(o, e); });
}

Process::~Process()
{
    if (!exit_status_ && pid_ > 0) {
        ::kill(pid_, SIGKILL);
        wait_exit(5s);
    }
    if (reader_.joinable())
        reader_.join();
}

void Process::read_output(int stdout_fd, int stderr_fd)
{
    std::string partial[2];
    pollfd fds[2] = {{stdout_fd, POLLIN, 0}, {stderr_fd, POLLIN, 0}};
    int open_count = 2;
    char buf[4096];
    while (open_count > 0) {
        if (::poll(fds, 2, -1) < 0 && errno != EINTR)
            break;
        for (int i = 0; i < 2; ++i) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t n = ::read(fds[i].fd, buf, sizeof(buf));
            if (n <= 0) {
                ::close(fds[i].fd);
                fds[i].fd = -1;
                --open_count;
                continue;
            }
            partial[i].append(buf, static_cast<std::size_t>(n));
            std::size_t nl;
            std::lock_guard lock(mutex_);
            raw_[i].append(buf, static_cast<std::size_t>(n));
            while ((nl = partial[i].find('\n')) != std::string::npos) {
                lines_.push_back(partial[i].substr(0, nl));
                partial[i].erase(0, nl + 1);
            }
            changed_.notify_all();
        }
    }
}

void Process::send_signal(int signal)
{
    if (!exit_status_)
        ::kill(pid_, signal);
}

std::optional<int> Process::wait_exit(std::chrono::milliseconds timeout)
{
    if (exit_status_)
        return exit_status_;
    auto deadline = Clock::now() + timeout;
    while (true) {
        int status = 0;
        pid_t r = ::waitpid(pid_, &status, WNOHANG);
        if (r == pid_) {
            exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            // The pipes close with the child: collect everything it wrote.
            if (reader_.joinable())
                reader_.join();
            return exit_status_;
        }
        if (Clock::now() >= deadline)
            return std::nullopt;
        std::this_thread::sleep_for(5ms);
    }
}

bool Process::running() { return !wait_exit(0ms).has_value(); }

std::optional<std::string> Process::wait_for_line(const std::string& needle, std::chrono::milliseconds timeout)
{
    std::unique_lock lock(mutex_);
    auto deadline = Clock::now() + timeout;
    while (true) {
        for (std::size_t i = consumed_; i < lines_.size(); ++i) {
            if (lines_[i].find(needle) != std::string::npos) {
                consumed_ = i + 1;
                return lines_[i];
            }
        }
        if (changed_.wait_until(lock, deadline) == std::cv_status::timeout) {
            for (std::size_t i = consumed_; i < lines_.size(); ++i)
                if (lines_[i].find(needle) != std::string::npos) {
                    consumed_ = i + 1;
                    return lines_[i];
                }
            return std::nullopt;
        }
    }
}

std::size_t Process::count_lines(const std::string& needle)
{
    std::lock_guard lock(mutex_);
    std::size_t count = 0;
    for (const auto& line : lines_)
        if (line.find(needle) != std::string::npos)
            ++count;
    return count;
}

std::string Process::stdout_text()
{
    std::lock_guard lock(mutex_);
    return raw_[0];
}

std::string Process::stderr_text()
{
    std::lock_guard lock(mutex_);
    return raw_[1];
}

std::string Process::output()
{
    std::lock_guard lock(mutex_);
    std::string all;
    for (const auto& line : lines_)
        all += line + "\n";
    return all;
}

// ---- TempDir ------------------------------------------------------------------

TempDir::TempDir()
{
    char pattern[] = "/tmp/sluice-test-XXXXXX";
    REQUIRE(::mkdtemp(pattern) != nullptr);
    path_ = pattern;
}

TempDir::~TempDir()
{
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
}

std::string TempDir::write(const std::string& name, const std::string& contents) const
{
    std::string file = path_ + "/" + name;
    std::ofstream(file) << contents;
    return file;
}

// ---- Sluice ---------------------------------------------------------------------

namespace {

// "... listening on 127.0.0.1:4321 ..." -> 4321
std::uint16_t port_after(const std::string& line, const std::string& marker)
{
    auto at = line.find(marker);
    REQUIRE(at != std::string::npos);
    std::string rest = line.substr(at + marker.size());
    auto space = rest.find(' ');
    std::string address = rest.substr(0, space);
    auto colon = address.rfind(':');
    REQUIRE(colon != std::string::npos);
    return static_cast<std::uint16_t>(std::stoi(address.substr(colon + 1)));
}

} // namespace

namespace {

std::string with_dir(std::string text, const std::string& dir)
{
    for (std::size_t at; (at = text.find("@DIR@")) != std::string::npos;)
        text.replace(at, 5, dir);
    return text;
}

} // namespace

Sluice::Sluice(const std::string& config_text, std::vector<std::string> extra_args, std::vector<std::string> extra_env)
{
    config_path_ = dir_.write("sluice.toml", with_dir(config_text, dir_.path()));
    std::vector<std::string> args{"-c", config_path_};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    process_ = std::make_unique<Process>(binary_from_env("SLUICE_BIN"), args, extra_env);
    auto started = process_->wait_for_line("sluice started", 10s);
    INFO(process_->output());
    REQUIRE(started);
    // Listener lines come before "sluice started"; collect them all.
    std::string all = process_->output();
    std::size_t pos = 0;
    const std::string marker = "listening on ";
    while ((pos = all.find("listener ", pos)) != std::string::npos) {
        auto end = all.find('\n', pos);
        std::string line = all.substr(pos, end - pos);
        pos = end;
        if (line.find(marker) == std::string::npos)
            continue;
        std::string name = line.substr(9, line.find(' ', 9) - 9);
        ports_[name] = port_after(line, marker);
    }
}

void Sluice::rewrite_config(const std::string& config_text)
{
    // Write aside and rename, so a reload never reads a half-written file.
    std::string tmp = dir_.write("sluice.toml.new", with_dir(config_text, dir_.path()));
    REQUIRE(::rename(tmp.c_str(), config_path_.c_str()) == 0);
}

std::uint16_t Sluice::metrics_port()
{
    std::string all = process_->output();
    auto at = all.find("metrics at http://");
    REQUIRE(at != std::string::npos);
    auto end = all.find("/metrics", at + 18);
    std::string address = all.substr(at + 18, end - at - 18);
    return static_cast<std::uint16_t>(std::stoi(address.substr(address.rfind(':') + 1)));
}

std::uint16_t Sluice::port(const std::string& listener) const
{
    auto it = ports_.find(listener);
    REQUIRE(it != ports_.end());
    return it->second;
}

// ---- EchoBackend ----------------------------------------------------------------

EchoBackend::EchoBackend(const std::string& name, const std::string& mode, const std::string& listen,
                         Transport transport)
{
    listen_ip_ = listen.substr(0, listen.rfind(':'));
    std::vector<std::string> args{"--listen", listen, "--name", name, "--mode", mode};
    if (transport == Transport::Udp)
        args.push_back("--udp");
    process_ = std::make_unique<Process>(binary_from_env("SLUICE_ECHO_BIN"), args);
    auto line = process_->wait_for_line("listening on", 10s);
    INFO(process_->output());
    REQUIRE(line);
    port_ = port_after(*line, "listening on ");
}

std::string EchoBackend::address() const { return listen_ip_ + ":" + std::to_string(port_); }

void EchoBackend::stop()
{
    process_->send_signal(SIGKILL);
    process_->wait_exit(5s);
}

// ---- ScriptedServer ---------------------------------------------------------------

int bind_loopback(int type, std::uint16_t* port)
{
    int fd = ::socket(AF_INET, type | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fail(std::string("socket: ") + std::strerror(errno));
        return -1;
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0
        || ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        std::string error = std::string("bind to 127.0.0.1:0: ") + std::strerror(errno);
        ::close(fd);
        fail(error);
        return -1;
    }
    *port = ntohs(addr.sin_port);
    return fd;
}

namespace {

int listen_loopback(int backlog, std::uint16_t* port)
{
    int fd = bind_loopback(SOCK_STREAM, port);
    REQUIRE(::listen(fd, backlog) == 0);
    return fd;
}

} // namespace

ScriptedServer::ScriptedServer(std::function<void(int fd)> handler) : handler_(std::move(handler))
{
    listen_fd_ = listen_loopback(128, &port_);
    acceptor_ = std::thread([this] {
        while (true) {
            int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
            if (fd < 0)
                return;  // listener shut down
            set_receive_timeout(fd, 10s);
            std::lock_guard lock(mutex_);
            handlers_.emplace_back([this, fd] {
                t_failures = &failures_;
                try {
                    handler_(fd);
                } catch (const std::exception& e) {
                    record_helper_failure(std::string("handler threw: ") + e.what());
                } catch (...) {
                    // Catch2's own failure exception is no std::exception.
                    record_helper_failure("handler threw (a Catch2 assertion off the main thread?)");
                }
                ::close(fd);
            });
        }
    });
}

ScriptedServer::~ScriptedServer() noexcept(false)
{
    ::shutdown(listen_fd_, SHUT_RDWR);
    acceptor_.join();
    ::close(listen_fd_);
    for (auto& t : handlers_)
        t.join();
    check_recorded(failures_.take(), "ScriptedServer handler");
}

std::string ScriptedServer::address() const { return "127.0.0.1:" + std::to_string(port_); }

// ---- BlackholeServer ---------------------------------------------------------------

BlackholeServer::BlackholeServer()
{
    listen_fd_ = listen_loopback(0, &port_);
    // Fill the accept queue (backlog 0 admits one) until a connect hangs.
    for (int i = 0; i < 8; ++i) {
        int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = htons(port_);
        ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
        fillers_.push_back(fd);
        pollfd p{fd, POLLOUT, 0};
        if (::poll(&p, 1, 200) == 0)
            return;  // this one hangs: the queue is full
    }
    FAIL("could not fill the accept queue of the blackhole listener");
}

BlackholeServer::~BlackholeServer()
{
    for (int fd : fillers_)
        ::close(fd);
    ::close(listen_fd_);
}

std::string BlackholeServer::address() const { return "127.0.0.1:" + std::to_string(port_); }

// ---- admin and HTTP clients ------------------------------------------------------------

AdminClient::AdminClient(const std::string& socket_path)
{
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    REQUIRE(socket_path.size() < sizeof(address.sun_path));
    std::memcpy(address.sun_path, socket_path.c_str(), socket_path.size() + 1);
    INFO("connect to " << socket_path << ": " << std::strerror(errno));
    REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
    set_receive_timeout(fd_, 10s);
}

AdminClient::~AdminClient()
{
    if (fd_ >= 0)
        ::close(fd_);
}

std::string AdminClient::command(const std::string& line) { return raw(line + "\n"); }

std::string AdminClient::raw(const std::string& bytes)
{
    send_all(fd_, bytes);
    while (true) {
        auto end = buffer_.find("\n\n");
        if (end != std::string::npos) {
            std::string reply = buffer_.substr(0, end);
            buffer_.erase(0, end + 2);
            return reply;
        }
        char buf[65536];
        ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return "<connection closed: " + buffer_ + ">";
        buffer_.append(buf, static_cast<std::size_t>(n));
    }
}

std::string http_get(std::uint16_t port, const std::string& path)
{
    int fd = connect_tcp(port);
    send_all(fd, "GET " + path + " HTTP/1.1\r\nHost: localhost\r\n\r\n");
    std::string response = recv_until_eof(fd);
    ::close(fd);
    return response;
}

// ---- clients ---------------------------------------------------------------------------

Fd& Fd::operator=(Fd&& other) noexcept
{
    if (this != &other) {
        if (fd >= 0)
            ::close(fd);
        fd = std::exchange(other.fd, -1);
    }
    return *this;
}

Fd::~Fd()
{
    if (fd >= 0)
        ::close(fd);
}

std::uint16_t unused_port()
{
    // Bound but never listening, then closed: the port is free again and a
    // SYN to it is answered with RST. Another process could take it in
    // between, which on a test machine's loopback does not happen in practice.
    std::uint16_t port = 0;
    ::close(bind_loopback(SOCK_STREAM, &port));
    return port;
}

int connect_tcp(std::uint16_t port, const std::string& ip, const std::string& source_ip)
{
    bool v6 = ip.find(':') != std::string::npos;
    int fd = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fail(std::string("socket: ") + std::strerror(errno));
        return -1;
    }
    if (!source_ip.empty()) {
        sockaddr_in src{};
        src.sin_family = AF_INET;
        ::inet_pton(AF_INET, source_ip.c_str(), &src.sin_addr);
        if (::bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof(src)) != 0) {
            std::string error = "bind to " + source_ip + ": " + std::strerror(errno);
            ::close(fd);
            fail(error);
            return -1;
        }
    }
    int rc;
    if (v6) {
        sockaddr_in6 addr{};
        addr.sin6_family = AF_INET6;
        addr.sin6_port = htons(port);
        ::inet_pton(AF_INET6, ip.c_str(), &addr.sin6_addr);
        rc = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    } else {
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(port);
        ::inet_pton(AF_INET, ip.c_str(), &addr.sin_addr);
        rc = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    }
    if (rc != 0) {
        std::string error = "connect to " + ip + ":" + std::to_string(port) + ": " + std::strerror(errno);
        ::close(fd);
        fail(error);
        return -1;
    }
    set_receive_timeout(fd, 10s);
    return fd;
}

void set_receive_timeout(int fd, std::chrono::milliseconds timeout)
{
    timeval tv{};
    tv.tv_sec = timeout.count() / 1000;
    tv.tv_usec = (timeout.count() % 1000) * 1000;
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

void send_all(int fd, const void* data, std::size_t length)
{
    auto p = static_cast<const char*>(data);
    while (length > 0) {
        ssize_t n = ::send(fd, p, length, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fail(std::string("send: ") + (n < 0 ? std::strerror(errno) : "sent nothing"));
            return;
        }
        p += n;
        length -= static_cast<std::size_t>(n);
    }
}

void send_all(int fd, const std::string& data) { send_all(fd, data.data(), data.size()); }

std::string recv_exact(int fd, std::size_t length)
{
    std::string out(length, '\0');
    std::size_t got = 0;
    while (got < length) {
        ssize_t n = ::recv(fd, out.data() + got, length - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += static_cast<std::size_t>(n);
    }
    out.resize(got);
    return out;
}

std::string recv_line(int fd)
{
    std::string line;
    char c;
    while (::recv(fd, &c, 1, 0) == 1 && c != '\n')
        line += c;
    return line;
}

std::string recv_until_eof(int fd, int* error)
{
    std::string out;
    char buf[65536];
    if (error)
        *error = 0;
    while (true) {
        ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            if (error)
                *error = errno;
            break;
        }
        if (n == 0)
            break;
        out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
}

std::size_t open_fd_count(pid_t pid, std::string_view kind)
{
    std::size_t count = 0;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) {
        std::error_code link_error;
        auto target = std::filesystem::read_symlink(entry.path(), link_error);
        if (!link_error && target.string().starts_with(kind))
            ++count;
    }
    return count;
}

long rss_kib(pid_t pid)
{
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    std::string key;
    while (status >> key) {
        if (key == "VmRSS:") {
            long kib = 0;
            status >> kib;
            return kib;
        }
        std::getline(status, key);
    }
    return -1;
}

std::string random_bytes(std::size_t length, std::uint64_t seed)
{
    std::string out(length, '\0');
    std::uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 1;
    for (std::size_t i = 0; i < length; ++i) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out[i] = static_cast<char>(x);
    }
    return out;
}

std::string read_text_file(const std::string& path)
{
    std::ifstream in(path);
    INFO("cannot read " << path);
    REQUIRE(in);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

void replace_all(std::string& text, const std::string& from, const std::string& to)
{
    std::size_t at = text.find(from);
    INFO("the example no longer contains " << from);
    REQUIRE(at != std::string::npos);
    for (; at != std::string::npos; at = text.find(from, at + to.size()))
        text.replace(at, from.size(), to);
}

} // namespace sluice::test
