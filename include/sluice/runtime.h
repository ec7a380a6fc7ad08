// Runtime: one published generation of the configuration.
//
// The validated Config plus the BackendTable slots its backends occupy. It is
// immutable once built. Workers and the sessions started under it share it
// (std::shared_ptr: a generation lives until the last worker and the last
// session that started under it let go, which a reload cannot predict).
#pragma once

#include "sluice/backend_table.h"
#include "sluice/config.h"

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sluice {

struct PoolRuntime {
    const PoolConfig* config = nullptr;
    std::vector<BackendId> backend_ids;  // parallel to config->backends
    std::vector<BackendId> primaries;
    std::vector<BackendId> backups;
    // Set while every backend of the pool is unusable, so "no backend" is
    // logged once per state change, not once per connection. Any worker may
    // flip it; the exchange decides which one logs.
    mutable std::atomic<bool> all_down{false};

    // "pool/name" of a backend of this pool, for logs.
    std::string label(BackendId id) const;
    const BackendConfig* backend(BackendId id) const noexcept;
};

struct Runtime {
    Config config;
    std::vector<PoolRuntime> pools;  // parallel to config.pools
    std::uint64_t generation = 0;

    const PoolRuntime* find_pool(std::string_view name) const noexcept;
};

// Builds a generation from a validated config, taking BackendTable slots for its
// backends. A backend that `previous` already had (same pool name and address)
// keeps its slot, so health, admin state and counters carry over a reload.
// Returns null with `error` set when the table is full.
std::shared_ptr<Runtime> build_runtime(Config config, BackendTable& table, const Runtime* previous,
                                       std::string* error);

} // namespace sluice
