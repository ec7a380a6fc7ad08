// TcpSession: one proxied client connection and its backend connection.
//
// Bytes move with splice(2) through a pipe per direction, borrowed from the
// worker's PipePool only while that direction has bytes in flight (an idle
// session holds no pipe and no buffer). Where splice cannot be used (no pipe
// could be made, or the kernel refuses splice on the socket) a direction falls
// back to a bounded 64 KiB buffer from the worker's BufferPool.
//
// Backpressure: a direction reads only when its pipe is empty, so a side that
// cannot write stops the other side from being read; memory per session is
// bounded by two pipes whatever the peers do.
// Half-close: a FIN read from one side becomes shutdown(SHUT_WR) on the other
// once everything before it was written; the other direction keeps flowing.
// The session ends when both directions have ended. Resets: an error on one
// side resets the other (SO_LINGER 0), so no peer is left in CLOSE_WAIT.
//
// Lives on one worker's loop thread, from accept to close; deletes itself.
#pragma once

#include "sluice/addr.h"
#include "sluice/backend_table.h"
#include "sluice/connect_attempts.h"
#include "sluice/event_loop.h"
#include "sluice/fd.h"
#include "sluice/relay.h"
#include "sluice/session.h"
#include "sluice/stats.h"

#include <cstdint>
#include <memory>
#include <optional>

namespace sluice {

class WorkerContext;
struct WorkerRuntime;
struct PoolPicker;

class TcpSession final : public Session {
public:
    enum class State : std::uint8_t { Connecting, Established };

    // Takes the accepted client socket; hand the session to the worker's
    // registry, then call start().
    // `listener_stats`: this worker's line of the listener's counters (kept
    // alive by `generation`).
    TcpSession(WorkerContext& worker, std::shared_ptr<WorkerRuntime> generation, PoolPicker& pool,
               const ListenerConfig& listener, ListenerStats& listener_stats, UniqueFd client,
               const SocketAddress& client_address);
    ~TcpSession() override;

    // Picks a backend and starts connecting. May end the session (no backend).
    void start();

    // --- Session ---
    // Ends the session now (shutdown, drain timeout). Destroys it.
    void end(EndCause cause) override { close(cause); }
    const SocketAddress& client() const noexcept override { return client_address_; }
    SessionCounts counts() const noexcept override { return {upstream_.bytes, downstream_.bytes, 0, 0}; }
    std::string_view state() const noexcept override;

private:
    void connect_next();
    void on_connect_event(int revents);
    void on_connect_failed(SysError error);
    void on_established();

    void on_client_event(int revents);
    void on_backend_event(int revents);
    void on_timer();
    // The half-close timeout that applies now (0 = none), and when it ends
    // the session; on_half_closed() starts it as a FIN is passed on.
    Duration fin_timeout() const noexcept;
    std::optional<ev_tstamp> fin_deadline() const noexcept;
    void on_half_closed();
    // (Re)starts the timer for the nearest of the idle and half-close deadlines.
    void arm_timeouts();

    // Moves bytes along `dir` (relay.h) and accounts for them.
    PumpResult pump(RelayDirection& dir, int source_fd, int sink_fd);
    TransitPools transit() noexcept;
    // After pumping: closes or resets the session if due, else updates the
    // watchers. Returns false when the session was deleted.
    bool settle(PumpResult up, PumpResult down);
    void update_watchers();

    // Ends the session through the registry, which destroys it.
    void close(EndCause cause);
    // Ends this session's count in the backend table's `active`, once: at the
    // last FIN out, or at close(), whichever comes first.
    void release_backend() noexcept;

    WorkerContext& worker_;
    PoolPicker& pool_;
    ConnectAttempts connector_;
    // This worker's line of the listener's counters, kept alive by the
    // session's generation; bytes are counted as they move.
    ListenerStats& listener_stats_;

    UniqueFd client_;
    UniqueFd backend_fd_;
    IoWatcher client_io_;
    IoWatcher backend_io_;
    // One timer: connect timeout while connecting, then the idle and
    // half-close timeouts.
    TimerWatcher timer_;

    SocketAddress client_address_;
    bool backend_released_ = false;  // release_backend() done for backend()
    RelayDirection upstream_;    // client -> backend
    RelayDirection downstream_;  // backend -> client
    State state_ = State::Connecting;
    ev_tstamp last_activity_ = 0;
    ev_tstamp half_closed_at_ = 0;  // when the first FIN was passed on
};

} // namespace sluice
