// IpHashLookup: builds ip_hash's Maglev table off the workers and publishes it
// whole (see ip_hash_lookup.h for who calls what, ip_hash.cpp for the picks).
#include "sluice/ip_hash_lookup.h"

#include "algorithms.h"
#include "maglev.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <numeric>
#include <utility>

namespace sluice {

static_assert(IpHashLookup::kEmpty == balance::MaglevTable::kEmpty);
// Member indices are 0 .. kEmpty - 1 (MaglevTable asserts fewer than kEmpty).
static_assert(kIpHashMaxBackends < IpHashLookup::kEmpty);
static_assert(std::is_same_v<IpHashLookup::MemberIndex, balance::MaglevTable::MemberIndex>);

namespace {

// The members and their identities, both sorted by identity: Maglev's turns go
// in member order, so ordering by anything configuration-dependent (file order,
// BackendId) would let two instances with the same backends fill differently.
// Equal identities (only a 64-bit collision of two names) fall back to the id.
std::pair<std::vector<BackendId>, std::vector<std::uint64_t>> sorted_by_identity(
    const std::vector<BackendId>& members, const std::vector<std::uint64_t>& identities)
{
    std::vector<std::size_t> order(members.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
        return identities[a] != identities[b] ? identities[a] < identities[b] : members[a] < members[b];
    });
    std::pair<std::vector<BackendId>, std::vector<std::uint64_t>> sorted;
    sorted.first.reserve(order.size());
    sorted.second.reserve(order.size());
    for (std::size_t i : order) {
        sorted.first.push_back(members[i]);
        sorted.second.push_back(identities[i]);
    }
    return sorted;
}

} // namespace

std::size_t IpHashLookup::Build::position_of(std::uint64_t key, std::size_t size) noexcept
{
    return balance::MaglevTable::position_in(key, size);
}

IpHashLookup::IpHashLookup(std::vector<BackendId> members, std::vector<std::uint64_t> identities,
                           const BackendTable& table)
    : IpHashLookup(sorted_by_identity(members, identities), table)
{
}

IpHashLookup::IpHashLookup(std::pair<std::vector<BackendId>, std::vector<std::uint64_t>> sorted,
                           const BackendTable& table)
    : members_(std::move(sorted.first)),
      identities_(std::move(sorted.second)),
      table_(table),
      maglev_(std::make_unique<balance::MaglevTable>(identities_)),
      built_weights_(members_.size(), 0),
      scan_weights_(members_.size(), 0)
{
    refresh_now(monotonic_ms(), /*force=*/true);
}

IpHashLookup::~IpHashLookup() = default;

bool IpHashLookup::same_members(const std::vector<BackendId>& members,
                                const std::vector<std::uint64_t>& identities) const
{
    if (members.size() != members_.size())
        return false;
    auto sorted = sorted_by_identity(members, identities);
    return sorted.first == members_ && sorted.second == identities_;
}

std::shared_ptr<const IpHashLookup::Build> IpHashLookup::latest() const
{
    std::lock_guard lock(latest_mutex_);
    return latest_;
}

bool IpHashLookup::refresh(std::int64_t now_ms)
{
    return refresh_now(now_ms, /*force=*/false);
}

bool IpHashLookup::refresh_now(std::int64_t now_ms, bool force)
{
    // Read the version before the slots: a change landing in between is seen
    // now and seen again as a new version next time.
    const std::uint64_t version = table_.version();
    if (!force && version == built_version_ && now_ms < next_expiry_ms_) [[likely]]
        return false;
    built_version_ = version;
    next_expiry_ms_ = std::numeric_limits<std::int64_t>::max();
    std::size_t usable = 0;
    for (std::size_t i = 0; i < members_.size(); ++i) {
        const BackendId id = members_[i];
        scan_weights_[i] = balance::pickable_weight(table_, id, now_ms);
        usable += scan_weights_[i] != 0 ? 1 : 0;
        const std::int64_t until = table_.slot(id).passive_down_until_ms.load(std::memory_order_acquire);
        if (until > now_ms && until < next_expiry_ms_)
            next_expiry_ms_ = until;
    }
    // The usable set and the weights are what a table is a function of: a
    // version bump that changed neither (another pool's backend, an active
    // count's neighbour) builds nothing.
    if (!force && scan_weights_ == built_weights_)
        return false;
    const auto started = std::chrono::steady_clock::now();
    built_weights_.swap(scan_weights_);
    maglev_->populate(built_weights_);
    auto build = std::make_shared<Build>();
    build->entries = maglev_->entries();
    build->members_in_table = usable;
    std::shared_ptr<const Build> replaced = std::move(build);
    {
        std::lock_guard lock(latest_mutex_);
        latest_.swap(replaced);
    }
    // After the swap: a worker that sees the new serial finds the new build.
    serial_.fetch_add(1, std::memory_order_release);
    builds_.fetch_add(1, std::memory_order_relaxed);
    last_build_ms_ = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
    return true;
}

} // namespace sluice
