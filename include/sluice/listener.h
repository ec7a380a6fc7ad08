// Listeners: one worker's socket for one configured listener.
//
// Every worker has its own SO_REUSEPORT socket per listener, so the kernel
// spreads clients over workers and no accept lock exists. make_listener() is
// the only place that knows the kinds (TCP here; UDP in udp_flow.h).
#pragma once

#include "sluice/config.h"
#include "sluice/errors.h"
#include "sluice/event_loop.h"
#include "sluice/fd.h"
#include "sluice/stats.h"

#include <atomic>
#include <cstdint>
#include <memory>

namespace sluice {

class Worker;
struct SharedState;

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

protected:
    ListenerStats& stats_;  // written by this listener's worker only
};

// Opens one worker's socket for `config` (bound to `address`, which has port 0
// replaced by the port the first worker's socket got).
Result<UniqueFd> open_listener_socket(const ListenerConfig& config, const SocketAddress& address, int backlog);

// The counters of `config` in `worker`'s current generation, for a listener's
// constructor (null when the runtime has none, as in unit tests).
std::shared_ptr<ListenerCounters> listener_counters(Worker& worker, const ListenerConfig& config);

// The listener of the right kind for `config` on `worker`, owning `fd`.
std::unique_ptr<Listener> make_listener(Worker& worker, UniqueFd fd, const ListenerConfig& config);

// TCP: accepts in bounded batches so one busy listener cannot starve the loop,
// and survives EMFILE/ENFILE without spinning: it gives up a reserve
// descriptor, accepts the pending connection and closes it at once, then takes
// the reserve back (the muduo Acceptor trick). Loop thread only.
class TcpListener final : public Listener {
public:
    static constexpr int kAcceptBatch = 64;
    // How long accepting pauses when even the reserve descriptor is gone.
    static constexpr double kPauseAtFdLimit = 0.1;

    TcpListener(Worker& worker, UniqueFd fd, const ListenerConfig& config);
    void start() override;
    void stop() override;

private:
    void on_readable(int revents);
    // Returns false when the listener had to pause (no reserve descriptor).
    bool shed_one_connection();
    void on_resume();

    Worker& worker_;
    UniqueFd fd_;
    IoWatcher io_;
    TimerWatcher resume_timer_;  // restarts accepting after a pause at EMFILE
};

} // namespace sluice
