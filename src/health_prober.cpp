#include "sluice/health_prober.h"

#include "sluice/log.h"
#include "sluice/socket.h"

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

// UDP replies are read into a buffer this big (or as big as `expect`, if
// longer); only the prefix is compared, so a longer reply is simply cut.
constexpr std::size_t kReplyBuffer = 2048;

double seconds(Duration duration) noexcept { return static_cast<double>(duration.count()) / 1000.0; }

// The result of one probe: passed, or why not (for the table and for the log).
struct ProbeOutcome {
    bool passed = false;
    HealthReason reason = HealthReason::None;
    std::string_view why;
};

ProbeOutcome passed() noexcept { return {true, HealthReason::None, {}}; }
ProbeOutcome failed(SysError error) noexcept { return {false, reason_from(error), describe(error)}; }
ProbeOutcome timed_out() noexcept { return {false, HealthReason::Timeout, describe(SysError::TimedOut)}; }
ProbeOutcome unexpected_reply() noexcept { return {false, HealthReason::Other, "unexpected reply"}; }

} // namespace

// One checked backend. Lives on the prober thread; owns the socket, watchers
// and timers of its probe. Invariants: at most one probe in flight
// (probe_fd_ valid ⇔ a probe is in flight ⇔ deadline_ active); verdict_ is
// what the prober last wrote to the table's health for this backend.
class HealthProber::Target {
public:
    Target(HealthProber& prober, BackendId id, std::string pool_name, SocketAddress address)
        : prober_(prober), id_(id), pool_name_(std::move(pool_name)), address_(std::move(address))
    {
        tick_.bind<Target, &Target::on_tick>(prober_.loop_, this);
        deadline_.bind<Target, &Target::on_deadline>(prober_.loop_, this);
    }
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
        // A probe of another kind or with another timeout is from the old
        // config: drop it rather than judge it by the new one.
        if (check.kind != check_.kind || check.timeout != check_.timeout)
            cancel_probe();
        label_ = pool.label(id_);
        check_ = check;
        max_fails_ = pool.config->max_fails;
        reply_.resize(std::max(kReplyBuffer, check_.expect.size()));
        return interval_changed;
    }

    // The first probe at a random point within one interval.
    void schedule_first() { tick_.start(prober_.random_delay(0.0, interval())); }

    // Backends start up; a slot is Up when allocated, this only repairs one
    // that is not (the prober being the only writer, that is our own doing).
    void start_up()
    {
        if (prober_.table_.slot(id_).health.load(std::memory_order_acquire) != Health::Up)
            prober_.table_.set_health(id_, Health::Up, HealthReason::None);
    }

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
        if (verdict_ == Health::Down) {
            verdict_ = Health::Up;
            prober_.table_.set_health(id_, Health::Up, HealthReason::None);
            log::info("{} is UP (health checks removed)", label_);
        }
    }

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
        if (probe_fd_)
            return;  // timeout > interval: the last probe is still running
        if (check_.kind == HealthCheckConfig::Kind::Udp)
            start_udp_probe();
        else
            start_tcp_probe();
    }

    void start_tcp_probe()
    {
        Result<UniqueFd> sock = start_connect(address_);
        if (!sock) [[unlikely]] {
            start_failed(sock.error());
            return;
        }
        probe_kind_ = HealthCheckConfig::Kind::TcpConnect;
        watch(std::move(sock.value()), EV_WRITE);
    }

    void start_udp_probe()
    {
        Result<UniqueFd> sock = open_connected_udp(address_);
        if (!sock) [[unlikely]] {
            start_failed(sock.error());
            return;
        }
        IoResult sent = write_some(sock.value().get(), check_.send.data(), check_.send.size());
        if (!sent.ok()) [[unlikely]] {
            start_failed(sent.error);
            return;
        }
        probe_kind_ = HealthCheckConfig::Kind::Udp;
        watch(std::move(sock.value()), EV_READ);
    }

    void start_failed(SysError error)
    {
        if (is_local_resource_error(error)) {
            // Our own shortage says nothing about the backend: skip the probe.
            log::debug("{}: probe skipped: {}", label_, describe(error));
            return;
        }
        record(failed(error));
    }

    void watch(UniqueFd sock, int events)
    {
        probe_fd_ = std::move(sock);
        probe_io_.bind<Target, &Target::on_socket>(prober_.loop_, this, probe_fd_.get());
        probe_io_.set_events(events);
        deadline_.start(std::max(seconds(check_.timeout), kMinTimeout));
    }

    void on_socket(int)
    {
        if (probe_kind_ == HealthCheckConfig::Kind::TcpConnect) {
            // EV_WRITE on a connecting socket: connected, or the connect failed.
            SysError error = connect_result(probe_fd_.get());
            finish(error == SysError::None ? passed() : failed(error));
            return;
        }
        // UDP: a reply, or the ICMP port unreachable queued as ECONNREFUSED.
        IoResult got = read_some(probe_fd_.get(), reply_.data(), reply_.size());
        if (got.would_block())
            return;
        if (!got.ok()) {
            finish(failed(got.error));
            return;
        }
        std::string_view reply(reply_.data(), static_cast<std::size_t>(got.bytes));
        finish(reply.starts_with(check_.expect) ? passed() : unexpected_reply());
    }

    void on_deadline() { finish(timed_out()); }

    void finish(const ProbeOutcome& outcome)
    {
        cancel_probe();  // a passed TCP probe's connection is closed here, at once
        if (in_maint())
            return;  // maint began while the probe ran: keep the last verdict
        record(outcome);
    }

    void cancel_probe() noexcept
    {
        deadline_.stop();
        probe_io_.stop();
        probe_fd_.reset();
    }

    // Counts one probe result and writes a verdict change to the table.
    void record(const ProbeOutcome& outcome)
    {
        const int rise = std::max(check_.rise, 1);
        const int fall = std::max(check_.fall, 1);
        BackendTable& table = prober_.table_;
        if (outcome.passed) {
            failures_ = 0;
            passes_ = std::min(passes_ + 1, rise);
            if (verdict_ == Health::Down && passes_ >= rise) {
                verdict_ = Health::Up;
                down_reason_ = HealthReason::None;
                table.set_health(id_, Health::Up, HealthReason::None);
                log::info("{} is UP ({}/{} checks passed)", label_, passes_, rise);
            }
            return;
        }
        passes_ = 0;
        failures_ = std::min(failures_ + 1, fall);
        if (verdict_ == Health::Up && failures_ >= fall) {
            verdict_ = Health::Down;
            down_reason_ = outcome.reason;
            table.set_health(id_, Health::Down, outcome.reason);
            log::warning("{} is DOWN ({}, {}/{})", label_, outcome.why, failures_, fall);
        } else if (verdict_ == Health::Down && outcome.reason != down_reason_) {
            // Still down, for another reason now: keep `show servers` current.
            // Not a transition, so no log line.
            down_reason_ = outcome.reason;
            table.set_health(id_, Health::Down, outcome.reason);
        }
    }

    HealthProber& prober_;
    const BackendId id_;
    const std::string pool_name_;
    const SocketAddress address_;
    std::string label_;          // "pool/backend", for logs
    HealthCheckConfig check_;
    int max_fails_ = 0;          // the pool's passive threshold, for the log line

    Health verdict_ = Health::Up;
    HealthReason down_reason_ = HealthReason::None;
    int failures_ = 0;           // consecutive, saturating at fall
    int passes_ = 0;             // consecutive, saturating at rise

    // The probe in flight. probe_fd_ is declared before probe_io_ so the
    // watcher is stopped before the descriptor closes.
    HealthCheckConfig::Kind probe_kind_ = HealthCheckConfig::Kind::TcpConnect;
    UniqueFd probe_fd_;
    IoWatcher probe_io_;
    TimerWatcher deadline_;
    TimerWatcher tick_;
    std::vector<char> reply_;    // UDP replies; sized by configure()
};

HealthProber::HealthProber(BackendTable& table) : table_(table), random_(std::random_device{}())
{
    passive_scan_.bind<HealthProber, &HealthProber::on_passive_scan>(loop_, this);
}

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
        for (std::size_t i = 0; i < pool.backend_ids.size(); ++i)
            present.emplace(pool.backend_ids[i], std::make_pair(&pool, i));
        const std::optional<HealthCheckConfig>& check = pool.config->health;
        if (!check)
            continue;
        for (std::size_t i = 0; i < pool.backend_ids.size(); ++i) {
            BackendId id = pool.backend_ids[i];
            if (!checked.insert(id).second)
                continue;  // one slot, one target (a duplicate address in a pool)
            std::unique_ptr<Target> target;
            bool fresh = false;
            if (auto kept = previous_index.find(id); kept != previous_index.end()
                && previous[kept->second]->same_backend(pool, i)) {
                target = std::move(previous[kept->second]);
            } else {
                target = std::make_unique<Target>(*this, id, pool.config->name, pool.config->backends[i].address);
                target->start_up();
                fresh = true;
            }
            if (target->configure(pool, *check) || fresh)
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
