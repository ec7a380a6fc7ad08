// Counters the admin socket and /metrics report, beyond the per-backend ones in
// the BackendTable: per listener, per pool, and for the process.
//
// Writers are workers (relaxed increments), the reader is the admin thread.
// Listener counters have one cache line per worker, so workers never write the
// same line; pool counters move only on failures and retries, so one line
// shared by all workers is enough. Both are carried from one generation to the
// next for a listener or pool that stays (see reload.h), so a reload does not
// reset them.
#pragma once

#include "sluice/duration_histogram.h"
#include "sluice/log_throttle.h"
#include "sluice/source_limits.h"

#include <atomic>
#include <cstdint>
#include <memory>

namespace sluice {

// One listener on one worker.
struct alignas(64) ListenerStats {
    std::atomic<std::uint64_t> accepted{0};
    std::atomic<std::uint64_t> rejected{0};   // max_connections or EMFILE
    std::atomic<std::uint64_t> bytes_in{0};   // client -> backend, added at session close
    std::atomic<std::uint64_t> bytes_out{0};  // backend -> client, added at session close
    std::atomic<std::uint64_t> dropped{0};    // UDP: datagrams lost (no backend, full buffer, truncated)
    std::atomic<std::uint64_t> proxy_refused{0};  // accept_proxy: clients closed for their PROXY header
    std::atomic<std::uint64_t> denied{0};     // clients (UDP: new flows) refused by allow/deny
    std::atomic<std::uint64_t> source_limited{0};  // refused at max_connections_per_source
};

struct ListenerTotals {
    std::uint64_t accepted = 0;
    std::uint64_t rejected = 0;
    std::uint64_t bytes_in = 0;
    std::uint64_t bytes_out = 0;
    std::uint64_t dropped = 0;
    std::uint64_t proxy_refused = 0;
    std::uint64_t denied = 0;
    std::uint64_t source_limited = 0;
};

// One listener across all workers: a ListenerStats per worker.
class ListenerCounters {
public:
    explicit ListenerCounters(unsigned workers);
    unsigned workers() const noexcept { return workers_; }
    // The worker's own line; an index past the end gets the last line (a
    // listener made by a test without a worker count).
    ListenerStats& worker(unsigned index) noexcept { return per_worker_[index < workers_ ? index : workers_ - 1]; }
    ListenerTotals total() const noexcept;

    // One warning per interval for clients turned away at max_connections,
    // shared by the listener's workers and kept across reloads.
    LogThrottle turned_away_log;
    // The same for clients refused for their PROXY protocol header.
    LogThrottle proxy_refused_log;
    // Likewise for clients refused by allow/deny and by max_connections_per_source.
    LogThrottle denied_log;
    LogThrottle source_limited_log;
    // Sessions per client IP, for max_connections_per_source: shared by the
    // listener's workers and kept across reloads, so sessions that started
    // before a reload still count.
    SourceLimits source_limits;

private:
    unsigned workers_;
    std::unique_ptr<ListenerStats[]> per_worker_;
};

struct alignas(64) PoolStats {
    std::atomic<std::uint64_t> failed_connects{0};  // connects that failed (each attempt)
    std::atomic<std::uint64_t> retries{0};          // further backends tried after a failure
    std::atomic<std::uint64_t> rejected{0};         // clients closed: no usable backend or retries spent
};

// A pool's latency histograms: one line per worker, written by that worker
// alone (DurationHistogram), summed by the admin thread when scraped. Carried
// across reloads with the pool, as PoolStats is.
struct alignas(64) PoolWorkerHistograms {
    // Every session of the pool, from accept to end (kSessionLadder), recorded
    // by SessionRegistry::finish.
    DurationHistogram session_duration;
    // The pool's queue (TcpSession::record_queue_wait) records here, on the worker
    // that queued the client, how long the client waited for a backend
    // (kQueueLadder), once per queued client, when it got a backend or gave up
    // (queue_timeout). Exported as sluice_pool_queue_wait_seconds.
    DurationHistogram queue_wait;
};

struct PoolHistogramTotals {
    HistogramCounts session_duration;
    HistogramCounts queue_wait;
};

class PoolHistograms {
public:
    explicit PoolHistograms(unsigned workers);
    // The worker's own line (the last one for an index past the end, as
    // ListenerCounters::worker).
    PoolWorkerHistograms& worker(unsigned index) noexcept
    {
        return per_worker_[index < workers_ ? index : workers_ - 1];
    }
    // Any thread: every worker's lines summed.
    PoolHistogramTotals total() const noexcept;

private:
    unsigned workers_;
    std::unique_ptr<PoolWorkerHistograms[]> per_worker_;
};

// The process: written by the control thread, read by the admin thread.
struct ProcessStats {
    std::atomic<std::uint64_t> reloads_ok{0};
    std::atomic<std::uint64_t> reloads_failed{0};
    std::atomic<std::uint64_t> generation{0};
    std::int64_t started_ms = 0;  // monotonic_ms() at start
};

} // namespace sluice
