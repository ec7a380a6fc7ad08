// HealthReports: the last verdict of every checked backend, in words, for
// `show servers` and /metrics.
//
// The table slot holds what balancing reads (up/down and a reason code) in
// one cache line; the words of a verdict ("replica (pg_is_in_recovery =
// true)", "authentication failed for user \"monitor\"") do not fit there and
// nobody on the data path needs them. The prober writes a report after each
// probe; the admin thread copies them when asked. A mutex is enough: one
// writer a few times a second per backend, readers at human or scrape pace.
#pragma once

#include "sluice/backend_table.h"
#include "sluice/config.h"
#include "sluice/duration_histogram.h"
#include "sluice/health_check.h"

#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace sluice {

struct HealthReport {
    HealthCheckConfig::Kind kind = HealthCheckConfig::Kind::TcpConnect;
    bool checked = false;       // at least one probe finished since the backend was added
    bool passed = false;        // the last probe's verdict (not the backend's health: see rise/fall)
    std::string detail;         // the last probe's verdict in words
    BackendRole role = BackendRole::Unknown;  // what the server last said it is
    double duration_seconds = 0;  // how long the last probe took
    // Every finished probe's duration since the backend was added
    // (kConnectLadder); kept by set(), whatever the report passed in holds.
    HistogramCounts durations;
};

class HealthReports {
public:
    // Prober thread.
    void set(BackendId id, HealthReport report)
    {
        std::lock_guard lock(mutex_);
        HealthReport& kept = reports_[id];
        report.durations = kept.durations;
        if (report.checked)
            report.durations.record(kConnectLadder, report.duration_seconds);
        kept = std::move(report);
    }
    void erase(BackendId id)
    {
        std::lock_guard lock(mutex_);
        reports_.erase(id);
    }

    // Any thread: a copy of the report of `id`, if it is checked.
    std::optional<HealthReport> get(BackendId id) const
    {
        std::lock_guard lock(mutex_);
        auto it = reports_.find(id);
        if (it == reports_.end())
            return std::nullopt;
        return it->second;
    }

private:
    mutable std::mutex mutex_;
    std::unordered_map<BackendId, HealthReport> reports_;
};

} // namespace sluice
