#include "sluice/runtime.h"

#include "sluice/balancer.h"
#include "sluice/log.h"

#include <algorithm>
#include <cstdint>

namespace sluice {

std::string PoolRuntime::label(BackendId id) const
{
    const BackendConfig* b = backend(id);
    return config->name + "/" + (b ? b->name : std::to_string(id));
}

const BackendConfig* PoolRuntime::backend(BackendId id) const noexcept
{
    auto it = index_of.find(id);
    return it == index_of.end() ? nullptr : &config->backends[it->second];
}

const PoolRuntime* Runtime::find_pool(std::string_view name) const noexcept
{
    for (const auto& pool : pools)
        if (pool.config->name == name)
            return &pool;
    return nullptr;
}

const ListenerRuntime* Runtime::find_listener(const ListenerConfig& listener) const noexcept
{
    for (std::size_t i = 0; i < config.listeners.size() && i < listeners.size(); ++i)
        if (&config.listeners[i] == &listener)
            return &listeners[i];
    return nullptr;
}

HealthReason down_reason(NameStatus status) noexcept
{
    switch (status) {
    case NameStatus::Resolved: return HealthReason::None;
    case NameStatus::Pending: return HealthReason::UnresolvedPending;
    case NameStatus::NxDomain: return HealthReason::UnresolvedNxDomain;
    case NameStatus::NoAddress: return HealthReason::UnresolvedNoAddress;
    case NameStatus::Timeout: return HealthReason::ResolverTimeout;
    case NameStatus::Failed: return HealthReason::ResolverFailed;
    }
    return HealthReason::ResolverFailed;
}

namespace {

// ip_hash: the lookup over `members`, the previous generation's when it was
// over the same members and names (no rebuild), else a new one (built here,
// on the control thread). Null for other algorithms. An empty set (a
// discovered pool shrunk to nothing) gets one too: it picks nothing.
std::shared_ptr<IpHashLookup> ip_hash_lookup(const PoolConfig& pool, const std::vector<BackendId>& members,
                                             const std::vector<std::uint64_t>& identities,
                                             const std::shared_ptr<IpHashLookup>& previous, const BackendTable& table)
{
    if (pool.balance != BalanceAlgorithm::IpHash)
        return nullptr;
    if (previous && previous->same_members(members, identities))
        return previous;
    auto lookup = std::make_shared<IpHashLookup>(members, identities, table);
    log::debug("pool {}: ip_hash table built for {} backends: {} in it, {:.1f} ms", pool.name, members.size(),
               lookup->latest()->members_in_table, lookup->last_build_ms());
    return lookup;
}

// The slots `previous` gave the backends of pool `name`, by identity: a
// backend of the new generation with the same identity keeps its slot. A map,
// built once per pool, since discovered pools hold thousands of backends and a
// DNS change rebuilds the generation (a scan per backend took 10 s at 10,000).
std::unordered_map<std::string, BackendId> previous_slots(const Runtime* previous, const std::string& name)
{
    std::unordered_map<std::string, BackendId> slots;
    const PoolRuntime* old_pool = previous ? previous->find_pool(name) : nullptr;
    if (!old_pool)
        return slots;
    slots.reserve(old_pool->backend_ids.size());
    for (std::size_t i = 0; i < old_pool->backend_ids.size(); ++i)
        slots.emplace(old_pool->config->backends[i].identity(), old_pool->backend_ids[i]);
    return slots;
}

} // namespace

std::shared_ptr<Runtime> build_runtime(Config config, BackendTable& table, const Runtime* previous,
                                       std::string* error)
{
    auto runtime = std::make_shared<Runtime>();
    runtime->config = std::move(config);
    runtime->generation = previous ? previous->generation + 1 : 1;
    runtime->pools = std::vector<PoolRuntime>(runtime->config.pools.size());

    std::vector<BackendId> allocated;  // to give back if the table runs out
    for (std::size_t p = 0; p < runtime->config.pools.size(); ++p) {
        const PoolConfig& pool_config = runtime->config.pools[p];
        PoolRuntime& pool = runtime->pools[p];
        // --check catches listed backends; a discovery answer can grow past it.
        if (auto problem = ip_hash_size_problem(pool_config)) {
            for (BackendId taken : allocated)
                table.free(taken);
            if (error)
                *error = *problem;
            return nullptr;
        }
        pool.config = &pool_config;
        std::vector<std::uint64_t> primary_identities, backup_identities;  // backend_identity, parallel
        const std::unordered_map<std::string, BackendId> kept_slots = previous_slots(previous, pool_config.name);
        for (const BackendConfig& backend : pool_config.backends) {
            std::optional<BackendId> id;
            if (auto kept = kept_slots.find(backend.identity()); kept != kept_slots.end())
                id = kept->second;
            if (id) {
                // A weight changed in the file wins over one set at run time.
                table.set_weight(*id, static_cast<std::uint16_t>(backend.weight));
            } else {
                // A pool that checks roles sends nothing to a backend before a
                // check confirmed it: its new slots start down, before any
                // worker can see them (the prober confirms them at once).
                const bool unconfirmed =
                    pool_config.health && pool_config.health->role != HealthCheckConfig::Role::Any;
                // A name without an answer starts down for that reason (the
                // prober lifts it once the name resolves).
                const HealthReason reason = !backend.usable_address() ? down_reason(backend.status)
                    : unconfirmed                                     ? HealthReason::Unconfirmed
                                                                      : HealthReason::None;
                id = table.allocate(static_cast<std::uint16_t>(backend.weight),
                                    reason == HealthReason::None ? Health::Up : Health::Down, reason);
                if (!id) {
                    for (BackendId taken : allocated)
                        table.free(taken);
                    if (error)
                        *error = "too many backends: the backend table holds "
                                 + std::to_string(BackendTable::kCapacity);
                    return nullptr;
                }
                allocated.push_back(*id);
                // Added by a reload: a newcomer ramps up like a backend that
                // came back (those present at start take full weight at once).
                if (previous)
                    table.mark_came_up(*id, monotonic_ms());
            }
            table.set_limits(*id, static_cast<std::uint32_t>(backend.max_connections),
                             static_cast<std::uint32_t>(std::min<std::int64_t>(pool_config.slow_start.count(),
                                                                               UINT32_MAX)));
            pool.index_of.emplace(*id, pool.backend_ids.size());
            pool.backend_ids.push_back(*id);
            // A name with no address yet has a slot (show servers lists it,
            // down with the reason) but no balancer picks it.
            if (backend.usable_address()) {
                (backend.backup ? pool.backups : pool.primaries).push_back(*id);
                (backend.backup ? backup_identities : primary_identities).push_back(backend_identity(backend.name));
            }
        }
        const PoolRuntime* old_pool = previous ? previous->find_pool(pool_config.name) : nullptr;
        pool.primary_lookup = ip_hash_lookup(pool_config, pool.primaries, primary_identities,
                                             old_pool ? old_pool->primary_lookup : nullptr, table);
        pool.backup_lookup = ip_hash_lookup(pool_config, pool.backups, backup_identities,
                                            old_pool ? old_pool->backup_lookup : nullptr, table);
    }
    return runtime;
}

} // namespace sluice
