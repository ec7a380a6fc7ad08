#include "histogram.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

using sluice::tools::LatencyHistogram;

namespace {

// The exact percentile of a sample, by the same rank rule as the histogram:
// the smallest value with at least `percent` % of the sample at or below it.
std::uint64_t exact_percentile(std::vector<std::uint64_t> values, double percent)
{
    std::sort(values.begin(), values.end());
    auto rank = static_cast<std::size_t>(std::ceil(percent / 100.0 * static_cast<double>(values.size()) - 1e-9));
    rank = std::clamp<std::size_t>(rank, 1, values.size());
    return values[rank - 1];
}

// Half a bucket at most: 1/128 of the value, plus one for integer rounding.
bool within_precision(std::uint64_t reported, std::uint64_t exact)
{
    const auto diff = reported > exact ? reported - exact : exact - reported;
    return static_cast<double>(diff) <= static_cast<double>(exact) / 128.0 + 1.0;
}

} // namespace

TEST_CASE("an empty histogram reports zero for every figure")
{
    LatencyHistogram h;
    CHECK(h.count() == 0);
    CHECK(h.min() == 0);
    CHECK(h.max() == 0);
    CHECK(h.mean() == 0.0);
    CHECK(h.percentile(50) == 0);
    CHECK(h.percentile(99.9) == 0);
    CHECK(h.percentile(100) == 0);
}

TEST_CASE("buckets tile the range without gaps and are at most 1/64 of their value wide")
{
    // Walk bucket boundaries up to the 60 s top.
    std::size_t index = 0;
    std::uint64_t low = 0;
    while (low <= LatencyHistogram::kHighestTrackableNs) {
        REQUIRE(LatencyHistogram::bucket_low(index) == low);
        REQUIRE(LatencyHistogram::bucket_index(low) == index);
        const std::uint64_t width = LatencyHistogram::bucket_width(index);
        REQUIRE(LatencyHistogram::bucket_index(low + width - 1) == index);
        if (low >= 128)
            REQUIRE(width * 64 <= low);
        low += width;
        ++index;
    }
}

TEST_CASE("values below 128 ns are recorded exactly")
{
    LatencyHistogram h;
    for (std::uint64_t v = 1; v <= 100; ++v)
        h.record(v);
    CHECK(h.percentile(50) == 50);
    CHECK(h.percentile(90) == 90);
    CHECK(h.percentile(99) == 99);
    CHECK(h.percentile(100) == 100);
}

TEST_CASE("percentiles of a wide latency sample are within the bucket precision")
{
    // Log-uniform from 1 us to 10 s: every octave of the range gets values.
    std::mt19937_64 random(42);
    std::uniform_real_distribution<double> exponent(3.0, 10.0);
    std::vector<std::uint64_t> values;
    LatencyHistogram h;
    for (int i = 0; i < 200000; ++i) {
        auto v = static_cast<std::uint64_t>(std::pow(10.0, exponent(random)));
        values.push_back(v);
        h.record(v);
    }
    for (double p : {1.0, 10.0, 50.0, 90.0, 99.0, 99.9, 99.99}) {
        INFO("percentile " << p);
        CHECK(within_precision(h.percentile(p), exact_percentile(values, p)));
    }
}

TEST_CASE("max, min and mean are exact, not bucketed")
{
    LatencyHistogram h;
    h.record(1'000'003);
    h.record(2'000'017);
    h.record(5'123'457);
    CHECK(h.min() == 1'000'003);
    CHECK(h.max() == 5'123'457);
    CHECK(h.percentile(100) == 5'123'457);
    CHECK(h.mean() == Approx((1'000'003 + 2'000'017 + 5'123'457) / 3.0));
    // A percentile never leaves [min, max], even though buckets are wider.
    CHECK(h.percentile(0.001) >= h.min());
    CHECK(h.percentile(99.999) <= h.max());
}

TEST_CASE("values beyond 60 s land in the top bucket while max stays exact")
{
    LatencyHistogram h;
    h.record(3'600'000'000'000ULL);  // an hour
    CHECK(h.count() == 1);
    CHECK(h.max() == 3'600'000'000'000ULL);
    CHECK(LatencyHistogram::bucket_index(3'600'000'000'000ULL)
          == LatencyHistogram::bucket_index(LatencyHistogram::kHighestTrackableNs));
}

TEST_CASE("merging two histograms equals recording both samples into one")
{
    std::mt19937_64 random(7);
    std::uniform_int_distribution<std::uint64_t> fast(10'000, 50'000);
    std::uniform_int_distribution<std::uint64_t> slow(1'000'000, 90'000'000);
    LatencyHistogram a;
    LatencyHistogram b;
    LatencyHistogram both;
    for (int i = 0; i < 10000; ++i) {
        auto v = fast(random);
        a.record(v);
        both.record(v);
    }
    for (int i = 0; i < 500; ++i) {
        auto v = slow(random);
        b.record(v);
        both.record(v);
    }
    a.merge(b);
    CHECK(a.count() == both.count());
    CHECK(a.min() == both.min());
    CHECK(a.max() == both.max());
    CHECK(a.mean() == Approx(both.mean()));
    for (double p : {50.0, 90.0, 95.0, 99.0, 99.9})
        CHECK(a.percentile(p) == both.percentile(p));
    // The slow tail of b is what p99 sees, not a's fast values.
    CHECK(a.percentile(99) >= 1'000'000);
}

TEST_CASE("merging an empty histogram changes nothing")
{
    LatencyHistogram a;
    a.record(42'000);
    a.merge(LatencyHistogram{});
    CHECK(a.count() == 1);
    CHECK(a.min() == 42'000);
    CHECK(a.max() == 42'000);
}
