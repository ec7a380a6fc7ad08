// A log sink that stops reading (a stuck journald, a full stderr pipe) must
// not stop traffic: sluice keeps serving, drops and counts the lines it
// cannot write, and says how many once the sink reads again.
#include "harness.h"
#include "operations_support.h"

#include "sluice/log.h"

#include <catch2/catch.hpp>

#include <csignal>
#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace sluice::test;

namespace {

// sluice with its stderr connected to a pipe that this test reads only when
// it chooses to: between reads, the pipe fills and stays full, as it does
// when nobody drains journald's stream. (The harness's Process reads
// continuously, so this test starts sluice itself.)
class StalledSluice {
public:
    explicit StalledSluice(std::string config_text)
    {
        for (std::size_t at; (at = config_text.find("@DIR@")) != std::string::npos;)
            config_text.replace(at, 5, dir_.path());
        std::string config_path = dir_.write("sluice.toml", config_text);
        std::string program = binary_from_env("SLUICE_BIN");
        int err[2];
        REQUIRE(::pipe2(err, O_CLOEXEC) == 0);
        pid_ = ::fork();
        REQUIRE(pid_ >= 0);
        if (pid_ == 0) {
            int null_fd = ::open("/dev/null", O_WRONLY);
            ::dup2(null_fd, STDOUT_FILENO);
            ::dup2(err[1], STDERR_FILENO);
            sigset_t none;
            sigemptyset(&none);
            ::sigprocmask(SIG_SETMASK, &none, nullptr);
            const char* argv[] = {program.c_str(), "-c", config_path.c_str(), nullptr};
            ::execv(program.c_str(), const_cast<char**>(argv));
            ::_exit(127);
        }
        ::close(err[1]);
        stderr_fd_ = err[0];
        bool started = read_until([&] { return text_.find("sluice started") != std::string::npos; }, 10s);
        INFO(text_);
        REQUIRE(started);
        listener_port_ = port_after("listening on 127.0.0.1:");
        metrics_port_ = port_after("metrics at http://127.0.0.1:");
    }

    ~StalledSluice()
    {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
        ::close(stderr_fd_);
    }

    StalledSluice(const StalledSluice&) = delete;
    StalledSluice& operator=(const StalledSluice&) = delete;

    // Reads stderr until `done()` holds, the pipe closes or `timeout` passes.
    bool read_until(const std::function<bool()>& done, std::chrono::milliseconds timeout)
    {
        auto deadline = Clock::now() + timeout;
        char buf[65536];
        while (!done()) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
            if (left.count() <= 0)
                return false;
            pollfd p{stderr_fd_, POLLIN, 0};
            if (::poll(&p, 1, static_cast<int>(left.count())) <= 0)
                continue;
            ssize_t n = ::read(stderr_fd_, buf, sizeof(buf));
            if (n <= 0)
                return done();
            text_.append(buf, static_cast<std::size_t>(n));
        }
        return true;
    }

    // Exit status once it exits within `timeout` (stderr is not read meanwhile).
    std::optional<int> wait_exit(std::chrono::milliseconds timeout)
    {
        int status = 0;
        if (!wait_until([&] { return ::waitpid(pid_, &status, WNOHANG) == pid_; }, timeout))
            return std::nullopt;
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }

    pid_t pid() const noexcept { return pid_; }
    std::uint16_t listener_port() const noexcept { return listener_port_; }
    std::uint16_t metrics_port() const noexcept { return metrics_port_; }
    const std::string& text() const noexcept { return text_; }

    // Lines read so far that contain `needle`.
    std::size_t count(std::string_view needle) const
    {
        std::size_t n = 0;
        for (std::size_t at = 0; (at = text_.find(needle, at)) != std::string::npos; at += needle.size())
            ++n;
        return n;
    }

    // The sum of N over the "log: N lines dropped" lines read so far.
    std::uint64_t reported_drops() const
    {
        const std::string marker = "log: ";
        std::uint64_t sum = 0;
        for (std::size_t at = 0; (at = text_.find(marker, at)) != std::string::npos; at += marker.size()) {
            std::size_t end = text_.find('\n', at);
            if (text_.substr(at, end - at).find(" lines dropped (sink too slow)") != std::string::npos)
                sum += std::stoull(text_.substr(at + marker.size()));
        }
        return sum;
    }

private:
    std::uint16_t port_after(const std::string& marker) const
    {
        auto at = text_.find(marker);
        INFO(text_);
        REQUIRE(at != std::string::npos);
        return static_cast<std::uint16_t>(std::stoi(text_.substr(at + marker.size())));
    }

