// Balancer: picks a backend of one pool for a new session.
//
// One algorithm per file in src/balance/, all behind this interface; only the
// factory (make_balancer) knows the list. Each worker owns its own instances, so
// per-algorithm state (round-robin position, fallback scratch) needs no lock.
// Global facts (health, admin state, weights, active sessions) are read from
// the BackendTable. The one costly derived structure, ip_hash's Maglev table,
// is built off the workers and shared (IpHashLookup).
#pragma once

#include "sluice/addr.h"
#include "sluice/backend_table.h"
#include "sluice/config.h"
#include "sluice/ip_hash_lookup.h"

#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace sluice {

struct PickContext {
    // The client; ip_hash keys on its IP. May be null for algorithms that ignore it.
    const SocketAddress* client = nullptr;
    // Backends already tried by this session (connect failed): never picked again.
    std::span<const BackendId> excluded;
    // Monotonic ms, for passive-down checks (BackendTable::usable).
    std::int64_t now_ms = 0;
};

class Balancer {
public:
    virtual ~Balancer() = default;
    // A usable backend not in ctx.excluded, or nullopt when there is none.
    virtual std::optional<BackendId> pick(const PickContext& ctx) = 0;
};

// A backend's stable identity: a 64-bit hash (FNV-1a) of its name, the
// configured `name` or else its address text (BackendConfig::name). ip_hash
// seeds a backend's Maglev permutation from this alone, never from its table
// slot or its place in the file, so every instance (and every restart or
// reload) with the same names and weights maps each client to the same backend.
std::uint64_t backend_identity(std::string_view name) noexcept;

// One algorithm over one set of backends (ids into `table`). ip_hash takes its
// members from `ip_hash`, the member set's shared lookup (required for it,
// ignored by the others). The table must outlive the balancer.
std::unique_ptr<Balancer> make_balancer(BalanceAlgorithm algorithm, std::vector<BackendId> members,
                                        const BackendTable& table,
                                        std::shared_ptr<const IpHashLookup> ip_hash = nullptr);

// A pool's balancer: the algorithm over the primaries, and the same algorithm
// over the backups, consulted only while no primary is usable.
class PoolBalancer {
public:
    // The lookups: ip_hash's, over primaries and over backups (make_balancer).
    PoolBalancer(BalanceAlgorithm algorithm, std::vector<BackendId> primaries,
                 std::vector<BackendId> backups, const BackendTable& table,
                 std::shared_ptr<const IpHashLookup> primary_lookup = nullptr,
                 std::shared_ptr<const IpHashLookup> backup_lookup = nullptr);
    std::optional<BackendId> pick(const PickContext& ctx);

private:
    std::unique_ptr<Balancer> primaries_;
    std::unique_ptr<Balancer> backups_;  // null when the pool has no backups
};

} // namespace sluice
