// Internal to src/balance and src/balancer.cpp: one constructor per algorithm
// (each defined in its own file) and the eligibility rule they all share.
// Only make_balancer calls the constructors; nothing outside src/ includes this.
#pragma once

#include "sluice/balancer.h"

#include <algorithm>
#include <memory>
#include <vector>

namespace sluice::balance {

std::unique_ptr<Balancer> make_round_robin(std::vector<BackendId> members, const BackendTable& table);
std::unique_ptr<Balancer> make_least_conn(std::vector<BackendId> members, const BackendTable& table);
// The members and their table come from `lookup`, built off the workers.
std::unique_ptr<Balancer> make_ip_hash(std::shared_ptr<const IpHashLookup> lookup, const BackendTable& table);
std::unique_ptr<Balancer> make_random(std::vector<BackendId> members, const BackendTable& table);

// True when this session already tried `id`. The span holds at most `retries`
// ids, so a linear scan beats anything cleverer.
inline bool is_excluded(const PickContext& ctx, BackendId id) noexcept
{
    return std::find(ctx.excluded.begin(), ctx.excluded.end(), id) != ctx.excluded.end();
}

// The weight a backend may take new sessions with now, or 0 when it may not:
// unusable (down, draining, in maintenance, passively down) or weight 0 (an
// admin's way to stop new sessions, as in HAProxy).
inline std::uint16_t pickable_weight(const BackendTable& table, BackendId id, std::int64_t now_ms) noexcept
{
    return table.usable(id, now_ms) ? table.weight(id) : std::uint16_t{0};
}

// The weight, in 1/BackendTable::kWeightScale units, a backend may take new
// sessions with now under round_robin, least_conn and random, or 0 when it
// may not: pickable_weight, ramped by the pool's slow_start, and 0 while the
// backend is at its max_connections. Scaling every weight alike leaves each
// algorithm's picks unchanged when no backend ramps. (ip_hash uses
// pickable_weight: a consistent hash cannot ramp, see ip_hash.cpp.)
inline std::uint32_t ramped_weight(const BackendTable& table, BackendId id, std::int64_t now_ms) noexcept
{
    const std::uint16_t weight = pickable_weight(table, id, now_ms);
    if (weight == 0 || !table.has_room(id))
        return 0;
    return table.ramped_weight(id, weight, now_ms);
}

// A load compares as "a is less loaded than b" when active_a / weight_a <
// active_b / weight_b, cross-multiplied so there is no division. Both weights
// must be non-zero.
inline bool less_loaded(std::uint32_t active_a, std::uint32_t weight_a, std::uint32_t active_b,
                        std::uint32_t weight_b) noexcept
{
    return std::uint64_t{active_a} * weight_b < std::uint64_t{active_b} * weight_a;
}

} // namespace sluice::balance