    TempDir dir_;
    pid_t pid_ = -1;
    int stderr_fd_ = -1;
    std::string text_;
    std::uint16_t listener_port_ = 0;
    std::uint16_t metrics_port_ = 0;
};

// One short session: one byte there and back, then close. False when sluice
// did not answer within the timeout (a worker stuck in write(2)).
bool one_session(std::uint16_t port)
{
    int fd = try_connect(port);
    if (fd < 0)
        return false;
    Fd client(fd);
    set_receive_timeout(client, 2s);
    if (::send(client, "x", 1, MSG_NOSIGNAL) != 1)
        return false;
    char reply = 0;
    return ::recv(client, &reply, 1, 0) == 1 && reply == 'x';
}

// Long names make each access log line about 3 KB (listener, pool and backend
// names are in it), so a few thousand sessions overfill the pipe and the log
// queue within a second or two.
const std::string kListener = "front-" + std::string(1000, 'l');
const std::string kPool = "pool-" + std::string(1000, 'p');
constexpr std::size_t kLineBytes = 3000;

std::string stalled_config(const std::string& backend)
{
    return fmt::format("[global]\nworkers = 2\n\n[admin]\nmetrics = \"127.0.0.1:0\"\n\n"
                       "[[listeners]]\nname = \"{}\"\nlisten = \"127.0.0.1:0\"\npool = \"{}\"\n"
                       "access_log = \"-\"\n\n[pools.{}]\nbackends = [{{ address = \"{}\", name = \"{}\" }}]\n",
                       kListener, kPool, kPool, backend, "backend-" + std::string(1000, 'b'));
}

// Sessions to push through sluice while its stderr is stalled: twice what
// the log queue holds (each line costs its text plus kLineOverhead).
constexpr int kSessions = static_cast<int>(2 * sluice::log::kQueueBytes / kLineBytes);

} // namespace

TEST_CASE("a stalled stderr does not stop traffic: every session is served and the lost lines are counted")
{
    EchoBackend backend("a");
    StalledSluice sluice(stalled_config(backend.address()));

    int served = 0;
    while (served < kSessions && one_session(sluice.listener_port()))
        ++served;
    REQUIRE(served == kSessions);

    // The sink is still stalled: the loss is in the metric already.
    std::string metrics = http_get(sluice.metrics_port(), "/metrics");
    INFO(metrics);
    REQUIRE(metric_value(metrics, "sluice_log_lines_dropped_total") > 0);
    CHECK(metrics.find("# TYPE sluice_log_lines_dropped_total counter\n") != std::string::npos);

    // The sink reads again: every session is either in the access log or
    // in the count of dropped lines that sluice reports, exactly.
    const std::string access_line = " listener=" + kListener + " client=";
    bool accounted = sluice.read_until(
        [&] {
            std::uint64_t drops = sluice.reported_drops();
            return drops > 0 && sluice.count(access_line) + drops == std::uint64_t{kSessions};
        },
        20s);
    INFO("access lines " << sluice.count(access_line) << ", reported drops " << sluice.reported_drops());
    CHECK(accounted);
    metrics = http_get(sluice.metrics_port(), "/metrics");
    CHECK(metric_value(metrics, "sluice_log_lines_dropped_total") == static_cast<double>(sluice.reported_drops()));

    ::kill(sluice.pid(), SIGTERM);
    CHECK(sluice.read_until([&] { return sluice.text().find("sluice stopped\n") != std::string::npos; }, 10s));
    CHECK(sluice.wait_exit(10s) == 0);
}

TEST_CASE("a stalled stderr does not keep sluice from exiting")
{
    EchoBackend backend("a");
    StalledSluice sluice(stalled_config(backend.address()));

    // 64 KiB of pipe is ~20 of these access log lines: more sessions than
    // that leave lines waiting on the stalled pipe.
    int served = 0;
    while (served < 200 && one_session(sluice.listener_port()))
        ++served;
    REQUIRE(served == 200);

    // Stderr is never read again: sluice still exits, after a bounded wait
    // for the lines it cannot write.
    ::kill(sluice.pid(), SIGTERM);
    CHECK(sluice.wait_exit(10s) == 0);
}
