// What the admin socket and /metrics report: a snapshot of the counters, and
// its Prometheus text exposition (format 0.0.4: # HELP, # TYPE, samples).
//
// take_snapshot reads atomics (the BackendTable, listener and pool counters)
// and the prober's reports (a short mutex), so the admin thread never waits
// on a worker.
#pragma once

#include "sluice/backend_table.h"
#include "sluice/pool_queue.h"
#include "sluice/health_report.h"
#include "sluice/runtime.h"
#include "sluice/stats.h"

#include <cstdint>
#include <string>
#include <span>
#include <vector>

namespace sluice {

struct BackendSnapshot {
    std::string pool;
    std::string name;
    std::string address;
    bool backup = false;
    AdminState admin = AdminState::Ready;
    Health health = Health::Up;
    bool passive_down = false;
    std::string_view why = "-";  // why it is down ("connection refused"), "-" when up (static text)
    std::uint16_t weight = 1;
    std::uint32_t max_connections = 0;  // 0 = no cap
    std::uint32_t active = 0;
    std::uint64_t total = 0;
    std::uint64_t connect_failures = 0;
    std::uint64_t bytes_in = 0;   // to the backend
    std::uint64_t bytes_out = 0;  // from the backend
    // Active checks (HealthReports): the kind ("" = none), and the last probe.
    std::string check;
    bool checked = false;         // a probe has finished since the backend was added
    bool check_passed = false;
    std::string verdict;          // its verdict in words
    std::string role;             // what the server said it is: primary, replica, unknown
    double check_seconds = 0;     // how long it took
    HistogramCounts check_durations;  // every probe since the backend was added
    HistogramCounts connect_times;    // TCP connects that succeeded, summed over workers
    bool up() const noexcept { return health == Health::Up && !passive_down; }
};

struct WorkerSnapshot {
    unsigned index = 0;
    double cpu_seconds = 0;    // CPU time of the worker's thread
    std::size_t sessions = 0;  // TCP sessions open on it now
};

struct ListenerSnapshot {
    std::string name;
    std::string_view protocol;  // static text
    std::string address;
    ListenerTotals totals;
};

struct PoolSnapshot {
    std::string name;
    std::uint64_t sessions = 0;  // sum of its backends' totals
    std::uint32_t active = 0;
    std::uint64_t bytes_in = 0;
    std::uint64_t bytes_out = 0;
    std::uint64_t failed_connects = 0;
    std::uint64_t retries = 0;
    std::uint64_t rejected = 0;
    PoolHistogramTotals histograms;  // session duration, queue wait
    bool has_queue = false;  // queue_timeout set (now or before a reload)
    QueueTotals queue;
};

struct StatsSnapshot {
    double uptime_seconds = 0;
    std::uint64_t generation = 0;
    std::uint64_t reloads_ok = 0;
    std::uint64_t reloads_failed = 0;
    std::uint64_t log_lines_dropped = 0;  // log::lines_dropped()
    std::vector<ListenerSnapshot> listeners;
    std::vector<PoolSnapshot> pools;
    std::vector<BackendSnapshot> backends;
    std::vector<WorkerSnapshot> workers;  // filled by the admin server, which knows the workers
};

// Any thread. `now_ms` is monotonic_ms(). A backend's sessions and bytes are
// the sum of every worker's BackendCounters in `counters`.
StatsSnapshot take_snapshot(const Runtime& runtime, const BackendTable& table, const ProcessStats& process,
                            std::int64_t now_ms, std::span<const BackendCounters* const> counters,
                            const HealthReports* reports = nullptr);

// The Prometheus text exposition of `snapshot`.
std::string format_prometheus(const StatsSnapshot& snapshot);

// A Prometheus label value with \, " and newline escaped.
std::string escape_label(std::string_view value);

} // namespace sluice
