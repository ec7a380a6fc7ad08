// HealthProber: active health checks, on a thread and an event loop of its own.
//
// For every backend of every pool that has `health = { ... }`, every `interval`
// (±10% jitter; the first probe at a random point of the first interval, so
// hundreds of backends never probe in lockstep) it runs one probe:
// of the pool's kind (health_check.h: tcp, udp, http, redis, postgres,
// mysql), cancelled (its socket closed) when it overruns `timeout`.
// `fall` consecutive failures mark a backend down, `rise` consecutive passes
// mark it up again; backends start up, except in a pool whose check asks for
// a role: those start down ("role not yet confirmed") and are probed at once,
// and one pass confirming the role brings them up. Each transition is logged
// once, with the verdict in words; a backend that keeps failing for the same
// reason is not logged again:
//   pool/backend is DOWN (replica (pg_is_in_recovery = true), 3/3)
//   pool/backend is UP (2/2 checks passed: primary (pg_is_in_recovery = false))
// After every probe the verdict, the role the server claimed and the probe's
// duration go to reports() for `show servers` and /metrics.
//
// Passive failures: a worker marks a backend passively down through
// BackendTable::record_connect_failure (passive_down_until_ms). For a backend
// WITH active checks the prober turns that mark into an active verdict: health
// Down (HealthReason::PassiveFailures), the mark cleared, and `rise` passing
// probes needed to come back. Backends without active checks are left alone;
// their mark expires after fail_timeout by itself.
//
// Admin maint pauses a backend's probes; its last verdict stays until it is
// set ready again.
//
// Threads: start()/stop() on the control thread; update() from any thread.
// Everything else runs on the prober's thread. The prober is the ONLY writer of
// BackendSlot::health/health_reason (BackendTable::set_health), and for checked
// backends the only one that clears passive marks.
#pragma once

#include "sluice/backend_table.h"
#include "sluice/event_loop.h"
#include "sluice/health_check.h"
#include "sluice/health_report.h"
#include "sluice/runtime.h"

#include <memory>
#include <random>
#include <thread>
#include <vector>

namespace sluice {

class HealthProber {
public:
    // `table` must outlive the prober.
    explicit HealthProber(BackendTable& table);
    // Stops and joins the thread if it runs.
    ~HealthProber();
    HealthProber(const HealthProber&) = delete;
    HealthProber& operator=(const HealthProber&) = delete;

    // Control thread, once: spawns the prober thread and starts checking the
    // backends of `runtime`.
    void start(std::shared_ptr<const Runtime> runtime);

    // Any thread, after start(): adopts a reloaded generation. A backend that
    // stays (same BackendId, pool name and address — what build_runtime keeps)
    // keeps its verdict and consecutive counts; new backends start up and are
    // probed within one interval; removed ones are no longer probed. A backend
    // that stays but loses its health check is set up (nobody else would).
    void update(std::shared_ptr<const Runtime> runtime);

    // Control thread: stops probing and joins the thread. Idempotent. Health in
    // the table stays as last set.
    void stop();

    // Any thread: the last verdict of every checked backend.
    const HealthReports& reports() const noexcept { return reports_; }

private:
    class Target;  // one checked backend: its probe state and watchers

    // --- prober thread only ---
    void adopt(const Runtime& runtime);
    void on_passive_scan();
    // A finished or cancelled check is destroyed on the next loop turn, never
    // under its own callback (a library may still be on the stack).
    void retire(std::unique_ptr<HealthCheck> check);
    void on_reap();
    void shutdown_on_loop();
    // A delay in seconds drawn uniformly from [low, high).
    double random_delay(double low, double high);

    BackendTable& table_;
    EventLoop loop_;
    std::mt19937_64 random_;
    HealthReports reports_;
    // Declared before targets_: a Target's destructor retires its probe here.
    std::vector<std::unique_ptr<HealthCheck>> retired_;
    TimerWatcher reaper_;
    std::vector<std::unique_ptr<Target>> targets_;
    // Watches passive marks of checked backends; see on_passive_scan().
    TimerWatcher passive_scan_;
    std::thread thread_;
};

} // namespace sluice
