#include "sluice/tcp_session.h"

#include "sluice/config.h"
#include "sluice/log.h"
#include "sluice/socket.h"
#include "sluice/worker.h"

#include <sys/socket.h>

namespace sluice {

namespace {

// Rounds of read+write per direction per event before yielding to other
// sessions; epoll is level-triggered, so leftover work comes straight back.
constexpr int kMaxRoundsPerEvent = 8;

// A read shorter than this emptied the socket's receive queue: once those
// bytes are written, wait for epoll instead of trying another read that would
// almost surely fail with EAGAIN. Request/response traffic then costs one
// read and one write per message instead of three syscalls; bulk transfers
// (large reads) keep looping. Level-triggered epoll makes it safe: bytes that
// arrive meanwhile still wake the loop. (HAProxy's raw_sock does the same on
// a short recv.) A read at least this long also means the source streams, so
// the next read splices instead of copying (Direction).
constexpr std::size_t kShortRead = 16 * 1024;

ev_tstamp seconds(Duration d) { return static_cast<ev_tstamp>(d.count()) / 1000.0; }

} // namespace

std::string_view to_string(CloseReason reason) noexcept
{
    switch (reason) {
    case CloseReason::Done: return "done";
    case CloseReason::ClientReset: return "client-reset";
    case CloseReason::BackendReset: return "backend-reset";
    case CloseReason::IdleTimeout: return "idle-timeout";
    case CloseReason::NoBackend: return "no-backend";
    case CloseReason::Shutdown: return "shutdown";
    case CloseReason::ResourceLimit: return "resource-limit";
    }
    return "done";
}

TcpSession::TcpSession(Worker& worker, std::shared_ptr<WorkerGeneration> generation, WorkerPool& pool,
                       const ListenerConfig& listener, UniqueFd client, const SocketAddress& client_address)
    : worker_(worker)
    , generation_(std::move(generation))
    , pool_(pool)
    , listener_(listener)
    , connector_(*pool.runtime, pool.balancer, worker.table())
    , client_(std::move(client))
    , client_address_(client_address)
{
    client_io_.bind<TcpSession, &TcpSession::on_client_event>(worker.loop(), this, client_.get());
    upstream_.splice_off = downstream_.splice_off = !worker.splice_enabled();
    timer_.bind<TcpSession, &TcpSession::on_timer>(worker.loop(), this);
    started_at_ = last_activity_ = worker.loop().now();
}

TcpSession::~TcpSession() = default;

void TcpSession::start()
{
    // The client socket has TCP_NODELAY from its listener (open_listener_socket).
    connect_next();
}

// ---- connecting -----------------------------------------------------------

void TcpSession::connect_next()
{
    std::optional<BackendId> id = connector_.next(client_address_, monotonic_ms());
    if (!id) {
        close(CloseReason::NoBackend);
        return;
    }
    backend_ = id;
    const BackendConfig* backend = pool_.runtime->backend(*id);
    Result<UniqueFd> sock = start_connect(backend->address);
    if (!sock) [[unlikely]] {
        // Refused or unreachable at once (or out of descriptors): same as a
        // failed connect, so it is retried elsewhere.
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

void TcpSession::on_connect_event(int revents)
{
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
    connector_.failed(*backend_, error, monotonic_ms());
    backend_.reset();
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
    if (listener_.idle_timeout.count() > 0)
        timer_.start(seconds(listener_.idle_timeout));
    // The client may have sent its first bytes while we were connecting.
    PumpResult up = pump(upstream_, client_.get(), backend_fd_.get());
    settle(up, PumpResult::Ok);
}

// ---- relaying ---------------------------------------------------------------

void TcpSession::on_client_event(int revents)
{
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
    PumpResult up = PumpResult::Ok;
    PumpResult down = PumpResult::Ok;
    if (revents & EV_READ)
        down = pump(downstream_, backend_fd_.get(), client_.get());
    if ((revents & EV_WRITE) && down == PumpResult::Ok)
        up = pump(upstream_, client_.get(), backend_fd_.get());
    settle(up, down);
}

TcpSession::PumpResult TcpSession::pump(Direction& dir, int source_fd, int sink_fd)
{
    const bool upstream = &dir == &upstream_;
    bool source_drained = false;  // this call read the source dry (short read)
    for (int round = 0; round < kMaxRoundsPerEvent; ++round) {
        if (dir.pending > 0) {
            IoResult w = dir.pending_in_pipe
                ? splice_some(dir.pipe.read_fd(), sink_fd, dir.pending)
                : write_some(sink_fd, dir.buffer.get() + dir.buffer_offset, dir.pending);
            if (!w.ok()) [[unlikely]] {
                if (w.would_block())
                    return PumpResult::Ok;  // the sink is full: stop reading the source
                if (w.error == SysError::Interrupted)
                    continue;
                return PumpResult::SinkFailed;
            }
            auto written = static_cast<std::uint32_t>(w.bytes);
            dir.pending -= written;
            dir.buffer_offset = dir.pending > 0 ? dir.buffer_offset + written : 0;
            dir.bytes += written;
            last_activity_ = worker_.loop().now();
            if (upstream)
                worker_.table().add_bytes(*backend_, written, 0);
            else
                worker_.table().add_bytes(*backend_, 0, written);
            continue;
        }
        if (dir.eof) {
            // Everything before the FIN is delivered: pass the FIN on.
            return_transit(dir);
            if (!dir.shut) {
                // When the other direction has ended, this FIN ends the
                // session. Stop counting it against the backend first: once
                // the FIN is out, the client may see the end and connect again
                // at once (on another worker, even) before this thread reaches
                // close(), and least_conn must not find the old session still
                // active then. That last FIN is sent by close() itself, which
                // settle() calls right after (the sink has read its EOF, so the
                // close cannot turn into a reset): one syscall fewer per
                // connection.
                if ((upstream ? downstream_ : upstream_).shut)
                    release_backend();
                else
                    ::shutdown(sink_fd, SHUT_WR);
                dir.shut = true;
            }
            return PumpResult::Ok;
        }
        if (source_drained) {
            return_transit(dir);  // idle until epoll says otherwise
            return PumpResult::Ok;
        }
        std::optional<bool> via_pipe = borrow_transit(dir, dir.streaming && !dir.splice_off);
        if (!via_pipe) [[unlikely]]
            return PumpResult::NoResources;
        // Read only into an empty pipe: then EAGAIN can only mean "no data",
        // never "pipe full" (splice returns EAGAIN for both, and a pipe can be
        // full of partly filled pages long before `capacity` bytes).
        IoResult r = *via_pipe ? splice_some(source_fd, dir.pipe.write_fd(), dir.pipe.capacity())
                               : read_some(source_fd, dir.buffer.get(), BufferPool::kBufferSize);
        if (r.ok()) {
            if (r.bytes == 0) {
                dir.eof = true;
            } else {
                dir.pending = static_cast<std::uint32_t>(r.bytes);
                dir.pending_in_pipe = *via_pipe;
                source_drained = dir.pending < kShortRead;
                dir.streaming = !source_drained;
            }
            continue;
        }
        if (r.would_block()) {
            return_transit(dir);  // idle: hold no pipe, no buffer
            return PumpResult::Ok;
        }
        if (r.error == SysError::Interrupted)
            continue;
        if (r.error == SysError::Invalid && *via_pipe) [[unlikely]] {
            // The kernel cannot splice from this socket: copy through a buffer.
            return_transit(dir);
            dir.splice_off = true;
            continue;
        }
        return PumpResult::SourceFailed;
    }
    return PumpResult::Ok;
}

std::optional<bool> TcpSession::borrow_transit(Direction& dir, bool via_pipe)
{
    // Called with nothing pending, so the transit not chosen is empty: give it
    // back, or a direction switching modes would hold a pipe and a buffer.
    if (via_pipe) {
        if (!dir.pipe.valid())
            dir.pipe = worker_.pipes().acquire();
        if (dir.pipe.valid()) {
            if (dir.buffer)
                worker_.buffers().release(std::move(dir.buffer));
            return true;
        }
        // No pipe (descriptor limit): this direction copies through a buffer.
        dir.splice_off = true;
    }
    if (dir.pipe.valid())
        worker_.pipes().release(std::move(dir.pipe));
    if (!dir.buffer)
        dir.buffer = worker_.buffers().acquire();
    if (!dir.buffer)
        return std::nullopt;
    return false;
}

void TcpSession::return_transit(Direction& dir)
{
    if (dir.pending != 0)
        return;
    if (dir.pipe.valid())
        worker_.pipes().release(std::move(dir.pipe));
    if (dir.buffer)
        worker_.buffers().release(std::move(dir.buffer));
}

bool TcpSession::settle(PumpResult up, PumpResult down)
{
    if (up == PumpResult::SourceFailed || down == PumpResult::SinkFailed) [[unlikely]] {
        close(CloseReason::ClientReset);
        return false;
    }
    if (up == PumpResult::SinkFailed || down == PumpResult::SourceFailed) [[unlikely]] {
        close(CloseReason::BackendReset);
        return false;
    }
    if (up == PumpResult::NoResources || down == PumpResult::NoResources) [[unlikely]] {
        close(CloseReason::ResourceLimit);
        return false;
    }
    if (upstream_.done() && downstream_.done()) {
        close(CloseReason::Done);
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
    if (state_ == State::Connecting) {
        on_connect_failed(SysError::TimedOut);
        return;
    }
    // Idle timeout, checked lazily: activity only stamps last_activity_, and
    // the timer re-arms for the remainder (libev's ev.pod, "be smart about
    // timeouts"), so the per-byte path never touches the timer heap.
    ev_tstamp idle = seconds(listener_.idle_timeout);
    ev_tstamp deadline = last_activity_ + idle;
    ev_tstamp now = worker_.loop().now();
    if (deadline <= now) {
        close(CloseReason::IdleTimeout);
        return;
    }
    timer_.start(deadline - now);
}

void TcpSession::abort(CloseReason reason) { close(reason); }

void TcpSession::release_backend() noexcept
{
    if (backend_ && !backend_released_) {
        worker_.table().release(*backend_);
        backend_released_ = true;
    }
}

void TcpSession::close(CloseReason reason)
{
    // A reset that came in goes out the other side, so neither peer waits on
    // a half-dead connection.
    if (reason == CloseReason::BackendReset)
        set_reset_on_close(client_.get());
    else if (reason == CloseReason::ClientReset && backend_fd_)
        set_reset_on_close(backend_fd_.get());

    client_io_.stop();
    backend_io_.stop();
    timer_.stop();
    // A pipe that still holds bytes is not fit for reuse: it closes with us.
    return_transit(upstream_);
    return_transit(downstream_);
    release_backend();
    worker_.shared().sessions.fetch_sub(1, std::memory_order_relaxed);
    worker_.record_session_end(*this, reason);
    worker_.remove_session(this);
    delete this;
}

} // namespace sluice
