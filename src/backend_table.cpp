// BackendTable: lock-free per-backend state shared by every thread.
//
// Memory ordering. Counters that only report (active, total, bytes, failure
// counts) are relaxed: nobody orders other memory against them. Fields that
// gate a decision (health, admin state, weight, passive_down_until_ms) are
// stored with release and loaded with acquire, and every real change to them
// is followed by a version bump (acq_rel), so a balancer that sees a new
// version also sees the change that caused it.
//
// Races we accept, on purpose (none of them can pick an excluded backend, lose
// a session or corrupt a slot; they only make one decision slightly stale):
//
//  1. A balancer may read a health value one probe old: the prober's store and a
//     worker's pick are not ordered, so a backend that has just gone down can
//     still be picked once; its connect then fails and the session retries.
//  2. least_conn and random read `active` counts that other workers are
//     changing at the same moment. Two workers can both see the same backend as
//     least loaded and both pick it. Over many picks this evens out.
//  3. usable() loads health, admin state and passive_down_until_ms one after the
//     other, not as one snapshot; a backend changing two of them at once may be
//     judged on a mix. Each field alone is enough to reject a backend, so the
//     mix is never "more usable" than either state.
//  4. Passive windowing (record_connect_failure) uses two atomics, not one
//     snapshot. Two failures on the same backend at the same instant may both
//     open a new window, and then the window counts one failure instead of two;
//     marking the backend down can be delayed by one failure. Only the call whose
//     increment reaches max_fails exactly returns true, so a backend is never
//     marked down twice for one window.
//  5. A worker reads version() and then the slots; a change that lands
//     between the two is seen in the slots and seen again as a new version on
//     the next pick: a harmless extra check, never a missed change.
//  6. allocate() resets a slot's fields one by one after winning it. Nobody but
//     the control thread knows the id until allocate() returns, so nobody reads
//     a half-reset slot.
//  7. A worker's ip_hash (Maglev) table can be one change old: it is rebuilt on
//     the pick after the worker sees the new version. Every lookup re-checks
//     usable() on the backend it lands on, so a stale table at worst sends a
//     client to the next backend in table order, never to an unusable one.
//  8. free() must only be called once no session holds the backend (the control
//     thread frees a slot after the pools using it are gone). A release() after
//     the slot was reallocated would make `active` wrap; we assert in debug
//     builds rather than pay a CAS loop on every session end.
#include "sluice/backend_table.h"

#include <algorithm>
#include <cassert>
#include <ctime>
#include <new>

