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
#include "sluice/connector.h"
#include "sluice/event_loop.h"
#include "sluice/fd.h"
#include "sluice/pipe_pool.h"
#include "sluice/relay.h"

#include <cstdint>
#include <memory>
#include <optional>

namespace sluice {

class Worker;
struct WorkerGeneration;
struct WorkerPool;
struct ListenerConfig;

// How a session ended (access log, counters).
enum class CloseReason : std::uint8_t {
    Done,            // both sides closed normally
    ClientReset,
    BackendReset,
    IdleTimeout,
    NoBackend,       // no usable backend, or every retry failed
    Shutdown,        // sluice stopped (drain timeout or second signal)
    ResourceLimit,   // could not get a socket or buffer
};
std::string_view to_string(CloseReason reason) noexcept;

class TcpSession {
public:
    enum class State : std::uint8_t { Connecting, Established };

    // Takes the accepted client socket; call start() next.
    TcpSession(Worker& worker, std::shared_ptr<WorkerGeneration> generation, WorkerPool& pool,
               const ListenerConfig& listener, UniqueFd client, const SocketAddress& client_address);
    ~TcpSession();
    TcpSession(const TcpSession&) = delete;
    TcpSession& operator=(const TcpSession&) = delete;

    // Picks a backend and starts connecting. May delete the session (no backend).
    void start();

    // Ends the session now (shutdown or drain timeout). Deletes it.
    void abort(CloseReason reason);

    // --- read by the worker for show sessions / access log ---
    const SocketAddress& client_address() const noexcept { return client_address_; }
    std::optional<BackendId> backend() const noexcept { return backend_; }
    State state() const noexcept { return state_; }
    std::uint64_t bytes_from_client() const noexcept { return upstream_.bytes; }
    std::uint64_t bytes_from_backend() const noexcept { return downstream_.bytes; }
    bool client_half_closed() const noexcept { return upstream_.eof; }
    bool backend_half_closed() const noexcept { return downstream_.eof; }
    ev_tstamp started_at() const noexcept { return started_at_; }
    const ListenerConfig& listener() const noexcept { return listener_; }
    const WorkerGeneration& generation() const noexcept { return *generation_; }

    // Intrusive list of the worker's sessions.
    TcpSession* prev = nullptr;
    TcpSession* next = nullptr;

private:
    void connect_next();
    void on_connect_event(int revents);
    void on_connect_failed(SysError error);
    void on_connect_timeout();
    void on_established();

    void on_client_event(int revents);
    void on_backend_event(int revents);
    void on_timer();

    // Moves bytes along `dir` (relay.h) and accounts for them.
    PumpResult pump(RelayDirection& dir, int source_fd, int sink_fd);
    TransitPools transit() noexcept;
    // After pumping: closes or resets the session if due, else updates the
    // watchers. Returns false when the session was deleted.
    bool settle(PumpResult up, PumpResult down);
    void update_watchers();

    void close(CloseReason reason);
    // Ends this session's count in the backend table's `active`, once: at the
    // last FIN out, or at close(), whichever comes first.
    void release_backend() noexcept;

    Worker& worker_;
    std::shared_ptr<WorkerGeneration> generation_;
    WorkerPool& pool_;
    const ListenerConfig& listener_;
    Connector connector_;

    UniqueFd client_;
    UniqueFd backend_fd_;
    IoWatcher client_io_;
    IoWatcher backend_io_;
    // One timer: connect timeout while connecting, then idle timeout.
    TimerWatcher timer_;

    SocketAddress client_address_;
    std::optional<BackendId> backend_;
    bool backend_released_ = false;  // release_backend() done for backend_
    RelayDirection upstream_;    // client -> backend
    RelayDirection downstream_;  // backend -> client
    State state_ = State::Connecting;
    ev_tstamp started_at_ = 0;
    ev_tstamp last_activity_ = 0;
};

} // namespace sluice
