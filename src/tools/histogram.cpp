#include "histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace sluice::tools {

std::size_t LatencyHistogram::bucket_index(std::uint64_t ns) noexcept
{
    ns = std::min(ns, kHighestTrackableNs);
    constexpr std::uint64_t exact_limit = std::uint64_t{1} << kExactBits;
    if (ns < exact_limit)
        return static_cast<std::size_t>(ns);
    // octave = floor(log2(ns)) >= kExactBits; keep the kSubBucketBits bits
    // below the leading one as the position inside the octave.
    unsigned octave = 63U - static_cast<unsigned>(std::countl_zero(ns));
    unsigned shift = octave - kSubBucketBits;
    std::uint64_t sub = (ns >> shift) - (std::uint64_t{1} << kSubBucketBits);
    return static_cast<std::size_t>(exact_limit + (octave - kExactBits) * (std::uint64_t{1} << kSubBucketBits) + sub);
}

std::uint64_t LatencyHistogram::bucket_low(std::size_t index) noexcept
{
    constexpr std::size_t exact_limit = std::size_t{1} << kExactBits;
    if (index < exact_limit)
        return index;
    std::size_t j = index - exact_limit;
    unsigned octave = kExactBits + static_cast<unsigned>(j >> kSubBucketBits);
    std::uint64_t sub = j & ((std::size_t{1} << kSubBucketBits) - 1);
    return ((std::uint64_t{1} << kSubBucketBits) + sub) << (octave - kSubBucketBits);
}

std::uint64_t LatencyHistogram::bucket_width(std::size_t index) noexcept
{
    constexpr std::size_t exact_limit = std::size_t{1} << kExactBits;
    if (index < exact_limit)
        return 1;
    unsigned octave = kExactBits + static_cast<unsigned>((index - exact_limit) >> kSubBucketBits);
    return std::uint64_t{1} << (octave - kSubBucketBits);
}

void LatencyHistogram::record(std::uint64_t ns) noexcept
{
    ++counts_[bucket_index(ns)];
    ++count_;
    sum_ += ns;
    min_ = std::min(min_, ns);
    max_ = std::max(max_, ns);
}

void LatencyHistogram::merge(const LatencyHistogram& other) noexcept
{
    for (std::size_t i = 0; i < kBucketCount; ++i)
        counts_[i] += other.counts_[i];
    count_ += other.count_;
    sum_ += other.sum_;
    min_ = std::min(min_, other.min_);
    max_ = std::max(max_, other.max_);
}

void LatencyHistogram::reset() noexcept { *this = LatencyHistogram{}; }

double LatencyHistogram::mean() const noexcept
{
    return count_ ? static_cast<double>(sum_) / static_cast<double>(count_) : 0.0;
}

std::uint64_t LatencyHistogram::percentile(double percent) const noexcept
{
    if (count_ == 0)
        return 0;
    percent = std::clamp(percent, 0.0, 100.0);
    // The rank of the wanted value, 1-based. The epsilon keeps 99.9 % of 1000
    // at rank 999 despite binary floating point.
    double exact_rank = percent / 100.0 * static_cast<double>(count_);
    auto rank = static_cast<std::uint64_t>(std::ceil(exact_rank - 1e-9));
    rank = std::clamp<std::uint64_t>(rank, 1, count_);

    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < kBucketCount; ++i) {
        seen += counts_[i];
        if (seen >= rank) {
            std::uint64_t mid = bucket_low(i) + bucket_width(i) / 2;
            return std::clamp(mid, min_, max_);
        }
    }
    return max_;
}

} // namespace sluice::tools
