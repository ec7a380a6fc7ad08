// One sluice-bench thread: an EventLoop, its share of the clients, its stats.
//
// Threads share nothing while running. The measurement window is the same
// absolute interval for all of them ([origin + warmup, + duration)), so their
// figures add up; each thread publishes running totals through relaxed
// atomics a few times a second for the progress line.
#pragma once

#include "bench_options.h"
#include "bench_stats.h"
#include "sluice/event_loop.h"

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

namespace sluice::tools {

class BenchClient;

// Running totals for the progress line; any thread may read them.
struct LiveCounters {
    std::uint64_t requests = 0;
    std::uint64_t errors = 0;
    std::uint64_t bytes_received = 0;
};

class BenchWorker {
public:
    // Clients [first_client, first_client + client_count) of options.concurrency.
    // `origin_ns` (monotonic) is when the run, warm-up included, starts.
    BenchWorker(const BenchOptions& options, unsigned first_client, unsigned client_count, std::uint64_t origin_ns);
    ~BenchWorker();
    BenchWorker(const BenchWorker&) = delete;
    BenchWorker& operator=(const BenchWorker&) = delete;

    // Its own thread: runs the clients until the window ends or stop().
    void run();
    // Any thread: ends the run now; the window closes at this moment.
    void stop();
    // Any thread.
    bool finished() const noexcept { return finished_.load(std::memory_order_acquire); }
    LiveCounters live() const noexcept;

    // After finished(): the figures of the window, and its actual length.
    const BenchStats& stats() const noexcept { return stats_; }
    std::uint64_t window_ns() const noexcept { return window_end_ > window_start_ ? window_end_ - window_start_ : 0; }

    // --- for the clients; loop thread only ---
    EventLoop& loop() noexcept { return loop_; }
    const BenchOptions& options() const noexcept { return options_; }
    std::uint64_t origin_ns() const noexcept { return origin_ns_; }
    // Whether an event at `now_ns` falls in the measurement window.
    bool measuring(std::uint64_t now_ns) const noexcept { return now_ns >= window_start_ && now_ns < window_end_; }
    // Stats are updated only for events in the window, through these.
    BenchStats& stats_at(std::uint64_t now_ns) noexcept { return measuring(now_ns) ? stats_ : discarded_; }
    void count_error(ErrorKind kind, std::uint64_t now_ns) noexcept { stats_at(now_ns).count_error(kind); }
    // 64 KiB for reads whose bytes are counted, not kept (stream mode).
    std::byte* scratch() noexcept { return scratch_.get(); }
    static constexpr std::size_t kScratchSize = 64 * 1024;
    // options().size bytes that stream clients write over and over.
    const std::byte* stream_chunk() const noexcept { return stream_chunk_.get(); }

private:
    void on_window_end();
    void on_sweep();
    void on_publish();
    void end_run(std::uint64_t now_ns);

    EventLoop loop_;
    const BenchOptions& options_;
    std::uint64_t origin_ns_;
    std::uint64_t window_start_;
    std::uint64_t window_end_;
    BenchStats stats_;
    BenchStats discarded_;  // warm-up events land here and are never read
    std::unique_ptr<std::byte[]> scratch_;
    std::unique_ptr<std::byte[]> stream_chunk_;
    std::vector<std::unique_ptr<BenchClient>> clients_;
    TimerWatcher window_end_timer_;
    TimerWatcher sweep_timer_;    // gives up on requests older than --timeout
    TimerWatcher publish_timer_;  // refreshes the live counters

    std::atomic<std::uint64_t> live_requests_{0};
    std::atomic<std::uint64_t> live_errors_{0};
    std::atomic<std::uint64_t> live_bytes_received_{0};
    std::atomic<bool> finished_{false};
};

} // namespace sluice::tools
