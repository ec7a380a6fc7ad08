#include "sluice/log.h"

#include "json_check.h"

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>
#include <fcntl.h>
#include <future>
#include <regex>
#include <sys/stat.h>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace sluice;
using namespace std::chrono_literals;

namespace {

// A file in /tmp, removed at the end of the test: a sink that never blocks.
class TempFile {
public:
    TempFile()
    {
        char pattern[] = "/tmp/sluice-log-test-XXXXXX";
        fd_ = ::mkstemp(pattern);
        REQUIRE(fd_ >= 0);
        path_ = pattern;
    }
    ~TempFile()
    {
        ::close(fd_);
        ::unlink(path_.c_str());
    }
    int fd() const noexcept { return fd_; }
    const std::string& path() const noexcept { return path_; }
    std::string contents() const
    {
        std::string text;
        char buf[65536];
        ssize_t n;
        for (off_t at = 0; (n = ::pread(fd_, buf, sizeof(buf), at)) > 0; at += n)
            text.append(buf, static_cast<std::size_t>(n));
        return text;
    }

private:
    int fd_ = -1;
    std::string path_;
};

// A pipe nobody reads until the test says so: a sink that blocks once its
// 64 KiB are full, as a stuck journald does.
class StalledPipe {
public:
    StalledPipe() { REQUIRE(::pipe2(fds_, O_CLOEXEC) == 0); }
    ~StalledPipe()
    {
        close_reader();
        ::close(fds_[1]);
    }
    int write_fd() const noexcept { return fds_[1]; }
    // Takes what is in the pipe now, without waiting.
    std::string read_available()
    {
        std::string text;
        char buf[65536];
        ::fcntl(fds_[0], F_SETFL, O_NONBLOCK);
        ssize_t n;
        while ((n = ::read(fds_[0], buf, sizeof(buf))) > 0)
            text.append(buf, static_cast<std::size_t>(n));
        return text;
    }
    // A writer blocked on the pipe gets EPIPE and carries on.
    void close_reader()
    {
        if (fds_[0] >= 0)
            ::close(fds_[0]);
        fds_[0] = -1;
    }

private:
    int fds_[2];
};

std::size_t count_lines(const std::string& text)
{
    return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n'));
}

bool wait_for(const std::function<bool()>& condition, std::chrono::milliseconds timeout = 10s)
{
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!condition()) {
        if (std::chrono::steady_clock::now() >= deadline)
            return false;
        std::this_thread::sleep_for(2ms);
    }
    return true;
}

} // namespace

