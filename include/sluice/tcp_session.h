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
#include "sluice/proxy_protocol.h"
#include "sluice/pool_queue.h"
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

class TcpSession final : public Session, private QueueClient {
public:
    // ReadingProxyHeader: accept_proxy listeners only, before any backend is chosen.
    // Queued: every usable backend is at max_connections; waiting in the pool queue.
    enum class State : std::uint8_t { ReadingProxyHeader, Queued, Connecting, Established };

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
    SessionCounts counts() const noexcept override { return {client_bytes_in(upstream_.bytes), downstream_.bytes, 0, 0}; }
    std::string_view state() const noexcept override;

private:
    // --- PROXY protocol (proxy_protocol.h) ---
    // accept_proxy: checks the peer against accept_proxy_from, then waits for
    // the header on the client socket, up to proxy_timeout.
    void start_reading_proxy_header();
    // Borrows the upstream direction's buffer, where header bytes are staged;
    // false when none could be had (the session was closed).
    bool hold_upstream_buffer();
    void on_proxy_header_readable();
    // Closes a client whose header is missing, bad, slow or untrusted:
    // counted per listener, logged rate-limited, no backend touched.
    void refuse_proxy_header(std::string_view reason);
    bool admit_announced_client() noexcept;
    // send_proxy: puts the header in front of the upstream bytes. False when
    // the session was closed.
    bool stage_proxy_header(ProxyVersion version);
    SocketAddress proxy_destination() const;
    // Upstream bytes that came from the client (the staged header excluded).
    std::uint64_t client_bytes_in(std::uint64_t upstream_bytes) const noexcept
    {
        return upstream_bytes > proxy_header_length_ ? upstream_bytes - proxy_header_length_ : 0;
    }

    void connect_next();
    // Connects to `id`, acquired for this session.
    void connect_to(BackendId id);
    // Every usable backend is full: waits in the pool's queue, its bytes
    // unread, until a slot is handed over or queue_timeout passes.
    void wait_in_queue();
    void record_queue_wait() noexcept;
    void on_slot_granted(BackendId backend) override;
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
    PumpResult pump(RelayDirection& dir, int source_fd, int sink_fd,
                    int max_reads = RelayDirection::kMaxReadsPerEvent);
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
    // One timer: queue timeout while queued, connect timeout while
    // connecting, then the idle and half-close timeouts.
    TimerWatcher timer_;

    // The client: the accepted peer, or the address its PROXY header announced.
    SocketAddress client_address_;
    // accept_proxy: the address the client connected to, as announced (empty
    // when none was), which send_proxy passes on.
    SocketAddress announced_destination_;
    std::uint32_t proxy_header_length_ = 0;  // send_proxy header bytes staged ahead of the client's
    bool backend_released_ = false;  // release_backend() done for backend()
    RelayDirection upstream_;    // client -> backend
    RelayDirection downstream_;  // backend -> client
    State state_ = State::Connecting;
    // While queued (and until a grant on its way is taken): this session's
    // place in its pool's queue.
    std::shared_ptr<QueueWaiter> waiter_;
    ev_tstamp last_activity_ = 0;
    ev_tstamp connect_started_ = 0;  // the current attempt's start (connect time)
    ev_tstamp half_closed_at_ = 0;  // when the first FIN was passed on
};

} // namespace sluice
