// ip_hash: a client IP keeps its backend, by Maglev consistent hashing
// (maglev.h; Eisenbud et al., NSDI 2016, §3.4).
//
// The lookup table holds only backends usable when it was built, weighted. Each
// worker's instance rebuilds it when the table's version moved and the set of
// usable backends or their weights really changed, or when a passive mark-down
// it knows of has expired (expiry is a clock event, not a version bump). So
// when a backend goes down only its clients move, and when it returns they move
// back: both tables are what a fresh build over that set would give.
//
// A backend's permutation is seeded from its identity (backend_identity of its
// name) alone, and the members take their turns in identity order, so the
// table depends only on the set of (name, weight) pairs: not on file order,
// table slots, other pools or reload history. Instances with the same backends
// agree on every client (README "ip_hash").
//
// The key is the client IP alone (SocketAddress::ip_hash), so every connection of
// a client lands on the same backend whatever its source port. A retry (landed
// backend in ctx.excluded), or a backend that went down since the last rebuild,
// falls through to the next distinct eligible backend in table order from the
// landing position: deterministic for a given client. A backend at its
// max_connections is passed over the same way, without a rebuild: its clients
// come back to it as soon as it has room.
//
// slow_start does not apply: the table is weighted by configured weight
// only. Ramping a backend's share of a consistent hash means rebuilding the
// table again and again as the share grows, and each rebuild moves clients
// between backends, which is what ip_hash promises not to do.
#include "algorithms.h"
#include "maglev.h"

#include <algorithm>
#include <limits>

namespace sluice::balance {

namespace {

// The members and their identities, both sorted by identity: Maglev's turns go
// in member order, so ordering by anything configuration-dependent (file order,
// BackendId) would let two instances with the same backends fill differently.
// Equal identities (only a 64-bit collision of two names) fall back to the id.
struct SortedMembers {
    std::vector<BackendId> ids;
    std::vector<std::uint64_t> identities;
};

SortedMembers sorted_by_identity(std::vector<BackendId> members, std::vector<std::uint64_t> identities)
{
    std::vector<std::size_t> order(members.size());
    for (std::size_t i = 0; i < order.size(); ++i)
        order[i] = i;
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
        return identities[a] != identities[b] ? identities[a] < identities[b] : members[a] < members[b];
    });
    SortedMembers sorted;
    sorted.ids.reserve(order.size());
    sorted.identities.reserve(order.size());
    for (std::size_t i : order) {
        sorted.ids.push_back(members[i]);
        sorted.identities.push_back(identities[i]);
    }
    return sorted;
}

class IpHashBalancer final : public Balancer {
public:
    IpHashBalancer(SortedMembers members, const BackendTable& table)
        : members_(std::move(members.ids)),
          table_(table),
          maglev_(members.identities),
          built_weights_(members_.size(), 0),
          scan_weights_(members_.size(), 0),
          rejected_(members_.size(), 0)
    {
        rejected_list_.reserve(members_.size());
    }

    std::optional<BackendId> pick(const PickContext& ctx) override
    {
        refresh_if_changed(ctx.now_ms);
        if (members_in_table_ == 0) [[unlikely]]
            return std::nullopt;

        std::uint64_t key = ctx.client != nullptr ? ctx.client->ip_hash() : 0;
        std::size_t position = maglev_.position_of(key);
        MaglevTable::MemberIndex landed = maglev_.at(position);
        if (eligible(ctx, landed)) [[likely]]
            return members_[landed];
        return next_eligible_after(ctx, position, landed);
    }

private:
    bool eligible(const PickContext& ctx, MaglevTable::MemberIndex index) const noexcept
    {
        BackendId id = members_[index];
        return pickable_weight(table_, id, ctx.now_ms) != 0 && table_.has_room(id) && !is_excluded(ctx, id);
    }

    // Walks the table from `position` until a member not yet rejected is
    // eligible. Stops once every member in the table was rejected. Uses only
    // storage reserved at construction.
    std::optional<BackendId> next_eligible_after(const PickContext& ctx, std::size_t position,
                                                 MaglevTable::MemberIndex landed) noexcept
    {
        std::optional<BackendId> found;
        reject(landed);
        const std::size_t m = maglev_.size();
        for (std::size_t step = 1; step < m && rejected_list_.size() < members_in_table_; ++step) {
            std::size_t p = position + step;
            if (p >= m)
                p -= m;
            MaglevTable::MemberIndex index = maglev_.at(p);
            if (rejected_[index] != 0)
                continue;
            if (eligible(ctx, index)) {
                found = members_[index];
                break;
            }
            reject(index);
        }
        for (MaglevTable::MemberIndex index : rejected_list_)
            rejected_[index] = 0;
        rejected_list_.clear();
        return found;
    }

    void reject(MaglevTable::MemberIndex index) noexcept
    {
        rejected_[index] = 1;
        rejected_list_.push_back(index);
    }

    // Cheap on the common path: one acquire load and one compare.
    void refresh_if_changed(std::int64_t now_ms) noexcept
    {
        std::uint64_t version = table_.version();
        if (version == built_version_ && now_ms < next_expiry_ms_) [[likely]]
            return;
        // Read the version before the slots (done above): a change landing
        // in between is seen now and seen again as a new version next time.
        built_version_ = version;
        next_expiry_ms_ = std::numeric_limits<std::int64_t>::max();
        std::size_t usable = 0;
        for (std::size_t i = 0; i < members_.size(); ++i) {
            BackendId id = members_[i];
            scan_weights_[i] = pickable_weight(table_, id, now_ms);
            usable += scan_weights_[i] != 0 ? 1 : 0;
            std::int64_t until = table_.slot(id).passive_down_until_ms.load(std::memory_order_acquire);
            if (until > now_ms && until < next_expiry_ms_)
                next_expiry_ms_ = until;
        }
        if (!first_build_ && scan_weights_ == built_weights_)
            return;
        first_build_ = false;
        built_weights_.swap(scan_weights_);
        members_in_table_ = usable;
        maglev_.populate(built_weights_);
    }

    const std::vector<BackendId> members_;
    const BackendTable& table_;
    MaglevTable maglev_;
    // Per member: the weight the table was built with (0 = not in the table),
    // and the same read afresh when the version moves; compared to decide
    // whether a rebuild is needed. Swapped, never reallocated.
    std::vector<std::uint16_t> built_weights_;
    std::vector<std::uint16_t> scan_weights_;
    std::size_t members_in_table_ = 0;
    std::uint64_t built_version_ = 0;
    std::int64_t next_expiry_ms_ = 0;  // earliest passive mark-down to expire
    bool first_build_ = true;
    // Fallback scratch: which members a walk has rejected, and their list to
    // clear them afterwards. Sized to the members once.
    std::vector<std::uint8_t> rejected_;
    std::vector<MaglevTable::MemberIndex> rejected_list_;
};

} // namespace

std::unique_ptr<Balancer> make_ip_hash(std::vector<BackendId> members, std::vector<std::uint64_t> identities,
                                       const BackendTable& table)
{
    return std::make_unique<IpHashBalancer>(sorted_by_identity(std::move(members), std::move(identities)), table);
}

} // namespace sluice::balance