TEST_CASE("a log line carries a UTC timestamp, its level and the message")
{
    std::string line = log::format_line(log::Level::Warning, "backend down");
    CHECK(std::regex_match(line, std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z warning: backend down\n)")));
}

TEST_CASE("queued lines reach their own sinks, and flush waits until they are written")
{
    TempFile a, b;
    log::LineQueue queue;
    CHECK(queue.push(a.fd(), nullptr, "one\n"));
    CHECK(queue.push(b.fd(), nullptr, "two\n"));
    CHECK(queue.push(a.fd(), nullptr, "three\n"));
    REQUIRE(queue.flush(5s));
    CHECK(a.contents() == "one\nthree\n");
    CHECK(b.contents() == "two\n");
    CHECK(queue.queued_bytes() == 0);
    CHECK(queue.dropped() == 0);
}

TEST_CASE("lines from one thread keep their order and lines never interleave")
{
    TempFile file;
    log::LineQueue queue;
    constexpr int kThreads = 4;
    constexpr int kLines = 5000;
    std::vector<std::thread> producers;
    std::atomic<int> refused{0};
    for (int t = 0; t < kThreads; ++t)
        producers.emplace_back([&, t] {
            for (int i = 0; i < kLines; ++i)
                if (!queue.push(file.fd(), nullptr, fmt::format("thread {} line {} {}\n", t, i, std::string(40, 'x'))))
                    refused.fetch_add(1);
        });
    for (auto& p : producers)
        p.join();
    REQUIRE(refused.load() == 0);
    REQUIRE(queue.flush(10s));

    std::string text = file.contents();
    REQUIRE(count_lines(text) == kThreads * kLines);
    std::vector<int> next(kThreads, 0);
    std::size_t at = 0;
    bool intact = true, ordered = true;
    std::regex shape(R"(thread (\d) line (\d+) x{40})");
    while (at < text.size()) {
        std::size_t end = text.find('\n', at);
        std::smatch m;
        std::string line = text.substr(at, end - at);
        at = end + 1;
        if (!std::regex_match(line, m, shape)) {
            intact = false;
            break;
        }
        int t = std::stoi(m[1]);
        ordered = ordered && std::stoi(m[2]) == next[t];
        ++next[t];
    }
    CHECK(intact);
    CHECK(ordered);
}

TEST_CASE("a stalled sink blocks only the writer: producers go on, the bound holds and drops are counted")
{
    StalledPipe sink;
    TempFile reports;
    constexpr std::size_t kBound = 256 * 1024;
    log::LineQueue queue(kBound, reports.fd(), "log-test");

    // 20,000 lines of 100 bytes: 2 MB against a 64 KiB pipe and a 256 KiB
    // queue. Pushed from a helper thread, so a push that blocks shows up as
    // a deadline missed rather than a hung test.
    constexpr int kLines = 20000;
    const std::string line = std::string(99, 'l') + "\n";
    auto pushed = std::make_shared<std::promise<int>>();
    std::future<int> accepted_future = pushed->get_future();
    std::thread producer([&, pushed] {
        int accepted = 0;
        for (int i = 0; i < kLines; ++i)
            accepted += queue.push(sink.write_fd(), nullptr, line) ? 1 : 0;
        pushed->set_value(accepted);
    });
    bool producer_finished = accepted_future.wait_for(5s) == std::future_status::ready;
    if (!producer_finished)
        sink.close_reader();  // unblock whatever blocked, so the test can end
    producer.join();
    REQUIRE(producer_finished);
    const int accepted = accepted_future.get();

    CHECK(queue.queued_bytes() <= kBound);
    CHECK(queue.dropped() > 0);
    CHECK(queue.dropped() + static_cast<std::uint64_t>(accepted) == kLines);
    CHECK_FALSE(queue.flush(50ms));  // the sink does not take them

    // The sink reads again: every accepted line arrives, then the report.
    std::string received;
    CHECK(wait_for([&] {
        received += sink.read_available();
        return count_lines(received) == static_cast<std::size_t>(accepted);
    }));
    CHECK(received.find_first_not_of(line) == std::string::npos);
    CHECK(queue.flush(5s));
    std::string expected = fmt::format(" warning: log: {} lines dropped (sink too slow)\n", queue.dropped());
    CHECK(wait_for([&] { return reports.contents().find(expected) != std::string::npos; }));
    CHECK(count_lines(reports.contents()) == 1);
}

TEST_CASE("destroying a queue whose sink is stuck returns after the exit flush deadline")
{
    int pipe_fds[2];
    REQUIRE(::pipe2(pipe_fds, O_CLOEXEC) == 0);
    // The queued lines own the write end: it closes when the writer, which
    // outlives the queue while it is blocked, lets go of them.
    auto write_end = std::shared_ptr<int>(new int(pipe_fds[1]), [](int* fd) {
        ::close(*fd);
        delete fd;
    });
    std::weak_ptr<int> watch = write_end;
    auto started = std::chrono::steady_clock::now();
    {
        log::LineQueue queue(1 << 20, STDERR_FILENO, "log-test");
        const std::string line(1000, 'x');
        for (int i = 0; i < 200; ++i)  // 200 KB against a 64 KiB pipe
            queue.push(*write_end, write_end, line);
        write_end.reset();
    }
    auto took = std::chrono::steady_clock::now() - started;
    CHECK(took >= log::kExitFlush);
    CHECK(took < log::kExitFlush + 2s);

    CHECK_FALSE(watch.expired());  // the writer is still blocked in write(2)
    ::close(pipe_fds[0]);          // its write fails (EPIPE): it drops the rest and ends
    CHECK(wait_for([&] { return watch.expired(); }));
}

TEST_CASE("a queued line keeps its owner alive until the line is written")
{
    StalledPipe sink;
    TempFile file;
    log::LineQueue queue;
    // Stall the writer on the pipe, then queue a line whose owner we drop.
    for (int i = 0; i < 100; ++i)
        queue.push(sink.write_fd(), nullptr, std::string(1000, 'x') + "\n");
    std::weak_ptr<int> watch;
    {
        auto owner = std::make_shared<int>(7);
        watch = owner;
        REQUIRE(queue.push(file.fd(), owner, "owned\n"));
    }
    CHECK_FALSE(watch.expired());
    std::string drained;
    CHECK(wait_for([&] {
        drained += sink.read_available();
        return queue.flush(0ms);
    }));
    CHECK(file.contents() == "owned\n");
    CHECK(watch.expired());
}

// ---- format, level, journal priority -------------------------------------------

TEST_CASE("a JSON log line is one valid object with time, level and the message escaped")
{
    std::string line = log::format_line(log::Level::Error, "pool \"pg\"\tdown\n", log::Style{log::Format::Json, false});
    INFO(line);
    CHECK(std::regex_match(
        line, std::regex(R"(\{"time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z","level":"error","message":"pool \\"pg\\"\\tdown\\n"\}\n)")));
    std::string error;
    const bool valid = test::json_lines_valid(line, &error);
    INFO(error);
    CHECK(valid);
}

TEST_CASE("lines for the journal start with their syslog priority, text and JSON alike")
{
    const log::Style text{log::Format::Text, true};
    CHECK(log::format_line(log::Level::Debug, "d", text).starts_with("<7>"));
    CHECK(log::format_line(log::Level::Info, "i", text).starts_with("<6>"));
    CHECK(log::format_line(log::Level::Notice, "n", text).starts_with("<5>"));
    CHECK(log::format_line(log::Level::Warning, "w", text).starts_with("<4>"));
    CHECK(log::format_line(log::Level::Error, "e", text).starts_with("<3>"));
    CHECK(std::regex_match(log::format_line(log::Level::Warning, "backend down", text),
                           std::regex(R"(<4>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z warning: backend down\n)")));
    CHECK(log::format_line(log::Level::Notice, "n", log::Style{log::Format::Json, true}).starts_with("<5>{\"time\":"));
    // Not for the journal: no prefix.
    CHECK(log::format_line(log::Level::Error, "e", log::Style{}).starts_with("20"));
}

TEST_CASE("stderr is the journal only when JOURNAL_STREAM names the very file open on it")
{
    TempFile file;
    struct stat st{};
    REQUIRE(::fstat(file.fd(), &st) == 0);
    const std::string matching = fmt::format("{}:{}", st.st_dev, st.st_ino);
    CHECK(log::is_journal_stream(matching.c_str(), file.fd()));
    CHECK_FALSE(log::is_journal_stream(nullptr, file.fd()));
    CHECK_FALSE(log::is_journal_stream(fmt::format("{}:{}", st.st_dev, st.st_ino + 1).c_str(), file.fd()));
    CHECK_FALSE(log::is_journal_stream((matching + "x").c_str(), file.fd()));
    CHECK_FALSE(log::is_journal_stream("garbage", file.fd()));
    CHECK_FALSE(log::is_journal_stream(matching.c_str(), -1));
}

TEST_CASE("the level drops the lines below it; --debug pins the level against the config")
{
    log::configure(log::Level::Warning, log::Format::Text);
    CHECK_FALSE(log::enabled(log::Level::Debug));
    CHECK_FALSE(log::enabled(log::Level::Info));
    CHECK_FALSE(log::enabled(log::Level::Notice));
    CHECK(log::enabled(log::Level::Warning));
    CHECK(log::enabled(log::Level::Error));
    log::configure(log::Level::Notice, log::Format::Json);
    CHECK_FALSE(log::enabled(log::Level::Info));
    CHECK(log::enabled(log::Level::Notice));
    CHECK(log::style().format == log::Format::Json);
    log::configure(log::Level::Error, log::Format::Text);
    CHECK_FALSE(log::enabled(log::Level::Warning));
    CHECK(log::enabled(log::Level::Error));
    log::pin_debug();
    log::configure(log::Level::Error, log::Format::Text);
    CHECK(log::enabled(log::Level::Debug));
    log::set_level(log::Level::Info);  // leave the process default for later tests
}
