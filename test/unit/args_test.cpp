#include "args.h"

#include <catch2/catch.hpp>

#include <vector>

using namespace std::chrono_literals;
using sluice::tools::ArgCursor;
using sluice::tools::parse_count;
using sluice::tools::parse_duration;
using sluice::tools::parse_size;

TEST_CASE("durations take ns, us, ms, s, m and h, with fractions")
{
    CHECK(parse_duration("10s") == 10s);
    CHECK(parse_duration("500ms") == 500ms);
    CHECK(parse_duration("250us") == 250us);
    CHECK(parse_duration("100ns") == 100ns);
    CHECK(parse_duration("2m") == 2min);
    CHECK(parse_duration("1h") == 1h);
    CHECK(parse_duration("1.5s") == 1500ms);
    CHECK(parse_duration("0.25ms") == 250us);
    CHECK(parse_duration("0s") == 0s);
}

TEST_CASE("a duration without a known unit, or signed, or absurd, is rejected")
{
    for (const char* bad : {"", "10", "s", "ms", "-1s", "+1s", "10x", "10 s", "1e3s", "1..5s", "99999999999h"}) {
        INFO(bad);
        CHECK_FALSE(parse_duration(bad));
    }
}

TEST_CASE("sizes take powers of 1024 suffixes")
{
    CHECK(parse_size("64") == 64u);
    CHECK(parse_size("16k") == 16384u);
    CHECK(parse_size("16K") == 16384u);
    CHECK(parse_size("16KiB") == 16384u);
    CHECK(parse_size("1M") == 1048576u);
    CHECK(parse_size("1MiB") == 1048576u);
    CHECK(parse_size("2G") == 2147483648u);
    for (const char* bad : {"", "k", "-1", "1.5k", "1T", "12 k", "99999999999999999999"}) {
        INFO(bad);
        CHECK_FALSE(parse_size(bad));
    }
}

TEST_CASE("counts take k and M and respect their range")
{
    CHECK(parse_count("50", 1, 100) == 50u);
    CHECK(parse_count("10k", 1, 1'000'000) == 10'000u);
    CHECK(parse_count("2M", 1, 10'000'000) == 2'000'000u);
    CHECK_FALSE(parse_count("0", 1, 100));
    CHECK_FALSE(parse_count("101", 1, 100));
    CHECK_FALSE(parse_count("ten", 1, 100));
    CHECK_FALSE(parse_count("5x", 1, 100));
}

TEST_CASE("the argument cursor reads --flag value and --flag=value alike")
{
    std::vector<std::string> words{"prog", "--target", "127.0.0.1:9", "--json", "--size=16k", "--rate"};
    std::vector<char*> argv;
    for (auto& w : words)
        argv.push_back(w.data());
    ArgCursor args(static_cast<int>(argv.size()), argv.data());

    REQUIRE_FALSE(args.done());
    CHECK(args.next_flag() == "--target");
    CHECK(args.value() == "127.0.0.1:9");
    CHECK(args.next_flag() == "--json");
    CHECK(args.next_flag() == "--size");
    CHECK(args.value() == "16k");
    CHECK(args.next_flag() == "--rate");
    CHECK_FALSE(args.value());  // missing: end of argv
    CHECK(args.done());
}
