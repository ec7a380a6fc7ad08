// ip_hash: a client IP keeps its backend, by Maglev consistent hashing
// (maglev.h; Eisenbud et al., NSDI 2016, §3.4).
//
// The lookup table is built off the workers, once per member set, by the
// shared IpHashLookup (ip_hash_lookup.h): it holds only backends usable when it
// was built, weighted, and is rebuilt when the set of usable backends or their
// weights really changed, or when a passive mark-down expired. So when a
// backend goes down only its clients move, and when it returns they move
// back: both tables are what a fresh build over that set would give. This
// file is the worker's side: take the newest published build, look up.
//
// A backend's permutation is seeded from its identity (backend_identity of its
// name) alone, and the members take their turns in identity order, so the
// table depends only on the set of (name, weight) pairs: not on file order,
// table slots, other pools or reload history. Instances with the same backends
// agree on every client (README "ip_hash").
//
// The key is the client IP alone (SocketAddress::ip_hash), so every connection of
// a client lands on the same backend whatever its source port. A retry (landed
// backend in ctx.excluded), or a backend that went down since the last build,
// falls through to the next distinct eligible backend in table order from the
// landing position: deterministic for a given client. A backend at its
// max_connections is passed over the same way: its clients come back to it as
// soon as it has room.
//
// slow_start does not apply: the table is weighted by configured weight
// only. Ramping a backend's share of a consistent hash means rebuilding the
// table again and again as the share grows, and each rebuild moves clients
// between backends, which is what ip_hash promises not to do.
#include "algorithms.h"
#include "sluice/ip_hash_lookup.h"

#include <memory>

namespace sluice::balance {

namespace {

class IpHashBalancer final : public Balancer {
public:
    IpHashBalancer(std::shared_ptr<const IpHashLookup> lookup, const BackendTable& table)
        : lookup_(std::move(lookup)),
          members_(lookup_->members()),
          table_(table),
          rejected_(members_.size(), 0)
    {
        rejected_list_.reserve(members_.size());
        take_latest_build();
    }

    std::optional<BackendId> pick(const PickContext& ctx) override
    {
        if (lookup_->published_serial() != taken_serial_) [[unlikely]]
            take_latest_build();
        if (build_->members_in_table == 0) [[unlikely]]
            return std::nullopt;

        std::uint64_t key = ctx.client != nullptr ? ctx.client->ip_hash() : 0;
        std::size_t position = build_->position_of(key);
        IpHashLookup::MemberIndex landed = build_->entries[position];
        if (eligible(ctx, landed)) [[likely]]
            return members_[landed];
        return next_eligible_after(ctx, position, landed);
    }

private:
    // The serial first: a build published after that load is taken again at
    // the next pick, never missed.
    void take_latest_build()
    {
        taken_serial_ = lookup_->published_serial();
        build_ = lookup_->latest();
    }

    bool eligible(const PickContext& ctx, IpHashLookup::MemberIndex index) const noexcept
    {
        BackendId id = members_[index];
        return pickable_weight(table_, id, ctx.now_ms) != 0 && table_.has_room(id) && !is_excluded(ctx, id);
    }

    // Walks the table from `position` until a member not yet rejected is
    // eligible. Stops once every member in the table was rejected. Uses only
    // storage reserved at construction.
    std::optional<BackendId> next_eligible_after(const PickContext& ctx, std::size_t position,
                                                 IpHashLookup::MemberIndex landed) noexcept
    {
        std::optional<BackendId> found;
        reject(landed);
        const std::vector<IpHashLookup::MemberIndex>& entries = build_->entries;
        const std::size_t m = entries.size();
        for (std::size_t step = 1; step < m && rejected_list_.size() < build_->members_in_table; ++step) {
            std::size_t p = position + step;
            if (p >= m)
                p -= m;
            IpHashLookup::MemberIndex index = entries[p];
            if (rejected_[index] != 0)
                continue;
            if (eligible(ctx, index)) {
                found = members_[index];
                break;
            }
            reject(index);
        }
        for (IpHashLookup::MemberIndex index : rejected_list_)
            rejected_[index] = 0;
        rejected_list_.clear();
        return found;
    }

    void reject(IpHashLookup::MemberIndex index) noexcept
    {
        rejected_[index] = 1;
        rejected_list_.push_back(index);
    }

    const std::shared_ptr<const IpHashLookup> lookup_;
    const std::vector<BackendId>& members_;  // lookup_'s, in identity order
    const BackendTable& table_;
    // The build this worker picks from, and the lookup's serial when taken.
    std::shared_ptr<const IpHashLookup::Build> build_;
    std::uint64_t taken_serial_ = 0;
    // Fallback scratch: which members a walk has rejected, and their list to
    // clear them afterwards. Sized to the members once.
    std::vector<std::uint8_t> rejected_;
    std::vector<IpHashLookup::MemberIndex> rejected_list_;
};

} // namespace

std::unique_ptr<Balancer> make_ip_hash(std::shared_ptr<const IpHashLookup> lookup, const BackendTable& table)
{
    return std::make_unique<IpHashBalancer>(std::move(lookup), table);
}

} // namespace sluice::balance
