#include "bench_options.h"
#include "bench_report.h"

#include "argv_fixture.h"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace sluice::tools;
using sluice::test::Argv;

TEST_CASE("the JSON report carries every figure and every error kind")
{
    Argv argv({"--target", "127.0.0.1:9", "--json", "--duration", "2s"});
    auto parsed = parse_bench_options(argv.argc(), argv.argv());
    REQUIRE(parsed.error.empty());
    BenchResult result;
    result.duration_s = 2.0;
    result.stats.requests = 1000;
    result.stats.bytes_received = 64000;
    result.stats.bytes_sent = 64000;
    result.stats.latency.record(50'000);
    result.stats.count_error(ErrorKind::Reset);
    const std::string json = format_json(parsed.options, result);
    CHECK(json.front() == '{');
    CHECK(json.find("\"requests\":1000,") != std::string::npos);
    CHECK(json.find("\"rate\":500.000,") != std::string::npos);
    CHECK(json.find("\"p50\":50.000") != std::string::npos);
    CHECK(json.find("\"errors_total\":1,") != std::string::npos);
    CHECK(json.find("\"target_rate\":null") != std::string::npos);
    for (const char* key : {"\"mode\":\"rr\"", "\"target\":\"127.0.0.1:9\"", "\"concurrency\":10", "\"duration_s\":",
                            "\"bytes\":64000", "\"gbit_per_s\":", "\"latency_us\":{", "\"p90\":", "\"p99\":",
                            "\"p999\":", "\"max\":", "\"mean\":", "\"reset\":1", "\"connect_refused\":0",
                            "\"timeout\":0", "\"short_read\":0", "\"corrupt\":0"})
        CHECK(json.find(key) != std::string::npos);
    CHECK(json.substr(json.size() - 3) == "}}\n");
}

TEST_CASE("udp loss is lost queries over all queries that got an answer or timed out")
{
    BenchResult result;
    result.duration_s = 1.0;
    result.stats.requests = 990;
    for (int i = 0; i < 10; ++i)
        result.stats.count_error(ErrorKind::Timeout);
    CHECK(udp_loss(result) == Approx(0.01));
    CHECK(request_rate(result) == Approx(990));
}

TEST_CASE("stream throughput counts the bytes that came back, in Gbit/s")
{
    BenchResult result;
    result.duration_s = 2.0;
    result.stats.bytes_received = 250'000'000;  // 2 Gbit
    result.stats.bytes_sent = 500'000'000;
    CHECK(received_gbit_per_s(result) == Approx(1.0));
    CHECK(sent_gbit_per_s(result) == Approx(2.0));
}
