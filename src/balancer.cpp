// make_balancer, the only place that knows the list of algorithms, and
// PoolBalancer, which adds backups on top of any of them.
#include "sluice/balancer.h"

#include "balance/algorithms.h"

#include <cassert>

namespace sluice {

std::uint64_t backend_identity(std::string_view name) noexcept
{
    // FNV-1a, 64-bit: fixed forever, since changing it would move every
    // ip_hash client of every deployment at the next upgrade.
    std::uint64_t hash = 0xcbf29ce484222325ULL;
    for (char c : name) {
        hash ^= static_cast<unsigned char>(c);
        hash *= 0x100000001b3ULL;
    }
    return hash;
}

std::unique_ptr<Balancer> make_balancer(BalanceAlgorithm algorithm, std::vector<BackendId> members,
                                        const BackendTable& table, std::shared_ptr<const IpHashLookup> ip_hash)
{
    switch (algorithm) {
    case BalanceAlgorithm::RoundRobin: return balance::make_round_robin(std::move(members), table);
    case BalanceAlgorithm::LeastConn: return balance::make_least_conn(std::move(members), table);
    case BalanceAlgorithm::IpHash:
        assert(ip_hash && "ip_hash needs its member set's IpHashLookup");
        return balance::make_ip_hash(std::move(ip_hash), table);
    case BalanceAlgorithm::Random: return balance::make_random(std::move(members), table);
    }
    // Unreachable for a valid enum; the config parser only produces those.
    return balance::make_round_robin(std::move(members), table);
}

PoolBalancer::PoolBalancer(BalanceAlgorithm algorithm, std::vector<BackendId> primaries,
                           std::vector<BackendId> backups, const BackendTable& table,
                           std::shared_ptr<const IpHashLookup> primary_lookup,
                           std::shared_ptr<const IpHashLookup> backup_lookup)
    : primaries_(make_balancer(algorithm, std::move(primaries), table, std::move(primary_lookup))),
      backups_(backups.empty() ? nullptr
                               : make_balancer(algorithm, std::move(backups), table, std::move(backup_lookup)))
{
}

// Backups take sessions only when the primaries' algorithm finds nothing: no
// primary usable, or (on a retry) every usable primary already tried.
std::optional<BackendId> PoolBalancer::pick(const PickContext& ctx)
{
    if (auto id = primaries_->pick(ctx))
        return id;
    if (backups_)
        return backups_->pick(ctx);
    return std::nullopt;
}

} // namespace sluice
