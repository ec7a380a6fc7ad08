// Runtime: one published generation of the configuration.
//
// The validated Config plus the BackendTable slots its backends occupy. It is
// immutable once built. Workers and the sessions started under it share it
// (std::shared_ptr: a generation lives until the last worker and the last
// session that started under it let go, which a reload cannot predict).
#pragma once

#include "sluice/access_log.h"
#include "sluice/backend_table.h"
#include "sluice/config.h"
#include "sluice/ip_hash_lookup.h"
#include "sluice/pool_queue.h"
#include "sluice/stats.h"

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace sluice {

struct PoolRuntime {
    const PoolConfig* config = nullptr;
    std::vector<BackendId> backend_ids;  // parallel to config->backends
    std::unordered_map<BackendId, std::size_t> index_of;  // id -> index in backend_ids (pools of 10,000 exist)
    std::vector<BackendId> primaries;
    std::vector<BackendId> backups;
    // ip_hash pools: the Maglev lookups over primaries and over backups
    // (null for other algorithms), built by the control thread
    // and shared by every worker's balancer. Kept by the next generation
    // when the set and its names are the same, so a reload or a DNS change
    // elsewhere rebuilds nothing (ip_hash_lookup.h).
    std::shared_ptr<IpHashLookup> primary_lookup;
    std::shared_ptr<IpHashLookup> backup_lookup;
    // Set while every backend of the pool is unusable, so "no backend" is
    // logged once per state change, not once per connection. Any worker may
    // flip it; the exchange decides which one logs.
    mutable std::atomic<bool> all_down{false};
    // Failed connects, retries, rejected clients. Shared with the previous and
    // next generations of the same pool so a reload keeps the counts (null for
    // a runtime built without attach_operations(), e.g. in unit tests).
    std::shared_ptr<PoolStats> stats;
    // Session duration and queue wait per worker, carried like `stats` (null
    // without attach_operations()).
    std::shared_ptr<PoolHistograms> histograms;
    // Clients waiting for a backend slot (queue_timeout). Null while the pool
    // has never had a queue, so releasing a backend then costs one test;
    // shared with the next generations of the pool once made, so clients
    // queued before a reload are served by sessions started after it.
    std::shared_ptr<PoolQueue> queue;

    // "pool/name" of a backend of this pool, for logs.
    std::string label(BackendId id) const;
    const BackendConfig* backend(BackendId id) const noexcept;
};

// What a generation adds to one configured listener (see reload.h).
struct ListenerRuntime {
    // Shared with the generations before and after that keep the listener
    // (same protocol and address), so counts survive a reload.
    std::shared_ptr<ListenerCounters> counters;
    std::shared_ptr<AccessLogFile> access_log;  // null: no access log
    SocketAddress bound;                        // the address actually bound (port 0 resolved)
};

struct Runtime {
    Config config;
    std::vector<PoolRuntime> pools;  // parallel to config.pools
    // Parallel to config.listeners; empty for a runtime built without
    // attach_operations() (unit tests).
    std::vector<ListenerRuntime> listeners;
    std::uint64_t generation = 0;

    const PoolRuntime* find_pool(std::string_view name) const noexcept;
    // The ListenerRuntime of `listener` (an element of config.listeners), or null.
    const ListenerRuntime* find_listener(const ListenerConfig& listener) const noexcept;
};

// The down reason of a backend whose name has `status` (None when resolved).
HealthReason down_reason(NameStatus status) noexcept;

// Builds a generation from a validated config, taking BackendTable slots for its
// backends. A backend that `previous` already had (same pool name and address)
// keeps its slot, so health, admin state and counters carry over a reload.
// Returns null with `error` set when the table is full.
std::shared_ptr<Runtime> build_runtime(Config config, BackendTable& table, const Runtime* previous,
                                       std::string* error);

} // namespace sluice
