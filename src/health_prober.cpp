#include "sluice/health_prober.h"

#include "sluice/log.h"

#include <fmt/format.h>

#include <algorithm>
#include <cassert>
#include <optional>
#include <pthread.h>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>

namespace sluice {

namespace {

// How often the passive marks of checked backends are looked at. Not tied to
// the probe interval: a mark lasts fail_timeout, which may be shorter than the
// interval, and should not expire unseen. A few hundred relaxed loads every
// 100 ms cost nothing. (A mark shorter than this period can still go unseen;
// workers honoured it meanwhile, so nothing is lost but the log line.)
constexpr double kPassiveScanInterval = 0.1;

// Later probes of a backend start interval × [1 - kJitter, 1 + kJitter) apart,
// so backends that happened to line up drift apart again.
constexpr double kJitter = 0.1;

// Floors for nonsensical durations (a config validator should reject them; the
// prober must not spin on them either).
constexpr double kMinInterval = 0.01;
constexpr double kMinTimeout = 0.001;

double seconds(Duration duration) noexcept { return static_cast<double>(duration.count()) / 1000.0; }

// A role check confirms a fresh backend this soon (at most), instead of at a
// random point of the first interval: until then it gets no sessions.
constexpr double kFirstRoleProbeWithin = 0.2;

} // namespace

// One checked backend. Lives on the prober thread; owns its probe in flight
// and its timers. Invariants: at most one probe in flight (probing_ ⇔
// deadline_ active); verdict_ is what the prober last wrote to the table's
// health for this backend.
class HealthProber::Target {
public:
    Target(HealthProber& prober, BackendId id, std::string pool_name, SocketAddress address)
        : prober_(prober), id_(id), pool_name_(std::move(pool_name)), address_(std::move(address))
    {
        tick_.bind<Target, &Target::on_tick>(prober_.loop_, this);
        deadline_.bind<Target, &Target::on_deadline>(prober_.loop_, this);
    }
    ~Target() { cancel_probe(); }
    Target(const Target&) = delete;
    Target& operator=(const Target&) = delete;

    BackendId id() const noexcept { return id_; }

    // The identity build_runtime keeps a slot for across a reload.
    bool same_backend(const PoolRuntime& pool, std::size_t index) const noexcept
    {
        return pool.backend_ids[index] == id_ && pool.config->name == pool_name_
            && pool.config->backends[index].address == address_;
    }

    // Takes this backend's settings from a generation. Returns true when the
    // interval changed, so a kept backend's schedule must restart.
    bool configure(const PoolRuntime& pool, const HealthCheckConfig& check)
    {
        bool interval_changed = check.interval != check_.interval;
        // A probe of another kind, target or timeout is from the old config:
        // drop it rather than judge it by the new one.
        if (check.kind != check_.kind || check.timeout != check_.timeout || check.port != check_.port
            || check.role != check_.role)
            cancel_probe();
        label_ = pool.label(id_);
        check_ = check;
        max_fails_ = pool.config->max_fails;
        probe_address_ = address_;
        if (check_.port != 0)
            probe_address_.set_port(check_.port);
        return interval_changed;
    }

    // A backend new to the prober. It starts up, unless its check asks for a
    // role: then it gets nothing until a probe has confirmed the role (writes
    // must never reach an unconfirmed node), and that probe comes at once.
    void start()
    {
        HealthReport report;
        report.kind = check_.kind;
        prober_.reports_.set(id_, std::move(report));
        if (check_.role != HealthCheckConfig::Role::Any) {
            verdict_ = Health::Down;
            down_reason_ = HealthReason::Unconfirmed;
            awaiting_role_ = true;
            // build_runtime allocated the slot Down already; this covers a
            // kept backend whose pool began to check roles.
            prober_.table_.set_health(id_, Health::Down, HealthReason::Unconfirmed);
            tick_.start(prober_.random_delay(0.0, std::min(interval(), kFirstRoleProbeWithin)));
            return;
        }
        // A name that just resolved was down for that: it comes up after
        // `rise` passing probes, the first one at once.
        if (HealthReason reason = prober_.table_.slot(id_).health_reason.load(std::memory_order_acquire);
            is_unresolved(reason)) {
            verdict_ = Health::Down;
            down_reason_ = reason;
            tick_.start(prober_.random_delay(0.0, std::min(interval(), kFirstRoleProbeWithin)));
            return;
        }
        // A slot is Up when allocated; this only repairs one that is not
        // (the prober being the only writer, that is our own doing).
        if (prober_.table_.slot(id_).health.load(std::memory_order_acquire) != Health::Up)
            prober_.table_.set_health(id_, Health::Up, HealthReason::None);
        schedule_first();
    }

