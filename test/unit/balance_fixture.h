// Shared by the balancer tests: a heap-allocated BackendTable (100,000 x 64 bytes
// is too big for a test's stack) with a few backends, and pick helpers.
#pragma once

#include "sluice/addr.h"
#include "sluice/backend_table.h"
#include "sluice/balancer.h"
#include "sluice/ip_hash_lookup.h"

#include <fmt/format.h>

#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::test {

struct Backends {
    std::unique_ptr<BackendTable> table = std::make_unique<BackendTable>();
    std::vector<BackendId> ids;
    std::vector<std::uint64_t> identities;  // parallel to ids: backend_identity("b<index>")

    Backends() = default;
    explicit Backends(std::initializer_list<int> weights)
    {
        for (int w : weights)
            add(w);
    }
    static Backends equal(int count, int weight = 1)
    {
        Backends b;
        for (int i = 0; i < count; ++i)
            b.add(weight);
        return b;
    }

    BackendId add(int weight) { return add(fmt::format("b{}", ids.size()), weight); }
    BackendId add(std::string_view name, int weight)
    {
        BackendId id = *table->allocate(static_cast<std::uint16_t>(weight));
        ids.push_back(id);
        identities.push_back(backend_identity(name));
        return id;
    }

    // The identities of `members` (a subset of ids), in their order.
    std::vector<std::uint64_t> identities_of(const std::vector<BackendId>& members) const
    {
        std::vector<std::uint64_t> out;
        for (BackendId id : members)
            out.push_back(identities[static_cast<std::size_t>(index_of(id))]);
        return out;
    }

    // ip_hash's shared lookup over `members` (a subset of ids), built now on
    // this thread, the way build_runtime builds it on the control thread.
    std::shared_ptr<IpHashLookup> lookup_of(const std::vector<BackendId>& members) const
    {
        return std::make_shared<IpHashLookup>(members, identities_of(members), *table);
    }

    // A balancer over every backend. ip_hash's comes with a lookup of its own
    // that is refreshed before each pick: the control thread at its most
    // prompt (Server::refresh_ip_hash runs on every table change). Tests of
    // what a worker does between a change and its rebuild use
    // make_balancer with a lookup they refresh themselves.
    std::unique_ptr<Balancer> balancer(BalanceAlgorithm algorithm) const;

    // Index of a picked id in `ids`, or -1.
    int index_of(BackendId id) const
    {
        for (std::size_t i = 0; i < ids.size(); ++i)
            if (ids[i] == id)
                return static_cast<int>(i);
        return -1;
    }
};

// ip_hash with its lookup refreshed before every pick (Backends::balancer).
class PromptlyRefreshedIpHash final : public Balancer {
public:
    PromptlyRefreshedIpHash(std::shared_ptr<IpHashLookup> lookup, const BackendTable& table)
        : lookup_(std::move(lookup)), balancer_(make_balancer(BalanceAlgorithm::IpHash, {}, table, lookup_))
    {
    }
    std::optional<BackendId> pick(const PickContext& ctx) override
    {
        lookup_->refresh(ctx.now_ms);
        return balancer_->pick(ctx);
    }

private:
    std::shared_ptr<IpHashLookup> lookup_;
    std::unique_ptr<Balancer> balancer_;
};

inline std::unique_ptr<Balancer> Backends::balancer(BalanceAlgorithm algorithm) const
{
    if (algorithm == BalanceAlgorithm::IpHash)
        return std::make_unique<PromptlyRefreshedIpHash>(lookup_of(ids), *table);
    return make_balancer(algorithm, ids, *table);
}

// Picks `count` times, returns how often each member index was chosen; a
// nullopt pick counts under -1. With `hold`, each pick starts a session that is
// never released (so active counts grow, as under real load).
inline std::map<int, int> pick_counts(Balancer& balancer, const Backends& backends, int count,
                                      bool hold = false, PickContext ctx = {})
{
    std::map<int, int> counts;
    for (int i = 0; i < count; ++i) {
        auto id = balancer.pick(ctx);
        if (id && hold)
            backends.table->acquire(*id);
        ++counts[id ? backends.index_of(*id) : -1];
    }
    return counts;
}

// A distinct IPv4 client per n, on a fixed port.
inline SocketAddress client(std::uint32_t n, std::uint16_t port = 40000)
{
    return *SocketAddress::from_ip(fmt::format("10.{}.{}.{}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff),
                                   port);
}

} // namespace sluice::test
