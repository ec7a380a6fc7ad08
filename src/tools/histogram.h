// A latency histogram with log-spaced buckets, in the manner of HdrHistogram.
//
// Values are nanoseconds. Below 128 ns every value has its own bucket; above,
// each power of two is split into 64 equal buckets, so a bucket is at most 1/64
// of its lower bound wide and a reported percentile (the bucket's midpoint) is
// within 1/128 (0.8 %) of the values that fell in it. The range ends at 60 s;
// larger values land in the top bucket, while max() stays exact.
//
// Recording is a few integer operations and one increment: no allocation, no
// floating point, so a load generator can call it per request. Not thread-safe:
// each thread records into its own histogram and they are merged at the end.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace sluice::tools {

class LatencyHistogram {
public:
    static constexpr std::uint64_t kHighestTrackableNs = 60'000'000'000ULL;

    void record(std::uint64_t ns) noexcept;
    // Adds every value recorded in `other`, as if recorded here.
    void merge(const LatencyHistogram& other) noexcept;
    void reset() noexcept;

    std::uint64_t count() const noexcept { return count_; }
    // Exact extremes and mean; 0 when empty.
    std::uint64_t min() const noexcept { return count_ ? min_ : 0; }
    std::uint64_t max() const noexcept { return max_; }
    double mean() const noexcept;

    // The value at or below which `percent` % of the recorded values lie
    // (0 < percent <= 100), within the bucket precision above, and never
    // outside [min(), max()]. 0 when empty.
    std::uint64_t percentile(double percent) const noexcept;

    // Bucket geometry, exposed for tests.
    static std::size_t bucket_index(std::uint64_t ns) noexcept;
    static std::uint64_t bucket_low(std::size_t index) noexcept;
    static std::uint64_t bucket_width(std::size_t index) noexcept;

private:
    static constexpr unsigned kExactBits = 7;            // 0..127 ns exact
    static constexpr unsigned kSubBucketBits = 6;        // 64 buckets per octave
    static constexpr unsigned kTopOctave = 35;           // 2^35 ns < 60 s < 2^36 ns
    static constexpr std::size_t kBucketCount =
        (std::size_t{1} << kExactBits) + (kTopOctave - kExactBits + 1) * (std::size_t{1} << kSubBucketBits);

    std::array<std::uint64_t, kBucketCount> counts_{};
    std::uint64_t count_ = 0;
    std::uint64_t sum_ = 0;
    std::uint64_t min_ = UINT64_MAX;
    std::uint64_t max_ = 0;
};

} // namespace sluice::tools
