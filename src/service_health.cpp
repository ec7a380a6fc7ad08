#include "sluice/service_health.h"

#include <fmt/format.h>

namespace sluice {

namespace {

// The same test every balancer applies (balance/algorithms.h pickable_weight):
// usable, and a weight above 0 (weight 0 is an admin's "no new sessions").
bool can_take_sessions(const BackendTable& table, BackendId id, std::int64_t now_ms) noexcept
{
    return table.usable(id, now_ms) && table.weight(id) != 0;
}

} // namespace

ServiceHealth check_service_health(const Runtime& runtime, const BackendTable& table, std::int64_t now_ms,
                                   bool draining)
{
    ServiceHealth health;
    if (draining)
        health.body += "draining: listeners closed, no new sessions\n";
    // A runtime without listener records (built without attach_operations)
    // has nothing to say about binding.
    for (std::size_t i = 0; i < runtime.config.listeners.size() && i < runtime.listeners.size(); ++i)
        if (runtime.listeners[i].bound.empty())
            health.body += fmt::format("listener \"{}\": not bound\n", runtime.config.listeners[i].name);
    for (const PoolRuntime& pool : runtime.pools) {
        bool any = false;
        for (BackendId id : pool.backend_ids)
            any = any || can_take_sessions(table, id, now_ms);
        if (!any)
            health.body += fmt::format("pool \"{}\": no usable backend\n", pool.config->name);
    }
    health.healthy = health.body.empty();
    if (health.healthy)
        health.body = "ok\n";
    return health;
}

} // namespace sluice
