#include "sluice/tcp_session.h"

#include "sluice/config.h"
#include "sluice/duration_histogram.h"
#include "sluice/listener.h"
#include "sluice/log.h"
#include "sluice/runtime.h"
#include "sluice/worker_runtime.h"
#include "sluice/socket.h"
#include "sluice/worker_context.h"

#include <algorithm>

#include <sys/socket.h>

#include <algorithm>
#include <cstring>

namespace sluice {

namespace {

ev_tstamp seconds(Duration d) { return static_cast<ev_tstamp>(d.count()) / 1000.0; }

// How much of the upstream buffer the PROXY header phase may fill: the rest
// is room for the header send_proxy puts in front of those bytes.
constexpr std::size_t kProxyReadLimit = BufferPool::kBufferSize - kProxyMaxEncodedLength;

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
    set_pool(pool.runtime);
}

std::string_view TcpSession::state() const noexcept
{
    if (state_ == State::ReadingProxyHeader)
        return "proxy-header";
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
    if (const std::optional<TcpKeepalive>& keepalive = listener().tcp_keepalive) [[unlikely]]
        set_keepalive(client_.get(), *keepalive);
    if (listener().accept_proxy) {
        start_reading_proxy_header();
        return;
    }
    connect_next();
}

// ---- PROXY protocol header from the client (accept_proxy) ------------------

bool TcpSession::hold_upstream_buffer()
{
    if (!upstream_.buffer)
        upstream_.buffer = worker_.buffers().acquire();
    if (upstream_.buffer) [[likely]]
        return true;
    close(EndCause::ResourceLimit);
    return false;
}

void TcpSession::start_reading_proxy_header()
{
    state_ = State::ReadingProxyHeader;
    if (!listener().accept_proxy_from.contains(client_address_)) {
        refuse_proxy_header("the peer is not in accept_proxy_from");
        return;
    }
    timer_.start(seconds(listener().proxy_timeout));
    // Read at once rather than wait for epoll: a client that speaks first
    // has usually sent its header by the time it is accepted, and then the
    // header costs no epoll_ctl and no extra loop pass (bench/README.md).
    on_proxy_header_readable();
}

// Reads into the upstream buffer, so whatever follows the header (the
// client's first bytes, often in the same packet) is already where the relay
// writes from: it goes to the backend first, with no copy and no peek. The
// header itself is skipped by starting the pending bytes after it.
void TcpSession::on_proxy_header_readable()
{
    if (!hold_upstream_buffer())
        return;
    RelayDirection& dir = upstream_;
    // Until the header is complete, `pending` counts the bytes read so far.
    IoResult r = read_some(client_.get(), dir.buffer.get() + dir.pending, kProxyReadLimit - dir.pending);
    if (!r.ok()) {
        if (r.would_block() || r.error == SysError::Interrupted) {
            client_io_.set_events(EV_READ);  // level-triggered: reported again
            return;
        }
        refuse_proxy_header("the client reset the connection before its PROXY header was complete");
        return;
    }
    if (r.bytes == 0) {
        refuse_proxy_header("the client closed before its PROXY header was complete");
        return;
    }
    dir.pending += static_cast<std::uint32_t>(r.bytes);
    const ProxyParse parse = parse_proxy_header({dir.buffer.get(), dir.pending});
    if (parse.status == ProxyParse::Status::NeedMore) {
        client_io_.set_events(EV_READ);  // the timer bounds the wait
        return;
    }
    if (parse.status == ProxyParse::Status::Error) {
        refuse_proxy_header(parse.error);
        return;
    }
    const ProxyHeader& header = parse.header;
    dir.pending -= static_cast<std::uint32_t>(header.length);
    dir.buffer_offset = dir.pending > 0 ? static_cast<std::uint32_t>(header.length) : 0;
    dir.pending_in_pipe = false;
    return_transit(dir, transit());  // nothing after the header: no buffer held while connecting
    if (!header.local) {
        client_address_ = header.source;  // ip_hash, the access log, show sessions and send_proxy see it
        announced_destination_ = header.destination;
    }
    if (!admit_announced_client())
        return;
    timer_.stop();
    client_io_.set_events(0);  // read again once a backend is connected
    state_ = State::Connecting;
    connect_next();
}

// The one point where the address a PROXY header announced becomes the
// session's client, before any backend is picked: from here on ip_hash, the
// access log, show sessions and send_proxy all see it.
// The client's address is final once the header is read: the one it
// announced, or the real peer for LOCAL/UNKNOWN. The listener's source checks
// (allow/deny, max_connections_per_source) run here for accept_proxy
// listeners, not at accept, where the peer is the proxy. Returns false when
// the client was refused (and closed, no backend touched).
bool TcpSession::admit_announced_client() noexcept
{
    const ListenerRuntime* runtime = this->runtime().runtime->find_listener(listener());
    static const std::shared_ptr<ListenerCounters> kNoCounters;
    SourceAdmission admission =
        admit_source(listener(), listener_stats_, runtime ? runtime->counters : kNoCounters, client_address_);
    if (!admission) [[unlikely]] {
        close(EndCause::SourceRefused);
        return false;
    }
    hold_source(std::move(admission.lease));
    return true;
}

void TcpSession::refuse_proxy_header(std::string_view reason)
{
    listener_stats_.proxy_refused.fetch_add(1, std::memory_order_relaxed);
    // One line per interval for the listener across workers: a scanner or a
    // misconfigured proxy can send thousands of bad headers a second.
    const ListenerRuntime* runtime = this->runtime().runtime->find_listener(listener());
    if (runtime && runtime->counters) {
        if (std::uint64_t refused = runtime->counters->proxy_refused_log.note(monotonic_ms()))
            log::warning("listener {}: refused {} client(s) for their PROXY protocol header; the last, from {}: {}",
                         listener().name, refused, client_address_.to_string(), reason);
    }
    close(EndCause::ProxyRefused);
}

// ---- PROXY protocol header to the backend (send_proxy) ---------------------

// The header goes in front of the upstream bytes, so the relay's first write
// sends it before any client byte. When the client has sent nothing yet, its
// socket is read once now (the read the relay would make next anyway): bytes
// already waiting then leave in the same write and packet as the header.
bool TcpSession::stage_proxy_header(ProxyVersion version)
{
    char header[kProxyMaxEncodedLength];
    const std::size_t length = encode_proxy_header(version, client_address_, proxy_destination(), header);
    if (!hold_upstream_buffer())
        return false;
    RelayDirection& dir = upstream_;
    char* data = dir.buffer.get();
    const bool client_bytes_staged = dir.pending > 0;
    if (!client_bytes_staged) {
        dir.buffer_offset = 0;
    } else if (dir.buffer_offset < length) {
        // Bytes after an incoming PROXY header shorter than ours: make room
        // (kProxyReadLimit keeps it inside the buffer).
        std::memmove(data + length, data + dir.buffer_offset, dir.pending);
        dir.buffer_offset = static_cast<std::uint32_t>(length);
    }
    if (client_bytes_staged)
        dir.buffer_offset -= static_cast<std::uint32_t>(length);
    std::memcpy(data + dir.buffer_offset, header, length);
    dir.pending += static_cast<std::uint32_t>(length);
    dir.pending_in_pipe = false;
    proxy_header_length_ = static_cast<std::uint32_t>(length);
    if (client_bytes_staged)
        return true;
    IoResult r = read_some(client_.get(), data + length, BufferPool::kBufferSize - length);
    if (r.ok()) {
        if (r.bytes == 0)
            dir.eof = true;
        dir.pending += static_cast<std::uint32_t>(r.bytes);
    } else if (!r.would_block() && r.error != SysError::Interrupted) [[unlikely]] {
        close(EndCause::ClientReset);
        return false;
    }
    return true;
}

// Where the client connected to: what its own PROXY header said, else the
// listener's address when it names one, else (a wildcard or port-0 listener)
// the socket's local address, one getsockname.
SocketAddress TcpSession::proxy_destination() const
{
    if (!announced_destination_.empty())
        return announced_destination_;
    const SocketAddress& listen = listener().listen;
    if (!listen.is_wildcard() && listen.port() != 0)
        return listen;
    return local_address(client_.get());
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
    set_retries(connector_.attempts_failed());  // each failure so far led to this pick
    connect_started_ = worker_.loop().now();
    const BackendConfig* backend = pool_.runtime->backend(id);
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

// Once per queued client, when it got a slot or gave up waiting: into the
// pool's queue-wait histogram, this worker's line.
void TcpSession::record_queue_wait() noexcept
{
    if (!pool_.runtime->histograms)
        return;
    const double waited = static_cast<double>(std::max<std::int64_t>(monotonic_ms() - waiter_->queued_ms, 0)) / 1000.0;
    pool_.runtime->histograms->worker(worker_.sessions().worker()).queue_wait.record(kQueueLadder, waited);
}

void TcpSession::on_slot_granted(BackendId backend)
{
    worker_.loop().assert_loop_thread();
    record_queue_wait();
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
    const double connect_time = worker_.loop().now() - connect_started_;
    set_connect_seconds(connect_time);
    const BackendId id = *backend();
    worker_.backend_counters().count_connect_time(id, worker_.table().epoch(id), connect_time);
    set_nodelay(backend_fd_.get());
    backend_io_.stop();
    backend_io_.bind<TcpSession, &TcpSession::on_backend_event>(worker_.loop(), this, backend_fd_.get());
    last_activity_ = worker_.loop().now();
    if (listener().idle_timeout.count() > 0)
        timer_.start(seconds(listener().idle_timeout));
    const ProxyVersion send_proxy = pool_.runtime->backend(*backend())->send_proxy;
    if (send_proxy != ProxyVersion::Off && !stage_proxy_header(send_proxy))
        return;
    // Bytes already staged (a PROXY header, the client's bytes that came with
    // or after one) are written now, and the client is read when epoll says
    // so; otherwise the client may have sent its first bytes while we were
    // connecting.
    const int max_reads = upstream_.pending > 0 ? 0 : RelayDirection::kMaxReadsPerEvent;
    PumpResult up = pump(upstream_, client_.get(), backend_fd_.get(), max_reads);
    settle(up, PumpResult::Ok);
}

// ---- relaying ---------------------------------------------------------------

void TcpSession::on_client_event(int revents)
{
    worker_.loop().assert_loop_thread();
    if (state_ == State::ReadingProxyHeader) [[unlikely]] {
        on_proxy_header_readable();
        return;
    }
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

PumpResult TcpSession::pump(RelayDirection& dir, int source_fd, int sink_fd, int max_reads)
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
    PumpResult result = sluice::pump(dir, source_fd, sink_fd, transit(), on_fin, max_reads);
    const std::uint64_t written = upstream ? client_bytes_in(dir.bytes) - client_bytes_in(before) : dir.bytes - before;
    if (written > 0) {
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
    if (state_ == State::ReadingProxyHeader) {
        refuse_proxy_header("no complete PROXY header within proxy_timeout");
        return;
    }
    if (state_ == State::Queued) {
        close(EndCause::QueueTimeout);
        return;
    }
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
        record_queue_wait();
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