    // The first probe at a random point within one interval, so hundreds of
    // backends never probe in lockstep.
    void schedule_first() { tick_.start(prober_.random_delay(0.0, interval())); }

    // Passive interplay (see health_prober.h): a live passive mark becomes an
    // active Down verdict that needs `rise` passing probes to lift.
    void check_passive(std::int64_t now_ms)
    {
        if (in_maint())
            return;
        const BackendSlot& slot = prober_.table_.slot(id_);
        if (slot.passive_down_until_ms.load(std::memory_order_acquire) <= now_ms)
            return;
        // A probe started before traffic failed must not count towards rise.
        cancel_probe();
        passes_ = 0;
        if (verdict_ == Health::Up) {
            verdict_ = Health::Down;
            down_reason_ = HealthReason::PassiveFailures;
            logged_reason_ = HealthReason::PassiveFailures;
            // Health first, then the mark: at no instant is the backend usable.
            prober_.table_.set_health(id_, Health::Down, HealthReason::PassiveFailures);
            log::warning("{} is DOWN ({} connect failure{} from traffic)", label_, max_fails_, max_fails_ == 1 ? "" : "s");
        }
        prober_.table_.clear_passive_down(id_);
    }

    // The backend stays but its pool no longer has a health check: nobody but
    // the prober writes health, so lift a Down verdict before letting go.
    void release_health()
    {
        cancel_probe();
        prober_.reports_.erase(id_);
        if (verdict_ == Health::Down) {
            verdict_ = Health::Up;
            prober_.table_.set_health(id_, Health::Up, HealthReason::None);
            log::info("{} is UP (health checks removed)", label_);
        }
    }

    // The backend left the configuration: its report goes with it.
    void forget() { prober_.reports_.erase(id_); }

private:
    double interval() const noexcept { return std::max(seconds(check_.interval), kMinInterval); }

    bool in_maint() const noexcept
    {
        return prober_.table_.slot(id_).admin.load(std::memory_order_acquire) == AdminState::Maint;
    }

    void on_tick()
    {
        tick_.start(interval() * prober_.random_delay(1.0 - kJitter, 1.0 + kJitter));
        if (in_maint())
            return;  // checks pause in maint; the verdict stays
        if (probing_)
            return;  // timeout > interval: the last probe is still running
        start_probe();
    }

    void start_probe()
    {
        probing_ = true;
        const std::uint64_t probe = ++probe_serial_;
        probe_started_ = prober_.loop_.now();
        deadline_.start(std::max(seconds(check_.timeout), kMinTimeout));
        std::unique_ptr<HealthCheck> check = start_health_check(
            prober_.loop_, check_, probe_address_,
            [this, probe](HealthCheckResult result) { on_result(probe, std::move(result)); });
        if (probing_ && probe == probe_serial_)
            in_flight_ = std::move(check);
        else
            prober_.retire(std::move(check));  // it finished inside start: nothing to keep
    }

    void on_result(std::uint64_t probe, HealthCheckResult result)
    {
        if (!probing_ || probe != probe_serial_)
            return;  // a cancelled probe's late word
        const double took = prober_.loop_.now() - probe_started_;
        cancel_probe();  // the check is destroyed on the next loop turn, not under its own callback
        if (result.local_shortage) {
            // Our own shortage says nothing about the backend: skip the probe.
            log::debug("{}: probe skipped: {}", label_, result.detail);
            return;
        }
        if (in_maint())
            return;  // maint began while the probe ran: keep the last verdict
        record(std::move(result), took);
    }

    void on_deadline()
    {
        const double took = prober_.loop_.now() - probe_started_;
        cancel_probe();  // closes its socket: nothing more is sent or waited for
        if (in_maint())
            return;
        record(HealthCheckResult::fail(HealthReason::Timeout,
                                       fmt::format("timed out after {} ms", check_.timeout.count())),
               took);
    }

    void cancel_probe() noexcept
    {
        deadline_.stop();
        probing_ = false;
        ++probe_serial_;
        if (in_flight_)
            prober_.retire(std::move(in_flight_));
    }

