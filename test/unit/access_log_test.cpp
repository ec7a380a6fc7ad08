#include "sluice/access_log.h"
#include "sluice/log.h"

#include <catch2/catch.hpp>

#include <chrono>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>
#include <unistd.h>

using namespace sluice;
using namespace std::chrono_literals;

namespace {

// A private directory in /tmp, removed with its contents.
class TempDir {
public:
    TempDir()
    {
        char pattern[] = "/tmp/sluice-access-log-test-XXXXXX";
        REQUIRE(::mkdtemp(pattern) != nullptr);
        path_ = pattern;
    }
    ~TempDir() { std::filesystem::remove_all(path_); }
    std::string file(const std::string& name) const { return path_ + "/" + name; }

private:
    std::string path_;
};

std::string read_file(const std::string& path)
{
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// How many of this process's descriptors are open on `path`.
int open_count(const std::string& path)
{
    int count = 0;
    for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
        std::error_code ec;
        if (std::filesystem::read_symlink(entry.path(), ec) == path)
            ++count;
    }
    return count;
}

} // namespace

TEST_CASE("an access log line is appended to its file, ending with a newline")
{
    TempDir dir;
    std::string path = dir.file("access.log");
    {
        std::ofstream(path) << "earlier\n";
    }
    std::string error;
    auto file = AccessLogFile::open(path, &error);
    REQUIRE(file);
    file->write_line("first");
    file->write_line("second");
    REQUIRE(log::flush(5s));
    CHECK(read_file(path) == "earlier\nfirst\nsecond\n");
}

TEST_CASE("an access log that cannot be opened names the path and the reason")
{
    std::string error;
    CHECK_FALSE(AccessLogFile::open("/nonexistent-dir/access.log", &error));
    CHECK(error == "cannot open access log /nonexistent-dir/access.log: No such file or directory");
}

TEST_CASE("an access log file let go by a reload stays open until its queued lines are written")
{
    TempDir dir;
    std::string path = dir.file("access.log");
    std::string error;
    auto file = AccessLogFile::open(path, &error);
    REQUIRE(file);

    // Stall the log writer on a pipe nobody reads (100 KB against 64 KiB),
    // so the access log line waits in the queue behind it.
    int stall[2];
    REQUIRE(::pipe2(stall, O_CLOEXEC) == 0);
    for (int i = 0; i < 100; ++i)
        log::enqueue(stall[1], nullptr, std::string(999, 'x') + "\n");
    file->write_line("last line of the old file");
    file.reset();  // what a reload does to the old generation's file
    CHECK(open_count(path) == 1);

    // The pipe reads again: the line reaches the file, then the file closes.
    ::fcntl(stall[0], F_SETFL, O_NONBLOCK);
    char buf[65536];
    bool flushed = false;
    for (auto deadline = std::chrono::steady_clock::now() + 10s; !flushed && std::chrono::steady_clock::now() < deadline;) {
        while (::read(stall[0], buf, sizeof(buf)) > 0) {
        }
        flushed = log::flush(10ms);
    }
    ::close(stall[0]);
    ::close(stall[1]);
    REQUIRE(flushed);
    CHECK(read_file(path) == "last line of the old file\n");
    CHECK(open_count(path) == 0);
}

TEST_CASE("an access log record is one line with time, listener, client, backend, duration, bytes and end")
{
    AccessRecord r;
    r.listener = "front";
    r.client = "10.0.0.5:41234";
    r.backend = "pg/pg-a";
    r.duration_ms = 5321;
    r.bytes_in = 1200;
    r.bytes_out = 48211;
    r.end = "done";
    CHECK(std::regex_match(format_access_line(r),
                           std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z listener=front client=10\.0\.0\.5:41234 )"
                                      R"(backend=pg/pg-a duration_ms=5321 bytes_in=1200 bytes_out=48211 end=done)")));
}
