// A configuration generation as one worker uses it: the shared Runtime plus
// the worker's own balancer per pool.
#pragma once

#include "sluice/backend_table.h"
#include "sluice/balancer.h"
#include "sluice/runtime.h"

#include <memory>
#include <string_view>
#include <vector>

namespace sluice {

// This worker's view of one pool in one generation: its own balancer instance.
struct PoolPicker {
    PoolPicker(const PoolRuntime& runtime, const BackendTable& table)
        : runtime(&runtime)
        , balancer(runtime.config->balance, runtime.primaries, runtime.backups, table,
                   runtime.primary_lookup, runtime.backup_lookup)
    {
    }
    const PoolRuntime* runtime;
    PoolBalancer balancer;
};

// A generation as one worker uses it. Sessions keep the generation they
// started under alive (shared_ptr), so a reload never pulls a pool from under
// a connecting session.
struct WorkerRuntime {
    std::shared_ptr<const Runtime> runtime;
    std::vector<std::unique_ptr<PoolPicker>> pools;  // parallel to runtime->pools
    PoolPicker* find_pool(std::string_view name) noexcept;
};

} // namespace sluice
