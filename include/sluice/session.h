// Sessions: what a worker knows of every client it serves, a TCP connection or
// a UDP flow alike.
//
// A Session is the protocol-neutral part: its listener, the generation it
// started under, its backend, when it started, how it ends. The byte moving
// stays protocol-specific (TcpSession, UdpFlow). The worker's SessionRegistry
// owns every live session and keeps two intrusive lists through them: all of
// the worker's sessions, and the sessions of each backend, so "every session
// of backend X" costs O(its sessions) and needs no allocation.
//
// A session ends exactly once, through SessionRegistry::finish(): that one
// path gives back its place under max_connections (and under
// max_connections_per_source), writes its access-log
// line and destroys it. Loop thread only, except session_count().
#pragma once

#include "sluice/addr.h"
#include "sluice/backend_table.h"
#include "sluice/config.h"
#include "sluice/source_limits.h"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

namespace sluice {

class EventLoop;
struct PoolRuntime;
struct WorkerRuntime;

// How a session ended (access log `end=`, debug lines).
enum class EndCause : std::uint8_t {
    Done,            // TCP: both sides closed normally
    ClientReset,     // TCP: the client reset or failed
    BackendReset,    // TCP: the backend reset or failed
    IdleTimeout,     // nothing moved for idle_timeout
    NoBackend,       // no usable backend, or every retry failed
    Shutdown,        // sluice stopped, or the listener was removed by a reload
    ResourceLimit,   // sluice ran out of descriptors or memory
    Responses,       // UDP: the expected replies came (`responses`)
    BackendRefused,  // UDP: the backend refused (ICMP port unreachable)
    BackendError,    // UDP: the backend socket failed otherwise
    BackendDown,     // its backend left service and the pool says on_down = "close"
    AdminShutdown,   // the admin command shutdown sessions
    PrimaryUp,       // on a backup: a primary came back and the pool says on_up = "close_backup"
    ProxyRefused,    // accept_proxy: the PROXY header was missing, malformed, slow or from an untrusted peer
    QueueTimeout,    // waited queue_timeout for a slot (every backend at max_connections)
    QueueFull,       // every backend at max_connections and max_queue clients already waiting
    FinTimeout,      // TCP: one side finished and the other did not within client/server_fin_timeout
    SourceRefused,   // accept_proxy: the announced client is refused by allow/deny or max_connections_per_source
};
std::string_view to_string(EndCause cause) noexcept;

// Bytes and datagrams a session moved so far.
struct SessionCounts {
    std::uint64_t bytes_in = 0;       // client -> backend
    std::uint64_t bytes_out = 0;      // backend -> client
    std::uint64_t datagrams_in = 0;   // UDP only
    std::uint64_t datagrams_out = 0;  // UDP only
};

class Session {
public:
    Session(const ListenerConfig& listener, std::shared_ptr<WorkerRuntime> generation, double started_at)
        : listener_(&listener), worker_runtime_(std::move(generation)), started_at_(started_at)
    {
    }
    virtual ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    // Ends the session now, both sides (sluice stops, a drain times out, its
    // backend went down). It is destroyed before this returns.
    virtual void end(EndCause cause) = 0;

    virtual const SocketAddress& client() const noexcept = 0;
    virtual SessionCounts counts() const noexcept = 0;
    // connecting, established, client-half-closed, ... (show sessions)
    virtual std::string_view state() const noexcept = 0;

    Protocol protocol() const noexcept { return listener_->protocol; }
    const ListenerConfig& listener() const noexcept { return *listener_; }
    const WorkerRuntime& runtime() const noexcept { return *worker_runtime_; }
    // The backend it is connected (or connecting) to, if any.
    std::optional<BackendId> backend() const noexcept
    {
        return has_backend_ ? std::optional<BackendId>(backend_) : std::nullopt;
    }
    double started_at() const noexcept { return started_at_; }
    // Seconds the connect to its backend took (TCP: the handshake of the
    // attempt that succeeded; UDP: 0), or a negative value when none succeeded.
    double connect_seconds() const noexcept { return connect_seconds_; }
    // Further backends tried after a failed connect (access log `retries`).
    int retries() const noexcept { return retries_; }

