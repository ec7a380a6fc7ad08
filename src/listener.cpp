#include "sluice/listener.h"

#include "sluice/log.h"
#include "sluice/worker_context.h"

namespace sluice {

std::shared_ptr<ListenerCounters> listener_counters(WorkerContext& worker, const ListenerConfig& config)
{
    const auto& generation = worker.runtime();
    const ListenerRuntime* listener = generation ? generation->runtime->find_listener(config) : nullptr;
    return listener ? listener->counters : nullptr;
}

bool Listener::admit_session(SharedState& shared) noexcept
{
    if (shared.sessions.fetch_add(1, std::memory_order_relaxed) < shared.max_sessions) [[likely]]
        return true;
    shared.sessions.fetch_sub(1, std::memory_order_relaxed);
    stats_.rejected.fetch_add(1, std::memory_order_relaxed);
    LogThrottle& throttle = counters_ ? counters_->turned_away_log : own_turned_away_log_;
    if (std::uint64_t count = throttle.note(monotonic_ms()))
        log::warning("listener {}: max_connections ({}) reached: turned away {} new {}{} in the last {}s",
                     config_->name, shared.max_sessions, count,
                     config_->protocol == Protocol::Udp ? "flow" : "client", count == 1 ? "" : "s",
                     throttle.interval_ms() / 1000);
    return false;
}

} // namespace sluice
