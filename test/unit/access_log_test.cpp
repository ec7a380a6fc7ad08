#include "sluice/access_log.h"
#include "sluice/log.h"

#include "json_check.h"

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
                                      R"(backend=pg/pg-a duration_ms=5321 bytes_in=1200 bytes_out=48211 end=done connect_ms=- retries=0)")));
}

// ---- line formats ------------------------------------------------------------

namespace {

AccessRecord tcp_record()
{
    AccessRecord r;
    r.listener = "front";
    r.protocol = Protocol::Tcp;
    r.client = "10.0.0.5:41234";
    r.backend = "pg/pg-a";
    r.connect_ms = 0.4125;
    r.duration_ms = 5321;
    r.bytes_in = 1200;
    r.bytes_out = 48211;
    r.retries = 1;
    r.end = "done";
    return r;
}

constexpr const char* kStamp = R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)";

} // namespace

TEST_CASE("a text access line keeps its fields in order and appends connect time and retries")
{
    std::string line = format_access_line(tcp_record());
    CHECK(std::regex_match(line, std::regex(std::string(kStamp)
                                            + " listener=front client=10\\.0\\.0\\.5:41234 backend=pg/pg-a "
                                              "duration_ms=5321 bytes_in=1200 bytes_out=48211 end=done "
                                              "connect_ms=0\\.412 retries=1")));
}

TEST_CASE("a text access line without a backend shows - for backend and connect time; UDP adds datagrams")
{
    AccessRecord r = tcp_record();
    r.backend = "-";
    r.connect_ms = -1;
    r.retries = 2;
    r.end = "no-backend";
    CHECK(format_access_line(r).ends_with(" backend=- duration_ms=5321 bytes_in=1200 bytes_out=48211 end=no-backend "
                                          "connect_ms=- retries=2"));
    AccessRecord u = tcp_record();
    u.protocol = Protocol::Udp;
    u.connect_ms = 0;
    u.retries = 0;
    u.datagrams_in = 3;
    u.datagrams_out = 4;
    CHECK(format_access_line(u).ends_with(" end=done connect_ms=0.000 retries=0 datagrams_in=3 datagrams_out=4"));
}

TEST_CASE("a JSON access line is one valid object with every field, numbers as numbers")
{
    std::string line = format_access_line(tcp_record(), AccessLogFormat::Json);
    INFO(line);
    CHECK(std::regex_match(line, std::regex(std::string(R"(\{"time":")") + kStamp
                                            + R"(","listener":"front","protocol":"tcp","client":"10\.0\.0\.5:41234",)"
                                              R"("backend":"pg/pg-a","connect_ms":0\.412,"duration_ms":5321,)"
                                              R"("bytes_in":1200,"bytes_out":48211,"retries":1,"end":"done"\})")));
    std::string error;
    const bool valid = test::json_lines_valid(line, &error);
    INFO(error);
    CHECK(valid);
}

TEST_CASE("a JSON access line of a UDP flow carries datagrams; no backend is null")
{
    AccessRecord r = tcp_record();
    r.protocol = Protocol::Udp;
    r.backend = "-";
    r.connect_ms = -1;
    r.datagrams_in = 7;
    r.datagrams_out = 9;
    r.end = "no-backend";
    std::string line = format_access_line(r, AccessLogFormat::Json);
    INFO(line);
    CHECK(line.find(R"("protocol":"udp")") != std::string::npos);
    CHECK(line.find(R"("backend":null,"connect_ms":null,)") != std::string::npos);
    CHECK(line.ends_with(R"("retries":1,"datagrams_in":7,"datagrams_out":9,"end":"no-backend"})"));
    CHECK(test::json_lines_valid(line));
}

TEST_CASE("a JSON access line escapes names that would break it: quotes, backslashes, control bytes, bad UTF-8")
{
    AccessRecord r = tcp_record();
    r.listener = "we\"ird\\na\nme\x01\xff";
    r.backend = "p\"q/\tb";
    std::string line = format_access_line(r, AccessLogFormat::Json);
    INFO(line);
    CHECK(line.find('\n') == std::string::npos);
    CHECK(line.find(R"("listener":"we\"ird\\na\nme\u0001\ufffd")") != std::string::npos);
    CHECK(line.find(R"("backend":"p\"q/\tb")") != std::string::npos);
    std::string error;
    const bool valid = test::json_lines_valid(line, &error);
    INFO(error);
    CHECK(valid);
}