    // Counts one probe result, reports it and writes a verdict change to the
    // table. The log says transitions, and a new reason while down, never the
    // same verdict twice.
    void record(HealthCheckResult result, double took)
    {
        const int rise = awaiting_role_ ? 1 : std::max(check_.rise, 1);
        // A server that reports the wrong role answered clearly: it is not
        // a flaky network, and a demoted primary must stop taking writes now,
        // not after `fall` more probes.
        const int fall = result.reason == HealthReason::WrongRole ? 1 : std::max(check_.fall, 1);
        BackendTable& table = prober_.table_;
        HealthReport report;
        report.kind = check_.kind;
        report.checked = true;
        report.passed = result.passed;
        report.detail = result.detail;
        report.role = result.role;
        report.duration_seconds = took;
        prober_.reports_.set(id_, std::move(report));
        if (result.passed) {
            failures_ = 0;
            passes_ = std::min(passes_ + 1, rise);
            if (verdict_ == Health::Down && passes_ >= rise) {
                verdict_ = Health::Up;
                down_reason_ = HealthReason::None;
                logged_reason_ = HealthReason::None;
                table.set_health(id_, Health::Up, HealthReason::None);
                if (awaiting_role_)
                    log::info("{} is UP ({})", label_, result.detail);
                else
                    log::info("{} is UP ({}/{} checks passed{}{})", label_, passes_, rise,
                              result.detail.empty() ? "" : ": ", result.detail);
                awaiting_role_ = false;
            }
            return;
        }
        passes_ = 0;
        failures_ = std::min(failures_ + 1, fall);
        if (awaiting_role_) {
            // Still unconfirmed: say why once per reason; it stays out.
            if (result.reason != logged_reason_) {
                logged_reason_ = result.reason;
                log::warning("{} stays DOWN until its role is confirmed ({})", label_, result.detail);
            }
            return;
        }
        if (verdict_ == Health::Up && failures_ >= fall) {
            verdict_ = Health::Down;
            down_reason_ = result.reason;
            logged_reason_ = result.reason;
            table.set_health(id_, Health::Down, result.reason);
            if (result.reason == HealthReason::WrongRole)
                log::warning("{} is DOWN ({}: the wrong role takes it out at once)", label_, result.detail);
            else
                log::warning("{} is DOWN ({}, {}/{})", label_, result.detail, failures_, fall);
        } else if (verdict_ == Health::Down && result.reason != down_reason_) {
            // Still down, for another reason now: keep `show servers` current
            // and say it once.
            down_reason_ = result.reason;
            table.set_health(id_, Health::Down, result.reason);
            if (result.reason != logged_reason_) {
                logged_reason_ = result.reason;
                log::warning("{} is still DOWN, now: {}", label_, result.detail);
            }
        }
    }

    HealthProber& prober_;
    const BackendId id_;
    const std::string pool_name_;
    const SocketAddress address_;
    SocketAddress probe_address_;  // address_ with the check's port, if it sets one
    std::string label_;            // "pool/backend", for logs
    HealthCheckConfig check_;
    int max_fails_ = 0;            // the pool's passive threshold, for the log line

    Health verdict_ = Health::Up;
    HealthReason down_reason_ = HealthReason::None;
    HealthReason logged_reason_ = HealthReason::None;  // the reason the last log line gave
    bool awaiting_role_ = false;   // a fresh role-checked backend: one pass confirms it
    int failures_ = 0;             // consecutive, saturating at fall
    int passes_ = 0;               // consecutive, saturating at rise

