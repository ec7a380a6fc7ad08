#include "bench_options.h"

#include "argv_fixture.h"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace std::chrono_literals;
using namespace sluice::tools;
using sluice::test::Argv;

namespace {

BenchParseResult bench(const std::vector<const char*>& words)
{
    Argv a(words);
    return parse_bench_options(a.argc(), a.argv());
}

} // namespace

TEST_CASE("bench defaults are rr, 10 clients, 10 s, 64 bytes, closed loop")
{
    auto r = bench({"--target", "127.0.0.1:9000"});
    REQUIRE(r.error.empty());
    CHECK(r.options.mode == BenchMode::Rr);
    CHECK(r.options.concurrency == 10);
    CHECK(r.options.duration == 10s);
    CHECK(r.options.warmup == 0s);
    CHECK(r.options.size == 64);
    CHECK(r.options.rate == 0);
    CHECK(r.options.timeout == 5s);
    CHECK(r.options.target.port() == 9000);
}

TEST_CASE("bench mode defaults: stream writes 64 KiB, udp times out after 1 s")
{
    CHECK(bench({"--target", "127.0.0.1:9", "--mode", "stream"}).options.size == 65536);
    CHECK(bench({"--target", "127.0.0.1:9", "--mode", "stream", "--size", "4k"}).options.size == 4096);
    CHECK(bench({"--target", "127.0.0.1:9", "--mode", "udp"}).options.timeout == 1s);
}

TEST_CASE("every bad bench argument is reported with the flag's name")
{
    struct Case {
        std::vector<const char*> args;
        const char* flag;
    };
    const std::vector<Case> cases{
        {{"--mode", "rr"}, "--target"},
        {{"--target", "nowhere"}, "--target"},
        {{"--target", "127.0.0.1:0"}, "--target"},
        {{"--target", "127.0.0.1:9", "--mode", "http"}, "--mode"},
        {{"--target", "127.0.0.1:9", "--concurrency", "0"}, "--concurrency"},
        {{"--target", "127.0.0.1:9", "--duration", "10"}, "--duration"},
        {{"--target", "127.0.0.1:9", "--duration", "0s"}, "--duration"},
        {{"--target", "127.0.0.1:9", "--warmup", "soon"}, "--warmup"},
        {{"--target", "127.0.0.1:9", "--rate", "fast"}, "--rate"},
        {{"--target", "127.0.0.1:9", "--size", "0"}, "--size"},
        {{"--target", "127.0.0.1:9", "--mode", "udp", "--size", "65508"}, "--size"},
        {{"--target", "127.0.0.1:9", "--mode", "stream", "--rate", "100"}, "--rate"},
        {{"--target", "127.0.0.1:9", "--threads", "x"}, "--threads"},
        {{"--target", "127.0.0.1:9", "--timeout", "-1s"}, "--timeout"},
        {{"--target", "127.0.0.1:9", "--verbose"}, "--verbose"},
        {{"--target"}, "--target"},
    };
    for (const auto& c : cases) {
        auto r = bench(c.args);
        INFO(r.error);
        CHECK(r.error.find(c.flag) != std::string::npos);
    }
}

TEST_CASE("bench never runs more threads than clients")
{
    auto r = bench({"--target", "127.0.0.1:9", "--concurrency", "3", "--threads", "8"});
    REQUIRE(r.error.empty());
    CHECK(r.options.threads == 3);
}
