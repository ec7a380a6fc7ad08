#include "sluice/reload.h"

#include <algorithm>

namespace sluice {

bool same_listener(const ListenerConfig& current, const ListenerConfig& next) noexcept
{
    if (current.protocol != next.protocol || !(current.listen == next.listen))
        return false;
    // Port 0 means "any port": two such listeners on one address are told
    // apart by name.
    return next.listen.port() != 0 || current.name == next.name;
}

std::vector<std::optional<std::size_t>> match_listeners(const Config& current, const Config& next)
{
    std::vector<std::optional<std::size_t>> kept(next.listeners.size());
    std::vector<bool> taken(current.listeners.size(), false);
    for (std::size_t n = 0; n < next.listeners.size(); ++n) {
        for (std::size_t c = 0; c < current.listeners.size(); ++c) {
            if (!taken[c] && same_listener(current.listeners[c], next.listeners[n])) {
                taken[c] = true;
                kept[n] = c;
                break;
            }
        }
    }
    return kept;
}

std::vector<BackendId> removed_backends(const Runtime& previous, const Runtime& next)
{
    // One flag per table slot: linear in the backends, for pools of thousands.
    std::vector<bool> still_used(BackendTable::kCapacity, false);
    for (const PoolRuntime& pool : next.pools)
        for (BackendId id : pool.backend_ids)
            still_used[id] = true;
    std::vector<BackendId> removed;
    for (const PoolRuntime& pool : previous.pools)
        for (BackendId id : pool.backend_ids)
            if (!still_used[id])
                removed.push_back(id);
    return removed;
}

bool attach_operations(Runtime& next, const Runtime* previous, unsigned workers, std::vector<std::string>* errors)
{
    bool ok = true;
    std::vector<std::optional<std::size_t>> kept;
    if (previous)
        kept = match_listeners(previous->config, next.config);
    next.listeners = std::vector<ListenerRuntime>(next.config.listeners.size());
    for (std::size_t i = 0; i < next.config.listeners.size(); ++i) {
        const ListenerConfig& config = next.config.listeners[i];
        ListenerRuntime& listener = next.listeners[i];
        if (previous && kept[i] && *kept[i] < previous->listeners.size()) {
            const ListenerRuntime& before = previous->listeners[*kept[i]];
            listener.counters = before.counters;
            listener.bound = before.bound;
        }
        if (!listener.counters)
            listener.counters = std::make_shared<ListenerCounters>(workers);
        if (!config.access_log.empty()) {
            std::string error;
            listener.access_log = AccessLogFile::open(config.access_log, &error);
            if (!listener.access_log) {
                ok = false;
                if (errors)
                    errors->push_back("listener " + config.name + ": " + error);
            }
        }
    }
    for (PoolRuntime& pool : next.pools) {
        const PoolRuntime* before = previous ? previous->find_pool(pool.config->name) : nullptr;
        pool.stats = before && before->stats ? before->stats : std::make_shared<PoolStats>();
        pool.histograms =
            before && before->histograms ? before->histograms : std::make_shared<PoolHistograms>(workers);
        if (before && before->queue)
            pool.queue = before->queue;
        else if (pool.config->queue_timeout.count() > 0)
            pool.queue = std::make_shared<PoolQueue>();
    }
    return ok;
}

} // namespace sluice
