#include "sluice/duration_histogram.h"

#include <algorithm>

namespace sluice {

std::size_t histogram_bucket(HistogramLadder ladder, double seconds) noexcept
{
    // Prometheus buckets are "less than or equal": a value on a bound counts in it.
    return static_cast<std::size_t>(std::lower_bound(ladder.begin(), ladder.end(), seconds) - ladder.begin());
}

void HistogramCounts::record(HistogramLadder ladder, double seconds) noexcept
{
    ++buckets[histogram_bucket(ladder, seconds)];
    sum += seconds;
}

void HistogramCounts::add(const HistogramCounts& other) noexcept
{
    for (std::size_t i = 0; i < buckets.size(); ++i)
        buckets[i] += other.buckets[i];
    sum += other.sum;
}

std::uint64_t HistogramCounts::count() const noexcept
{
    std::uint64_t total = 0;
    for (std::uint64_t n : buckets)
        total += n;
    return total;
}

void DurationHistogram::reset() noexcept
{
    for (auto& bucket : buckets_)
        bucket.store(0, std::memory_order_relaxed);
    sum_.store(0, std::memory_order_relaxed);
}

void DurationHistogram::read_into(HistogramCounts& into) const noexcept
{
    for (std::size_t i = 0; i < buckets_.size(); ++i)
        into.buckets[i] += buckets_[i].load(std::memory_order_relaxed);
    into.sum += sum_.load(std::memory_order_relaxed);
}

} // namespace sluice
