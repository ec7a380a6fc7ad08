#include "sluice/tcp_session.h"

#include "sluice/config.h"
#include "sluice/log.h"
#include "sluice/socket.h"
#include "sluice/worker_context.h"

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
    connector_.allow_queue();
    upstream_.splice_off = downstream_.splice_off = !worker.splice_enabled();
    timer_.bind<TcpSession, &TcpSession::on_timer>(worker.loop(), this);
    last_activity_ = started_at();
}

std::string_view TcpSession::state() const noexcept
{
    if (state_ == State::Queued)
        return "queued";
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
    connect_next();
}

// ---- connecting -----------------------------------------------------------

void TcpSession::connect_next()
{
    std::optional<BackendId> id = connector_.next(client_address_, monotonic_ms());
    if (!id) {
        if (connector_.should_queue()) [[unlikely]]
            wait_in_queue();
        else
            close(EndCause::NoBackend);
        return;
    }
    connect_to(*id);
}

void TcpSession::connect_to(BackendId id)
{
    state_ = State::Connecting;
    worker_.sessions().set_backend(*this, id);
    const BackendConfig* backend = pool_.runtime->backend(id);
    Result<UniqueFd> sock = start_connect(backend->address);
    if (!sock) [[unlikely]] {
        // Refused or unreachable at once: same as a failed connect, so it is
        // retried elsewhere (out of descriptors: see on_connect_failed).
        on_connect_failed(sock.error());
        return;
    }
    backend_fd_ = std::move(sock.value());
    backend_io_.bind<TcpSession, &TcpSession::on_connect_event>(worker_.loop(), this, backend_fd_.get());
    // EV_READ too, although nothing is read yet: a failed connect raises
    // EPOLLERR|EPOLLHUP, which libev reports only as events the watcher asked
    // for, so asking for both is what lets on_connect_event tell the cases
    // apart without a getsockopt on every success.
    backend_io_.set_events(EV_READ | EV_WRITE);
    timer_.start(seconds(pool_.runtime->config->connect_timeout));
}

// ---- waiting for a slot -----------------------------------------------------

void TcpSession::wait_in_queue()
{
    PoolQueue& queue = *pool_.runtime->queue;
    const PoolConfig& config = *pool_.runtime->config;
    const std::int64_t now_ms = monotonic_ms();
    waiter_ = std::make_shared<QueueWaiter>(worker_.loop(), static_cast<QueueClient&>(*this), now_ms);
    BackendId acquired = 0;
    auto acquire = [&] { return connector_.acquire_any(client_address_, now_ms); };
    switch (queue.admit(waiter_, static_cast<std::size_t>(config.max_queue), worker_.table(), acquire, &acquired)) {
    case PoolQueue::Admission::Acquired:
        waiter_.reset();
        connector_.adopt(acquired);
        connect_to(acquired);
        return;
    case PoolQueue::Admission::Refused:
        waiter_.reset();
        close(EndCause::QueueFull);
        return;
    case PoolQueue::Admission::Queued:
        // The client's bytes stay in its socket: client_io_ is not started.
        state_ = State::Queued;
        timer_.start(seconds(config.queue_timeout));
        return;
    }
}

void TcpSession::on_slot_granted(BackendId backend)
{
    worker_.loop().assert_loop_thread();
    waiter_.reset();
    timer_.stop();
    // The slot was taken for this pool's backend by another generation's
    // pick, of a backend this generation no longer has: give it back.
    if (!pool_.runtime->backend(backend)) [[unlikely]] {
        release_backend_slot(worker_.table(), *pool_.runtime, backend, monotonic_ms());
        close(EndCause::NoBackend);
        return;
    }
    connector_.adopt(backend);
    connect_to(backend);
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
    if (state_ == State::Queued) {
        close(EndCause::QueueTimeout);
        return;
    }
    if (state_ == State::Connecting) {
        on_connect_failed(SysError::TimedOut);
        return;
    }
    // Idle timeout, checked lazily: activity only stamps last_activity_, and
    // the timer re-arms for the remainder (libev's ev.pod, "be smart about
    // timeouts"), so the per-byte path never touches the timer heap.
    ev_tstamp idle = seconds(listener().idle_timeout);
    ev_tstamp deadline = last_activity_ + idle;
    ev_tstamp now = worker_.loop().now();
    if (deadline <= now) {
        close(EndCause::IdleTimeout);
        return;
    }
    timer_.start(deadline - now);
}

void TcpSession::release_backend() noexcept
{
    if (std::optional<BackendId> id = backend(); id && !backend_released_) {
        release_backend_slot(worker_.table(), *pool_.runtime, *id, monotonic_ms());
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
    if (waiter_) [[unlikely]] {
        // Still queued, or a grant is on its way, which then gives the slot back.
        pool_.runtime->queue->leave(*waiter_, cause == EndCause::QueueTimeout);
        waiter_->client = nullptr;
        waiter_.reset();
    }
    // A pipe that still holds bytes is not fit for reuse: it closes with us.
    return_transit(upstream_, transit());
    return_transit(downstream_, transit());
    release_backend();
    worker_.sessions().finish(*this, cause);  // destroys this session
}

} // namespace sluice
