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

namespace {

// Counts a refusal in the listener's stats and logs it at most once per
// interval for the listener across workers (no line without shared counters).
void note_source_refused(const ListenerConfig& config, ListenerStats& stats, ListenerCounters* counters,
                         SourceRefusal refusal, const SocketAddress& client) noexcept
{
    const bool denied = refusal == SourceRefusal::Denied;
    (denied ? stats.denied : stats.source_limited).fetch_add(1, std::memory_order_relaxed);
    if (!counters)
        return;
    LogThrottle& throttle = denied ? counters->denied_log : counters->source_limited_log;
    std::uint64_t count = throttle.note(monotonic_ms());
    if (!count)
        return;
    const std::string_view what = config.protocol == Protocol::Udp ? "flow" : "client";
    try {
        if (denied)
            log::warning("listener {}: refused {} new {}{} by allow/deny in the last {}s (last from {})", config.name,
                         count, what, count == 1 ? "" : "s", throttle.interval_ms() / 1000, client.ip_string());
        else
            log::warning("listener {}: max_connections_per_source ({}) reached: turned away {} new {}{} in the last "
                         "{}s (last from {})",
                         config.name, config.max_connections_per_source, count, what, count == 1 ? "" : "s",
                         throttle.interval_ms() / 1000, client.ip_string());
    } catch (...) {
        // Out of memory: no line this time; the counters have it.
    }
}

} // namespace

SourceAdmission admit_source(const ListenerConfig& config, ListenerStats& stats,
                             const std::shared_ptr<ListenerCounters>& counters, const SocketAddress& client) noexcept
{
    SourceAdmission admission;
    if ((config.deny && config.deny->contains(client)) || (config.allow && !config.allow->contains(client)))
        [[unlikely]] {
        admission.refusal = SourceRefusal::Denied;
    } else if (config.max_connections_per_source > 0) {
        // The lease keeps the table alive: it lives in the counters, which a
        // session may outlive when a reload drops its listener. Without
        // counters the count cannot be kept exact: refused.
        if (counters
            && counters->source_limits.try_acquire(client, static_cast<std::uint32_t>(config.max_connections_per_source)))
            admission.lease = SourceLease(std::shared_ptr<SourceLimits>(counters, &counters->source_limits), client);
        else
            admission.refusal = SourceRefusal::PerSourceLimit;
    }
    if (admission.refusal != SourceRefusal::None) [[unlikely]]
        note_source_refused(config, stats, counters.get(), admission.refusal, client);
    return admission;
}

SourceAdmission Listener::admit_source(const SocketAddress& client) noexcept
{
    if (!counters_ && !own_counters_ && config_->max_connections_per_source > 0) {
        try {
            own_counters_ = std::make_shared<ListenerCounters>(1);
        } catch (...) {
            // out of memory: the free function refuses without counters
        }
    }
    return sluice::admit_source(*config_, stats_, counters_ ? counters_ : own_counters_, client);
}

} // namespace sluice
