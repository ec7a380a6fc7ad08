// Latency histograms for /metrics: fixed bucket ladders in seconds, Prometheus
// style (`_bucket{le=...}` cumulative, `_sum`, `_count`).
//
// Two shapes of the same data:
// - DurationHistogram: one writer thread, any reader. The owner records with a
//   plain load and store per field (no locked read-modify-write), as
//   BackendCounters does, so a worker pays a few cached stores per session.
//   Each worker has its own; the admin thread sums them when scraped.
// - HistogramCounts: a plain value (a sum of DurationHistograms, or a
//   histogram kept under a mutex, as the prober's check durations are).
//
// The ladders are per metric (a connect is milliseconds, a database session
// may be hours); each has at most kMaxBounds finite bounds, the last bucket
// being +Inf.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>

namespace sluice {

inline constexpr std::size_t kMaxBounds = 15;

// Upper bounds (seconds, increasing) of the finite buckets of one metric.
using HistogramLadder = std::span<const double>;

// Backend connect time (TCP handshake), health-check duration.
inline constexpr std::array<double, 14> kConnectLadder{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                      0.1,    0.25,  0.5,    1,     2.5,  5,     10};
// Session duration: from a one-query connection to a pooled one held all day.
inline constexpr std::array<double, 15> kSessionLadder{0.001, 0.01, 0.1, 0.5,  1,    5,     10,   30,
                                                      60,    300,  900, 1800, 3600, 14400, 86400};
// Time a client waits in a pool's queue for a backend (queue_timeout).
inline constexpr std::array<double, 13> kQueueLadder{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                    0.5,   1,     2.5,  5,     10,   30};

// The bucket `seconds` falls in: the first bound >= seconds, or
// ladder.size() (+Inf). Negative values count in the first bucket.
std::size_t histogram_bucket(HistogramLadder ladder, double seconds) noexcept;

struct HistogramCounts {
    std::array<std::uint64_t, kMaxBounds + 1> buckets{};  // per bucket, not cumulative
    double sum = 0;                                          // seconds

    void record(HistogramLadder ladder, double seconds) noexcept;
    void add(const HistogramCounts& other) noexcept;
    // Every observation: the +Inf bucket's cumulative count.
    std::uint64_t count() const noexcept;
};

class DurationHistogram {
public:
    // --- the owning thread only ---
    void record(HistogramLadder ladder, double seconds) noexcept
    {
        bump(buckets_[histogram_bucket(ladder, seconds)]);
        sum_.store(sum_.load(std::memory_order_relaxed) + seconds, std::memory_order_relaxed);
    }
    void reset() noexcept;

    // Any thread: adds what this histogram holds to `into`. A read racing with
    // a record may see the bucket without the sum, never a torn value; _count
    // is derived from the buckets, so it always equals the +Inf bucket.
    void read_into(HistogramCounts& into) const noexcept;

private:
    static void bump(std::atomic<std::uint64_t>& counter) noexcept
    {
        counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    }

    std::array<std::atomic<std::uint64_t>, kMaxBounds + 1> buckets_{};
    std::atomic<double> sum_{0};
};

} // namespace sluice