    // The probe in flight.
    bool probing_ = false;
    std::uint64_t probe_serial_ = 0;  // tells a cancelled probe's late callback from the current one's
    double probe_started_ = 0;
    std::unique_ptr<HealthCheck> in_flight_;
    TimerWatcher deadline_;
    TimerWatcher tick_;
};

HealthProber::HealthProber(BackendTable& table) : table_(table), random_(std::random_device{}())
{
    passive_scan_.bind<HealthProber, &HealthProber::on_passive_scan>(loop_, this);
    reaper_.bind<HealthProber, &HealthProber::on_reap>(loop_, this);
}

void HealthProber::retire(std::unique_ptr<HealthCheck> check)
{
    if (!check)
        return;
    retired_.push_back(std::move(check));
    if (!reaper_.active())
        reaper_.start(0.0);
}

void HealthProber::on_reap() { retired_.clear(); }

HealthProber::~HealthProber() { stop(); }

void HealthProber::start(std::shared_ptr<const Runtime> runtime)
{
    assert(!thread_.joinable() && "HealthProber::start() called twice");
    // Posted before the thread exists; the loop runs it on its first turn, so
    // every watcher is touched from the prober thread only.
    update(std::move(runtime));
    thread_ = std::thread([this] { loop_.run(); });
    ::pthread_setname_np(thread_.native_handle(), "sluice-health");
}

void HealthProber::update(std::shared_ptr<const Runtime> runtime)
{
    // The task holds the generation only until adopt() has copied what the
    // targets need; the prober keeps no reference to it afterwards.
    loop_.post([this, runtime = std::move(runtime)] { adopt(*runtime); });
}

void HealthProber::stop()
{
    if (!thread_.joinable())
        return;
    loop_.post([this] { shutdown_on_loop(); });
    thread_.join();
}

void HealthProber::shutdown_on_loop()
{
    assert(loop_.in_loop_thread());
    passive_scan_.stop();
    targets_.clear();  // closes probes in flight and stops every timer
    retired_.clear();
    reaper_.stop();
    loop_.break_loop();
}

double HealthProber::random_delay(double low, double high)
{
    if (!(high > low))
        return low;
    return std::uniform_real_distribution<double>(low, high)(random_);
}

void HealthProber::adopt(const Runtime& runtime)
{
    assert(loop_.in_loop_thread());
    std::vector<std::unique_ptr<Target>> previous = std::move(targets_);
    targets_.clear();
    std::unordered_map<BackendId, std::size_t> previous_index;
    for (std::size_t i = 0; i < previous.size(); ++i)
        previous_index.emplace(previous[i]->id(), i);

    // Every backend of the new generation, checked or not, so a dropped
    // target can tell "backend removed" from "backend no longer checked".
    std::unordered_map<BackendId, std::pair<const PoolRuntime*, std::size_t>> present;
    std::unordered_set<BackendId> checked;

    for (const PoolRuntime& pool : runtime.pools) {
        const std::optional<HealthCheckConfig>& check = pool.config->health;
        for (std::size_t i = 0; i < pool.backend_ids.size(); ++i) {
            const BackendId id = pool.backend_ids[i];
            const BackendConfig& backend = pool.config->backends[i];
            // A DNS name without an answer: down for that reason, not probed.
            // Resolved again in an unchecked pool: up, as nothing checks it.
            const HealthReason reason = table_.slot(id).health_reason.load(std::memory_order_acquire);
            if (!backend.usable_address()) {
                if (reason != down_reason(backend.status))
                    table_.set_health(id, Health::Down, down_reason(backend.status));
                continue;
            }
            present.emplace(id, std::make_pair(&pool, i));
            if (!check && is_unresolved(reason))
                table_.set_health(id, Health::Up, HealthReason::None);
        }
        if (!check)
            continue;
        for (std::size_t i = 0; i < pool.backend_ids.size(); ++i) {
            BackendId id = pool.backend_ids[i];
            if (!pool.config->backends[i].usable_address())
                continue;
            if (!checked.insert(id).second)
                continue;  // one slot, one target (a duplicate address in a pool)
            std::unique_ptr<Target> target;
            bool fresh = false;
            if (auto kept = previous_index.find(id); kept != previous_index.end()
                && previous[kept->second]->same_backend(pool, i)) {
                target = std::move(previous[kept->second]);
            } else {
                target = std::make_unique<Target>(*this, id, pool.config->name, pool.config->backends[i].address);
                fresh = true;
            }
            bool interval_changed = target->configure(pool, *check);
            if (fresh)
                target->start();
            else if (interval_changed)
                target->schedule_first();
            targets_.push_back(std::move(target));
        }
    }

    for (auto& dropped : previous) {
        if (!dropped)
            continue;  // moved into targets_
        // Still in the new generation (same identity) but unchecked: lift its
        // verdict. Removed: leave the slot alone, it may be freed or reused.
        if (auto it = present.find(dropped->id());
            it != present.end() && dropped->same_backend(*it->second.first, it->second.second))
            dropped->release_health();
        else
            dropped->forget();
    }
    previous.clear();

    if (targets_.empty())
        passive_scan_.stop();
    else if (!passive_scan_.active())
        passive_scan_.start(kPassiveScanInterval, kPassiveScanInterval);
}

void HealthProber::on_passive_scan()
{
    std::int64_t now_ms = monotonic_ms();
    for (auto& target : targets_)
        target->check_passive(now_ms);
}

} // namespace sluice
