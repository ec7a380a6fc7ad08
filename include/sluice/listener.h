// Listener: one worker's socket for one configured listener; what TCP and UDP
// listeners share (counters, admission under max_connections).
//
// Every worker has its own SO_REUSEPORT socket per listener, so the kernel
// spreads clients over workers and no accept lock exists. The kinds are
// TcpListener (tcp_listener.h) and UdpListener (udp_flow.h); only
// listener_factory.h knows both.
#pragma once

#include "sluice/config.h"
#include "sluice/errors.h"
#include "sluice/event_loop.h"
#include "sluice/fd.h"
#include "sluice/source_limits.h"
#include "sluice/stats.h"

#include <atomic>
#include <cstdint>
#include <memory>

namespace sluice {

class WorkerContext;
struct SharedState;

// Why admit_source refused a client.
enum class SourceRefusal : std::uint8_t {
    None,            // admitted
    Denied,          // inside `deny`, or outside a configured `allow`
    PerSourceLimit,  // its IP already has max_connections_per_source sessions
};

// admit_source's answer: the refusal, or the admission's count under
// max_connections_per_source (empty when that is off), which the session
// holds until it ends (Session::hold_source).
struct SourceAdmission {
    SourceRefusal refusal = SourceRefusal::None;
    SourceLease lease;
    explicit operator bool() const noexcept { return refusal == SourceRefusal::None; }
};

// Who may connect, for a listener's `config`: allow/deny, then
// max_connections_per_source (counted in `counters`, which spans the
// listener's workers; without counters that key refuses). A refusal is
// counted in `stats` and logged at most once per interval. For a session that
// learns its client late (a PROXY header); listeners call the member below.
SourceAdmission admit_source(const ListenerConfig& config, ListenerStats& stats,
                             const std::shared_ptr<ListenerCounters>& counters, const SocketAddress& client) noexcept;

class Listener {
public:
    virtual ~Listener() = default;
    // Loop thread: begin / stop taking clients. stop() closes the socket.
    virtual void start() = 0;
    virtual void stop() = 0;

    const ListenerConfig& config() const noexcept { return *config_; }
    // A reload kept this listener (same protocol and address) with possibly
    // new settings (pool, timeouts). Loop thread.
    void set_config(const ListenerConfig& config) noexcept { config_ = &config; }
    const ListenerStats& stats() const noexcept { return stats_; }

    // Who may connect: allow/deny, then max_connections_per_source, for a
    // client (TCP) or a new flow (UDP) from `client`. Called where the
    // client's address becomes known: at accept, at a new flow, or after a
    // PROXY header announced it. A refusal is counted in this listener's
    // stats and logged at most once per interval; the caller closes the
    // client (or drops the datagram) without touching a backend. With none
    // of the keys set it costs three compares and no syscall. Loop thread.
    SourceAdmission admit_source(const SocketAddress& client) noexcept;

protected:
    // Counts into a ListenerStats of the listener's own (not reported).
    explicit Listener(const ListenerConfig& config) : config_(&config), stats_(own_stats_) {}
    // Counts into `counters`' line for worker `worker`, which the admin thread
    // reports and a reload carries over; the listener keeps `counters` alive.
    Listener(const ListenerConfig& config, std::shared_ptr<ListenerCounters> counters, unsigned worker)
        : config_(&config), counters_(std::move(counters)), stats_(counters_ ? counters_->worker(worker) : own_stats_)
    {
    }

    // Counts a new session (TCP client or UDP flow) against max_connections,
    // which spans all workers. At the cap the client is counted as rejected,
    // a warning is logged at most once per interval with the number turned
    // away, and false is returned: the caller closes the client or drops the
    // datagram. A session admitted here gives its place back when it ends.
    bool admit_session(SharedState& shared) noexcept;

    const ListenerConfig* config_;

private:
    ListenerStats own_stats_;
    std::shared_ptr<ListenerCounters> counters_;
    LogThrottle own_turned_away_log_;  // when there are no shared counters
    // When there are no shared counters (unit tests): made at first use.
    std::shared_ptr<ListenerCounters> own_counters_;

protected:
    ListenerStats& stats_;  // written by this listener's worker only
};

// The counters of `config` in `worker`'s current generation, for a listener's
// constructor (null when the runtime has none, as in unit tests).
std::shared_ptr<ListenerCounters> listener_counters(WorkerContext& worker, const ListenerConfig& config);

} // namespace sluice