namespace sluice {

namespace {

constexpr auto kRelaxed = std::memory_order_relaxed;
constexpr auto kAcquire = std::memory_order_acquire;
constexpr auto kRelease = std::memory_order_release;
constexpr auto kAcqRel = std::memory_order_acq_rel;

} // namespace

bool BackendTable::usable(BackendId id, std::int64_t now_ms) const noexcept
{
    const BackendSlot& s = slots_[id];
    return s.health.load(kAcquire) == Health::Up && s.admin.load(kAcquire) == AdminState::Ready
        && now_ms >= s.passive_down_until_ms.load(kAcquire);
}

void BackendTable::acquire(BackendId id) noexcept
{
    BackendSlot& s = slots_[id];
    s.active.fetch_add(1, kRelaxed);
}

void BackendTable::release(BackendId id) noexcept
{
    [[maybe_unused]] std::uint32_t before = slots_[id].active.fetch_sub(1, kRelaxed);
    assert(before > 0 && "release() without a matching acquire()");
}

// The cap is exact: the increment happens only if the count seen is below
// it, and a failed CAS re-reads. Uncapped backends keep the plain increment.
bool BackendTable::try_acquire(BackendId id) noexcept
{
    const std::uint32_t cap = limits_[id].max_connections.load(kRelaxed);
    std::atomic<std::uint32_t>& active = slots_[id].active;
    if (cap == 0) {
        active.fetch_add(1, kRelaxed);
        return true;
    }
    std::uint32_t now = active.load(kRelaxed);
    while (now < cap) {
        // seq_cst pairs with PoolQueue's fences (see pool_queue.cpp).
        if (active.compare_exchange_weak(now, now + 1, std::memory_order_seq_cst, kRelaxed))
            return true;
    }
    return false;
}

bool BackendTable::has_room(BackendId id) const noexcept
{
    const std::uint32_t cap = limits_[id].max_connections.load(kRelaxed);
    return cap == 0 || slots_[id].active.load(kRelaxed) < cap;
}

std::uint32_t BackendTable::ramped_weight(BackendId id, std::uint16_t full_weight, std::int64_t now_ms) const noexcept
{
    const std::uint32_t full = std::uint32_t{full_weight} * kWeightScale;
    const BackendLimits& l = limits_[id];
    const std::int64_t ramp = l.slow_start_ms.load(kRelaxed);
    const std::int64_t since = l.up_since_ms.load(kRelaxed);
    if (ramp == 0 || since == 0 || now_ms - since >= ramp) [[likely]]
        return full;
    const std::int64_t elapsed = now_ms > since ? now_ms - since : 0;
    const auto share = static_cast<std::uint32_t>(std::int64_t{full} * elapsed / ramp);
    return share > 0 ? share : 1;
}

void BackendTable::set_limits(BackendId id, std::uint32_t max_connections, std::uint32_t slow_start_ms) noexcept
{
    limits_[id].max_connections.store(max_connections, kRelaxed);
    limits_[id].slow_start_ms.store(slow_start_ms, kRelaxed);
}

void BackendTable::mark_came_up(BackendId id, std::int64_t now_ms) noexcept
{
    // 0 means "never ramp"; a clock reading of 0 is not a real one here.
    limits_[id].up_since_ms.store(now_ms != 0 ? now_ms : 1, kRelaxed);
}

std::uint32_t BackendTable::active(BackendId id) const noexcept
{
    return slots_[id].active.load(kRelaxed);
}

std::uint16_t BackendTable::weight(BackendId id) const noexcept
{
    return slots_[id].weight.load(kAcquire);
}

BackendCounters::BackendCounters(std::size_t capacity) : capacity_(capacity), lines_(new Line[capacity]) {}

BackendCounters::~BackendCounters()
{
    for (std::size_t i = 0; i < capacity_; ++i)
        delete lines_[i].connect_times.load(kRelaxed);
}

BackendCounters::Line& BackendCounters::line(BackendId id, std::uint32_t epoch) noexcept
{
    assert(id < capacity_);
    Line& l = lines_[id];
    if (l.epoch.load(kRelaxed) != epoch) [[unlikely]] {
        // The slot belongs to another backend now: start from zero. A reader
        // racing with this sees either epoch's counts, never a mix it keeps.
        l.sessions.store(0, kRelaxed);
        l.bytes_in.store(0, kRelaxed);
        l.bytes_out.store(0, kRelaxed);
        if (DurationHistogram* times = l.connect_times.load(kRelaxed))
            times->reset();
        l.epoch.store(epoch, std::memory_order_release);
    }
    return l;
}

BackendCounters::Totals BackendCounters::read(BackendId id, std::uint32_t epoch) const noexcept
{
    Totals t;
    if (id >= capacity_)
        return t;
    const Line& l = lines_[id];
    if (l.epoch.load(kAcquire) != epoch)
        return t;
    t.sessions = l.sessions.load(kRelaxed);
    t.bytes_in = l.bytes_in.load(kRelaxed);
    t.bytes_out = l.bytes_out.load(kRelaxed);
    return t;
}

void BackendCounters::count_connect_time(BackendId id, std::uint32_t epoch, double seconds) noexcept
{
    Line& l = line(id, epoch);
    DurationHistogram* times = l.connect_times.load(kRelaxed);
    if (!times) [[unlikely]] {
        times = new (std::nothrow) DurationHistogram();
        if (!times)
            return;
        l.connect_times.store(times, std::memory_order_release);
    }
    times->record(kConnectLadder, seconds);
}

void BackendCounters::read_connect_times(BackendId id, std::uint32_t epoch, HistogramCounts& into) const noexcept
{
    if (id >= capacity_)
        return;
    const Line& l = lines_[id];
    if (l.epoch.load(kAcquire) != epoch)
        return;
    if (const DurationHistogram* times = l.connect_times.load(kAcquire))
        times->read_into(into);
}

// The window opens at the first failure and lasts fail_timeout_ms; the call that
// brings the count to max_fails marks the backend down and closes the window.
// Failures while the backend is already passively down are connects that were
// started before the mark: they are counted in connect_failures but open no new
// window, so a backend is not marked down again the instant it comes back.
bool BackendTable::record_connect_failure(BackendId id, std::int64_t now_ms, int max_fails,
                                          std::int64_t fail_timeout_ms) noexcept
{
    BackendSlot& s = slots_[id];
    s.connect_failures.fetch_add(1, kRelaxed);
    if (max_fails <= 0)
        return false;
    if (now_ms < s.passive_down_until_ms.load(kAcquire))
        return false;

    std::uint32_t count = 0;
    std::int64_t start = s.window_start_ms.load(kAcquire);
    std::uint32_t in_window = s.window_failures.load(kAcquire);
    if (in_window == 0 || now_ms - start >= fail_timeout_ms) {
        // Open a new window with this failure as its first. Racing openers
        // (accepted race 4) agree through the CAS on the start time.
        if (s.window_start_ms.compare_exchange_strong(start, now_ms, kAcqRel, kAcquire)) {
            s.window_failures.store(1, kRelease);
            count = 1;
        } else {
            count = s.window_failures.fetch_add(1, kAcqRel) + 1;
        }
    } else {
        count = s.window_failures.fetch_add(1, kAcqRel) + 1;
    }

    if (count != static_cast<std::uint32_t>(max_fails))
        return false;
    // health_reason stays the prober's (single writer); the admin view shows
    // HealthReason::PassiveFailures while passive_down_until_ms is ahead.
    s.passive_down_until_ms.store(now_ms + fail_timeout_ms, kRelease);
    s.window_failures.store(0, kRelease);
    // It comes back by itself when the mark runs out: slow start ramps from then.
    mark_came_up(id, now_ms + fail_timeout_ms);
    bump_version();
    return true;
}

void BackendTable::set_health(BackendId id, Health health, HealthReason reason) noexcept
{
    BackendSlot& s = slots_[id];
    // The reason first, so a reader that sees the new health sees why.
    s.health_reason.store(reason, kRelease);
    if (s.health.exchange(health, kAcqRel) != health) {
        if (health == Health::Up)
            mark_came_up(id, monotonic_ms());
        bump_version();
    }
}

void BackendTable::clear_passive_down(BackendId id) noexcept
{
    BackendSlot& s = slots_[id];
    s.window_failures.store(0, kRelease);
    if (s.passive_down_until_ms.exchange(0, kAcqRel) != 0)
        bump_version();
}

void BackendTable::set_admin(BackendId id, AdminState state) noexcept
{
    const AdminState before = slots_[id].admin.exchange(state, kAcqRel);
    if (before == state)
        return;
    if (before == AdminState::Maint && state == AdminState::Ready)
        mark_came_up(id, monotonic_ms());
    bump_version();
}

void BackendTable::set_weight(BackendId id, std::uint16_t weight) noexcept
{
    if (slots_[id].weight.exchange(weight, kAcqRel) != weight)
        bump_version();
}

BackendTable::BackendTable() : slots_(new BackendSlot[kCapacity]), limits_(new BackendLimits[kCapacity]) {}

std::optional<BackendId> BackendTable::allocate(std::uint16_t weight, Health health, HealthReason reason) noexcept
{
    for (std::size_t n = next_free_hint_; n < kCapacity; ++n) {
        const auto id = static_cast<BackendId>(n);
        BackendSlot& s = slots_[id];
        bool expected = false;
        if (!s.in_use.compare_exchange_strong(expected, true, kAcqRel, kRelaxed))
            continue;
        s.health_reason.store(reason, kRelaxed);
        s.health.store(health, kRelaxed);
        s.admin.store(AdminState::Ready, kRelaxed);
        s.weight.store(weight, kRelaxed);
        s.active.store(0, kRelaxed);
        s.epoch.fetch_add(1, kRelaxed);
        s.connect_failures.store(0, kRelaxed);
        s.window_failures.store(0, kRelaxed);
        s.window_start_ms.store(0, kRelaxed);
        s.passive_down_until_ms.store(0, kRelaxed);
        limits_[id].max_connections.store(0, kRelaxed);
        limits_[id].slow_start_ms.store(0, kRelaxed);
        limits_[id].up_since_ms.store(0, kRelaxed);
        next_free_hint_ = id + 1;
        // Publishes the reset fields to anyone who sees the new version.
        bump_version();
        return id;
    }
    return std::nullopt;
}

void BackendTable::free(BackendId id) noexcept
{
    BackendSlot& s = slots_[id];
    // A balancer that still holds the id (an old pool) must stop picking it.
    s.admin.store(AdminState::Maint, kRelease);
    s.in_use.store(false, kRelease);
    next_free_hint_ = std::min<std::size_t>(next_free_hint_, id);
    bump_version();
}

bool is_unresolved(HealthReason reason) noexcept
{
    switch (reason) {
    case HealthReason::UnresolvedPending:
    case HealthReason::UnresolvedNxDomain:
    case HealthReason::UnresolvedNoAddress:
    case HealthReason::ResolverTimeout:
    case HealthReason::ResolverFailed: return true;
    default: return false;
    }
}

std::int64_t monotonic_ms() noexcept
{
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

std::string_view to_string(Health health) noexcept
{
    switch (health) {
    case Health::Up: return "up";
    case Health::Down: return "down";
    }
    return "unknown";
}

std::string_view to_string(HealthReason reason) noexcept
{
    switch (reason) {
    case HealthReason::None: return "none";
    case HealthReason::ConnectionRefused: return "connection refused";
    case HealthReason::Timeout: return "timeout";
    case HealthReason::Unreachable: return "unreachable";
    case HealthReason::Reset: return "reset";
    case HealthReason::PassiveFailures: return "passive failures";
    case HealthReason::Other: return "other";
    case HealthReason::WrongRole: return "wrong role";
    case HealthReason::AuthFailed: return "authentication failed";
    case HealthReason::BadReply: return "unexpected reply";
    case HealthReason::HttpStatus: return "http status";
    case HealthReason::Lagging: return "replication lag";
    case HealthReason::Unconfirmed: return "role not yet confirmed";
    case HealthReason::UnresolvedPending: return "unresolved: pending";
    case HealthReason::UnresolvedNxDomain: return "unresolved: NXDOMAIN";
    case HealthReason::UnresolvedNoAddress: return "unresolved: no address";
    case HealthReason::ResolverTimeout: return "resolver timeout";
    case HealthReason::ResolverFailed: return "unresolved: resolver error";
    }
    return "unknown";
}

std::string_view to_string(AdminState state) noexcept
{
    switch (state) {
    case AdminState::Ready: return "ready";
    case AdminState::Drain: return "drain";
    case AdminState::Maint: return "maint";
    }
    return "unknown";
}

// The words sluicectl accepts; "maintenance" is HAProxy's spelling.
std::optional<AdminState> parse_admin_state(std::string_view text) noexcept
{
    if (text == "ready")
        return AdminState::Ready;
    if (text == "drain")
        return AdminState::Drain;
    if (text == "maint" || text == "maintenance")
        return AdminState::Maint;
    return std::nullopt;
}

HealthReason reason_from(SysError error) noexcept
{
    switch (error) {
    case SysError::None: return HealthReason::None;
    case SysError::ConnectionRefused: return HealthReason::ConnectionRefused;
    case SysError::TimedOut: return HealthReason::Timeout;
    case SysError::Unreachable: return HealthReason::Unreachable;
    case SysError::ConnectionReset:
    case SysError::BrokenPipe: return HealthReason::Reset;
    default: return HealthReason::Other;
    }
}

} // namespace sluice
