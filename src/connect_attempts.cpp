#include "sluice/connect_attempts.h"

#include "sluice/log.h"
#include "sluice/log_throttle.h"

#include <algorithm>

namespace sluice {

std::optional<BackendId> ConnectAttempts::next(const SocketAddress& client, std::int64_t now_ms)
{
    PoolStats* stats = pool_->stats.get();
    should_queue_ = false;
    if (attempts_failed() > pool_->config->retries) {
        if (stats)
            stats->rejected.fetch_add(1, std::memory_order_relaxed);
        return std::nullopt;
    }
    // Only a first attempt may wait, and it waits behind anyone waiting.
    const bool may_queue = may_queue_ && failed_ == 0 && pool_->queue && pool_->config->queue_timeout.count() > 0;
    if (may_queue && pool_->queue->has_waiters()) [[unlikely]] {
        should_queue_ = true;
        return std::nullopt;
    }
    std::optional<BackendId> id = acquire_any(client, now_ms);
    if (id) {
        if (stats && failed_ > 0)
            stats->retries.fetch_add(1, std::memory_order_relaxed);
        adopt(*id);
        return id;
    }
    if (may_queue && any_full(now_ms)) {
        should_queue_ = true;
        return std::nullopt;
    }
    if (stats)
        stats->rejected.fetch_add(1, std::memory_order_relaxed);
    if (failed_ == 0 && !pool_->all_down.load(std::memory_order_relaxed)
        && !pool_->all_down.exchange(true, std::memory_order_relaxed)) {
        // Only a first attempt proves the whole pool is unusable; a retry that
        // finds nothing new merely ran out of other backends.
        log::warning("pool {} has no usable backend: closing new clients", pool_->config->name);
    }
    return id;
}

std::optional<BackendId> ConnectAttempts::acquire_any(const SocketAddress& client, std::int64_t now_ms)
{
    PickContext ctx;
    ctx.client = &client;
    ctx.now_ms = now_ms;
    // Balancers skip full backends, so a lost race for the last slot is rare;
    // each loss excludes that backend, so this ends within the pool's size.
    for (;;) {
        ctx.excluded = tried_;
        std::optional<BackendId> id = balancer_->pick(ctx);
        if (!id || table_->try_acquire(*id))
            return id;
        tried_.push_back(*id);
    }
}

void ConnectAttempts::adopt(BackendId backend)
{
    if (pool_->all_down.load(std::memory_order_relaxed) && pool_->all_down.exchange(false, std::memory_order_relaxed))
        log::info("pool {} has a usable backend again", pool_->config->name);
    counters_->count_session(backend, table_->epoch(backend));
}

bool ConnectAttempts::any_full(std::int64_t now_ms) const noexcept
{
    auto full = [&](BackendId id) { return table_->usable(id, now_ms) && !table_->has_room(id); };
    return std::any_of(pool_->primaries.begin(), pool_->primaries.end(), full)
        || std::any_of(pool_->backups.begin(), pool_->backups.end(), full);
}

void ConnectAttempts::failed(BackendId backend, SysError error, std::int64_t now_ms)
{
    release_backend_slot(*table_, *pool_, backend, now_ms);
    tried_.push_back(backend);
    ++failed_;
    if (PoolStats* stats = pool_->stats.get())
        stats->failed_connects.fetch_add(1, std::memory_order_relaxed);
    record_passive_failure(*table_, *pool_, backend, "connect", error, now_ms);
}

bool record_passive_failure(BackendTable& table, const PoolRuntime& pool, BackendId backend, std::string_view what,
                            SysError error, std::int64_t now_ms)
{
    const PoolConfig& config = *pool.config;
    if (!table.record_connect_failure(backend, now_ms, config.max_fails, config.fail_timeout.count()))
        return false;
    // With active checks the prober turns this mark into a Down verdict and
    // logs that transition itself ("N connect failures from traffic"); a line
    // here too would log one transition twice. Without checks nobody else
    // will, so the mark is logged here.
    if (!config.health)
        log::warning("{} is DOWN ({} {} failure{} within {}ms, last: {})", pool.label(backend), config.max_fails,
                     what, config.max_fails == 1 ? "" : "s", config.fail_timeout.count(), describe(error));
    return true;
}

void ConnectAttempts::local_shortage(BackendId backend, SysError error, std::int64_t now_ms)
{
    release_backend_slot(*table_, *pool_, backend, now_ms);
    if (PoolStats* stats = pool_->stats.get())
        stats->rejected.fetch_add(1, std::memory_order_relaxed);
    note_client_turned_away(error, now_ms);
}

void note_client_turned_away(SysError error, std::int64_t now_ms) noexcept
{
    // One throttle for the process: a shortage hits every worker at once.
    static LogThrottle throttle;
    if (std::uint64_t clients = throttle.note(now_ms))
        log::warning("turned away {} new client{} in the last {}s: sluice is out of local resources ({}), not a "
                     "backend fault; service resumes when they free up",
                     clients, clients == 1 ? "" : "s", throttle.interval_ms() / 1000, describe(error));
}

} // namespace sluice
