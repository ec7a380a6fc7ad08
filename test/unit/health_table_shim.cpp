// TEMPORARY TEST SHIM — DELETE when src/backend_table.cpp lands (balance
// branch), together with its entry in unit_test_extra_sources in
// test/unit/meson.build. Linking both would define these symbols twice.
//
// The subset of BackendTable that health_prober_test needs (the prober itself,
// build_runtime, and the test's own calls), with the semantics documented in
// include/sluice/backend_table.h. Deliberately simple: single-threaded
// windowing, no claims about memory ordering beyond acquire/release.
#include "sluice/backend_table.h"

#include <ctime>

namespace sluice {

bool BackendTable::usable(BackendId id, std::int64_t now_ms) const noexcept
{
    const BackendSlot& s = slots_[id];
    return s.health.load(std::memory_order_acquire) == Health::Up
        && s.admin.load(std::memory_order_acquire) == AdminState::Ready
        && now_ms >= s.passive_down_until_ms.load(std::memory_order_acquire);
}

bool BackendTable::record_connect_failure(BackendId id, std::int64_t now_ms, int max_fails,
                                          std::int64_t fail_timeout_ms) noexcept
{
    BackendSlot& s = slots_[id];
    s.connect_failures.fetch_add(1, std::memory_order_relaxed);
    if (max_fails <= 0 || now_ms < s.passive_down_until_ms.load(std::memory_order_acquire))
        return false;
    std::uint32_t count = s.window_failures.load(std::memory_order_acquire);
    if (count == 0 || now_ms - s.window_start_ms.load(std::memory_order_acquire) >= fail_timeout_ms) {
        s.window_start_ms.store(now_ms, std::memory_order_release);
        count = 0;
    }
    s.window_failures.store(++count, std::memory_order_release);
    if (count != static_cast<std::uint32_t>(max_fails))
        return false;
    s.passive_down_until_ms.store(now_ms + fail_timeout_ms, std::memory_order_release);
    s.window_failures.store(0, std::memory_order_release);
    bump_generation();
    return true;
}

void BackendTable::set_health(BackendId id, Health health, HealthReason reason) noexcept
{
    BackendSlot& s = slots_[id];
    s.health_reason.store(reason, std::memory_order_release);
    if (s.health.exchange(health, std::memory_order_acq_rel) != health)
        bump_generation();
}

void BackendTable::clear_passive_down(BackendId id) noexcept
{
    BackendSlot& s = slots_[id];
    s.window_failures.store(0, std::memory_order_release);
    if (s.passive_down_until_ms.exchange(0, std::memory_order_acq_rel) != 0)
        bump_generation();
}

void BackendTable::set_admin(BackendId id, AdminState state) noexcept
{
    if (slots_[id].admin.exchange(state, std::memory_order_acq_rel) != state)
        bump_generation();
}

void BackendTable::set_weight(BackendId id, std::uint16_t weight) noexcept
{
    if (slots_[id].weight.exchange(weight, std::memory_order_acq_rel) != weight)
        bump_generation();
}

std::optional<BackendId> BackendTable::allocate(std::uint16_t weight) noexcept
{
    for (BackendId id = 0; id < kCapacity; ++id) {
        BackendSlot& s = slots_[id];
        bool expected = false;
        if (!s.in_use.compare_exchange_strong(expected, true, std::memory_order_acq_rel))
            continue;
        s.health_reason.store(HealthReason::None);
        s.health.store(Health::Up);
        s.admin.store(AdminState::Ready);
        s.weight.store(weight);
        s.window_failures.store(0);
        s.window_start_ms.store(0);
        s.passive_down_until_ms.store(0);
        bump_generation();
        return id;
    }
    return std::nullopt;
}

void BackendTable::free(BackendId id) noexcept
{
    slots_[id].admin.store(AdminState::Maint, std::memory_order_release);
    slots_[id].in_use.store(false, std::memory_order_release);
    bump_generation();
}

std::int64_t monotonic_ms() noexcept
{
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
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