    // The protocol part (the session itself, or the UDP listener that opens a
    // flow) reports its connect, for the access log. Loop thread.
    void set_connect_seconds(double seconds) noexcept { connect_seconds_ = seconds; }
    void set_retries(int retries) noexcept { retries_ = retries; }
    // The pool (of the session's generation) it draws backends from, so the
    // end of the session needs no lookup by name. Unset: found by name.
    void set_pool(const PoolRuntime* pool) noexcept { pool_ = pool; }

    // The session's count under max_connections_per_source (from
    // Listener::admit_source), given back by SessionRegistry::finish, for the
    // address it was taken for.
    void hold_source(SourceLease lease) noexcept { source_lease_ = std::move(lease); }

private:
    friend class SessionRegistry;

    const ListenerConfig* listener_;
    // The generation the session started under stays alive while it runs, so
    // a reload never frees its listener config or pool under it.
    std::shared_ptr<WorkerRuntime> worker_runtime_;
    double started_at_;
    const PoolRuntime* pool_ = nullptr;
    double connect_seconds_ = -1;
    int retries_ = 0;
    BackendId backend_ = 0;
    bool has_backend_ = false;
    SourceLease source_lease_;
    // Intrusive links, maintained by the registry.
    Session* prev_ = nullptr;
    Session* next_ = nullptr;
    Session* prev_of_backend_ = nullptr;
    Session* next_of_backend_ = nullptr;
};

// Invariants: every live session of the worker is in the all-sessions list
// exactly once, and in its backend's list iff it has a backend.
class SessionRegistry {
public:
    // `admitted`: the count of sessions across all workers that admission
    // (Listener::admit_session) raised; finish() lowers it. `loop` is the
    // worker's, for durations and thread checks; `worker` its index, for the
    // pools' per-worker histograms.
    SessionRegistry(std::atomic<std::int64_t>& admitted, const EventLoop& loop, unsigned worker = 0);
    unsigned worker() const noexcept { return worker_; }
    ~SessionRegistry();  // ends what is left (Shutdown)
    SessionRegistry(const SessionRegistry&) = delete;
    SessionRegistry& operator=(const SessionRegistry&) = delete;

    // Takes ownership of an admitted session.
    template <typename S>
    S& add(std::unique_ptr<S> session)
    {
        S& added = *session;
        link(session.release());
        return added;
    }

    // The session now belongs to `backend` (connecting to it), or to none.
    void set_backend(Session& session, BackendId backend) noexcept;
    void clear_backend(Session& session) noexcept;

    // The one end of every session: gives back its admission, records its
    // duration in its pool's histogram, writes its access-log line, unlinks
    // and destroys it. The caller returns at once.
    void finish(Session& session, EndCause cause) noexcept;

    // Ends every session (each through its end()), e.g. at shutdown.
    void end_all(EndCause cause);
    // Ends every session of `backend` on this worker; returns how many.
    std::size_t end_backend_sessions(BackendId backend, EndCause cause);

    // Calls `visit(const Session&)` for each live session.
    template <typename Visit>
    void for_each(Visit&& visit) const
    {
        for (const Session* s = head_; s; s = s->next_)
            visit(*s);
    }
    // Calls `visit(const Session&)` for each live session of `backend`.
    template <typename Visit>
    void for_each_of_backend(BackendId backend, Visit&& visit) const
    {
        if (backend < by_backend_.size())
            for (const Session* s = by_backend_[backend]; s; s = s->next_of_backend_)
                visit(*s);
    }

    // Any thread: live sessions on this worker (TCP and UDP).
    std::size_t session_count() const noexcept { return count_.load(std::memory_order_relaxed); }

private:
    void link(Session* session) noexcept;
    void record_end(const Session& session, EndCause cause) const noexcept;

    std::atomic<std::int64_t>& admitted_;
    const EventLoop& loop_;
    unsigned worker_;
    Session* head_ = nullptr;
    std::vector<Session*> by_backend_;  // heads, indexed by BackendId, grown on demand
    std::atomic<std::size_t> count_{0};
};

} // namespace sluice
