#include "sluice/tcp_session.h"

#include "sluice/config.h"
#include "sluice/log.h"
#include "sluice/socket.h"
#include "sluice/worker_context.h"

#include <algorithm>

#include <sys/socket.h>

namespace sluice {

namespace {

ev_tstamp seconds(Duration d) { return static_cast<ev_tstamp>(d.count()) / 1000.0; }

} // namespace

TcpSession::TcpSession(WorkerContext& worker, std::shared_ptr<WorkerRuntime> generation, PoolPicker& pool,
                       const ListenerConfig& listener, ListenerStats& listener_stats, UniqueFd client,
                       const SocketAddress& client_address)
    : Session(listener, std::move(generation), worker.loop().now())
    , worker_(worker)
    , pool_(pool)
    , connector_(*pool.runtime, pool.balancer, worker.table(), worker.backend_counters())
    , listener_stats_(listener_stats)
    , client_(std::move(client))
    , client_address_(client_address)
{
    client_io_.bind<TcpSession, &TcpSession::on_client_event>(worker.loop(), this, client_.get());
    upstream_.splice_off = downstream_.splice_off = !worker.splice_enabled();
    timer_.bind<TcpSession, &TcpSession::on_timer>(worker.loop(), this);
    last_activity_ = started_at();
}

std::string_view TcpSession::state() const noexcept
{
    if (state_ == State::Connecting)
        return "connecting";
    if (upstream_.eof && downstream_.eof)
        return "closing";
    if (upstream_.eof)
        return "client-half-closed";
    if (downstream_.eof)
        return "backend-half-closed";
    return "established";
}

TcpSession::~TcpSession() = default;

void TcpSession::start()
{
    worker_.loop().assert_loop_thread();
    // The client socket has TCP_NODELAY from its listener (open_listener_socket).
    if (const std::optional<TcpKeepalive>& keepalive = listener().tcp_keepalive) [[unlikely]]
        set_keepalive(client_.get(), *keepalive);
    connect_next();
}

// ---- connecting -----------------------------------------------------------

void TcpSession::connect_next()
{
    std::optional<BackendId> id = connector_.next(client_address_, monotonic_ms());
    if (!id) {
        close(EndCause::NoBackend);
        return;
    }
    worker_.sessions().set_backend(*this, *id);
    const BackendConfig* backend = pool_.runtime->backend(*id);
    const std::optional<SocketAddress>& source = pool_.runtime->config->source;
    Result<UniqueFd> sock = start_connect(backend->address, source ? &*source : nullptr);
    if (!sock) [[unlikely]] {
        // Refused or unreachable at once: same as a failed connect, so it is
        // retried elsewhere (out of descriptors: see on_connect_failed).
        on_connect_failed(sock.error());
        return;
    }
    backend_fd_ = std::move(sock.value());
    if (const std::optional<TcpKeepalive>& keepalive = pool_.runtime->config->tcp_keepalive) [[unlikely]]
        set_keepalive(backend_fd_.get(), *keepalive);
    backend_io_.bind<TcpSession, &TcpSession::on_connect_event>(worker_.loop(), this, backend_fd_.get());
    // EV_READ too, although nothing is read yet: a failed connect raises
    // EPOLLERR|EPOLLHUP, which libev reports only as events the watcher asked
    // for, so asking for both is what lets on_connect_event tell the cases
    // apart without a getsockopt on every success.
    backend_io_.set_events(EV_READ | EV_WRITE);
    timer_.start(seconds(pool_.runtime->config->connect_timeout));
}

void TcpSession::on_connect_event(int revents)
{
    worker_.loop().assert_loop_thread();
    // A failed connect reports EPOLLERR|EPOLLHUP, which libev passes on as
    // EV_READ and EV_WRITE. EV_WRITE alone is a connect that succeeded; EV_READ
    // means failure or a backend that spoke first, and only then do we pay for
    // the getsockopt(SO_ERROR) that tells which.
    if (revents & EV_READ) {
        SysError error = connect_result(backend_fd_.get());
        if (error != SysError::None) {
            on_connect_failed(error);
            return;
        }
    }
    on_established();
}

void TcpSession::on_connect_failed(SysError error)
{
    backend_io_.stop();
    backend_fd_.reset();
    timer_.stop();
    if (is_local_resource_error(error)) [[unlikely]] {
        // Our shortage, not the backend's: trying others would fail alike and
        // mark every healthy backend down.
        connector_.local_shortage(*backend(), error, monotonic_ms());
        worker_.sessions().clear_backend(*this);
        close(EndCause::ResourceLimit);
        return;
    }
    connector_.failed(*backend(), error, monotonic_ms());
    worker_.sessions().clear_backend(*this);
    connect_next();
}

void TcpSession::on_established()
{
    state_ = State::Established;
    timer_.stop();
    set_nodelay(backend_fd_.get());
    backend_io_.stop();
    backend_io_.bind<TcpSession, &TcpSession::on_backend_event>(worker_.loop(), this, backend_fd_.get());
    last_activity_ = worker_.loop().now();
    if (listener().idle_timeout.count() > 0)
        timer_.start(seconds(listener().idle_timeout));
    // The client may have sent its first bytes while we were connecting.
    PumpResult up = pump(upstream_, client_.get(), backend_fd_.get());
    settle(up, PumpResult::Ok);
}

// ---- relaying ---------------------------------------------------------------

void TcpSession::on_client_event(int revents)
{
    worker_.loop().assert_loop_thread();
    PumpResult up = PumpResult::Ok;
    PumpResult down = PumpResult::Ok;
    if (revents & EV_READ)
        up = pump(upstream_, client_.get(), backend_fd_.get());
    if ((revents & EV_WRITE) && up == PumpResult::Ok)
        down = pump(downstream_, backend_fd_.get(), client_.get());
    settle(up, down);
}

void TcpSession::on_backend_event(int revents)
{
    worker_.loop().assert_loop_thread();
    PumpResult up = PumpResult::Ok;
    PumpResult down = PumpResult::Ok;
    if (revents & EV_READ)
        down = pump(downstream_, backend_fd_.get(), client_.get());
    if ((revents & EV_WRITE) && down == PumpResult::Ok)
        up = pump(upstream_, client_.get(), backend_fd_.get());
    settle(up, down);
}

PumpResult TcpSession::pump(RelayDirection& dir, int source_fd, int sink_fd)
{
    const bool upstream = &dir == &upstream_;
    RelayDirection& other = upstream ? downstream_ : upstream_;
    // When the other direction has ended, this FIN ends the session. Stop
    // counting it against the backend first: once the FIN is out, the client
    // may see the end and connect again at once (on another worker, even)
    // before this thread reaches close(), and least_conn must not find the old
    // session still active then. The FIN itself is then sent by close(), which
    // settle() calls right after (the sink has read its EOF, so the close
    // cannot turn into a reset): one syscall fewer per connection.
    const FinAction on_fin = other.shut ? FinAction::LeaveToClose : FinAction::Shutdown;
    const bool was_shut = dir.shut;
    const std::uint64_t before = dir.bytes;
    PumpResult result = sluice::pump(dir, source_fd, sink_fd, transit(), on_fin);
    if (const std::uint64_t written = dir.bytes - before; written > 0) {
        last_activity_ = worker_.loop().now();
        const BackendId id = *backend();
        if (upstream) {
            worker_.backend_counters().count_bytes(id, worker_.table().epoch(id), written, 0);
            listener_stats_.bytes_in.fetch_add(written, std::memory_order_relaxed);
        } else {
            worker_.backend_counters().count_bytes(id, worker_.table().epoch(id), 0, written);
            listener_stats_.bytes_out.fetch_add(written, std::memory_order_relaxed);
        }
    }
    if (dir.shut && other.shut)
        release_backend();
    else if (dir.shut && !was_shut) [[unlikely]]
        on_half_closed();
    return result;
}

TransitPools TcpSession::transit() noexcept { return TransitPools{worker_.pipes(), worker_.buffers()}; }

bool TcpSession::settle(PumpResult up, PumpResult down)
{
    if (up == PumpResult::SourceFailed || down == PumpResult::SinkFailed) [[unlikely]] {
        close(EndCause::ClientReset);
        return false;
    }
    if (up == PumpResult::SinkFailed || down == PumpResult::SourceFailed) [[unlikely]] {
        close(EndCause::BackendReset);
        return false;
    }
    if (up == PumpResult::NoResources || down == PumpResult::NoResources) [[unlikely]] {
        close(EndCause::ResourceLimit);
        return false;
    }
    if (upstream_.done() && downstream_.done()) {
        close(EndCause::Done);
        return false;
    }
    update_watchers();
    return true;
}

void TcpSession::update_watchers()
{
    client_io_.set_events((upstream_.wants_read() ? EV_READ : 0) | (downstream_.wants_write() ? EV_WRITE : 0));
    backend_io_.set_events((downstream_.wants_read() ? EV_READ : 0) | (upstream_.wants_write() ? EV_WRITE : 0));
}

void TcpSession::on_timer()
{
    worker_.loop().assert_loop_thread();
    if (state_ == State::Connecting) {
        on_connect_failed(SysError::TimedOut);
        return;
    }
    // Idle and half-close timeouts, checked lazily: activity only stamps
    // last_activity_, and the timer re-arms for the remainder (libev's ev.pod,
    // "be smart about timeouts"), so the per-byte path never touches the
    // timer heap.
    ev_tstamp now = worker_.loop().now();
    if (std::optional<ev_tstamp> fin = fin_deadline(); fin && *fin <= now) {
        close(EndCause::FinTimeout);
        return;
    }
    if (listener().idle_timeout.count() > 0 && last_activity_ + seconds(listener().idle_timeout) <= now) {
        close(EndCause::IdleTimeout);
        return;
    }
    arm_timeouts();
}

// ---- half-close timeouts (client_fin_timeout, server_fin_timeout) -----------

Duration TcpSession::fin_timeout() const noexcept
{
    // Our FIN went to the backend and its own has not come: the backend is
    // the side expected to finish (HAProxy's timeout server-fin), and the
    // reverse for the client (timeout client-fin).
    if (upstream_.shut && !downstream_.eof)
        return pool_.runtime->config->server_fin_timeout;
    if (downstream_.shut && !upstream_.eof)
        return listener().client_fin_timeout;
    return Duration{0};
}

std::optional<ev_tstamp> TcpSession::fin_deadline() const noexcept
{
    const Duration timeout = fin_timeout();
    if (timeout.count() == 0)
        return std::nullopt;
    // Like HAProxy's, an inactivity timeout: bytes still arriving from the
    // side that has not finished (the only direction left) put it off.
    return std::max(half_closed_at_, last_activity_) + seconds(timeout);
}

void TcpSession::on_half_closed()
{
    half_closed_at_ = worker_.loop().now();
    if (fin_timeout().count() > 0)
        arm_timeouts();
}

void TcpSession::arm_timeouts()
{
    std::optional<ev_tstamp> deadline = fin_deadline();
    if (listener().idle_timeout.count() > 0) {
        const ev_tstamp idle = last_activity_ + seconds(listener().idle_timeout);
        deadline = deadline ? std::min(*deadline, idle) : idle;
    }
    if (deadline)
        timer_.start(std::max(*deadline - worker_.loop().now(), 0.0));
    else
        timer_.stop();
}

void TcpSession::release_backend() noexcept
{
    if (std::optional<BackendId> id = backend(); id && !backend_released_) {
        worker_.table().release(*id);
        backend_released_ = true;
    }
}

void TcpSession::close(EndCause cause)
{
    worker_.loop().assert_loop_thread();
    // A reset that came in goes out the other side, so neither peer waits on
    // a half-dead connection.
    if (cause == EndCause::BackendReset)
        set_reset_on_close(client_.get());
    else if (cause == EndCause::ClientReset && backend_fd_)
        set_reset_on_close(backend_fd_.get());

    client_io_.stop();
    backend_io_.stop();
    timer_.stop();
    // A pipe that still holds bytes is not fit for reuse: it closes with us.
    return_transit(upstream_, transit());
    return_transit(downstream_, transit());
    release_backend();
    worker_.sessions().finish(*this, cause);  // destroys this session
}

} // namespace sluice
