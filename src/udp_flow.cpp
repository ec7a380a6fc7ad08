#include "sluice/udp_flow.h"

#include "sluice/config.h"
#include "sluice/connect_attempts.h"
#include "sluice/log.h"
#include "sluice/runtime.h"
#include "sluice/socket.h"
#include "sluice/worker_context.h"

#include <cstring>
#include <mutex>
#include <set>
#include <string>
#include <sys/socket.h>

namespace sluice {

namespace {

double seconds(Duration d) { return static_cast<double>(d.count()) / 1000.0; }

// ICMP errors queued on a connected UDP socket: the backend (or the way to it)
// is not there. They count against the backend like a refused TCP connect.
bool backend_failure(SysError error) noexcept
{
    return error == SysError::ConnectionRefused || error == SysError::Unreachable;
}

} // namespace

// Room for one IP_PKTINFO or IPV6_PKTINFO control message.
constexpr std::size_t kPacketInfoSpace = CMSG_SPACE(sizeof(in6_pktinfo));

struct UdpListener::Incoming {
    sockaddr_storage sender;
    iovec data;
    alignas(cmsghdr) unsigned char control[kPacketInfoSpace];  // wildcard listeners
};

struct UdpListener::Reply {
    SocketAddress client;
    iovec data;
    alignas(cmsghdr) unsigned char control[kPacketInfoSpace];  // wildcard listeners
};

namespace {

// The destination of a datagram received on a wildcard listener.
ReplySource destination_of(msghdr& header)
{
    ReplySource source;
    for (cmsghdr* c = CMSG_FIRSTHDR(&header); c != nullptr; c = CMSG_NXTHDR(&header, c)) {
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
            in_pktinfo info;
            std::memcpy(&info, CMSG_DATA(c), sizeof(info));
            // A datagram sent to a multicast or broadcast address cannot be
            // answered from that address: the kernel chooses then.
            if (IN_MULTICAST(ntohl(info.ipi_addr.s_addr)) || info.ipi_addr.s_addr == htonl(INADDR_BROADCAST))
                continue;
            source.family = AF_INET;
            source.ip.v4 = info.ipi_addr;
        } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
            in6_pktinfo info;
            std::memcpy(&info, CMSG_DATA(c), sizeof(info));
            if (IN6_IS_ADDR_MULTICAST(&info.ipi6_addr))
                continue;
            source.family = AF_INET6;
            source.ip.v6 = info.ipi6_addr;
            source.interface = info.ipi6_ifindex;
        }
    }
    return source;
}

// Makes `info` the one control message of `header` (its buffer: `control`).
template <typename Info>
void set_control_message(msghdr& header, unsigned char* control, int level, int type, const Info& info)
{
    header.msg_control = control;
    header.msg_controllen = CMSG_SPACE(sizeof(Info));
    cmsghdr* c = CMSG_FIRSTHDR(&header);
    c->cmsg_level = level;
    c->cmsg_type = type;
    c->cmsg_len = CMSG_LEN(sizeof(Info));
    std::memcpy(CMSG_DATA(c), &info, sizeof(info));
}

// Asks for the reply in `header` to leave from `source`.
void set_reply_source(msghdr& header, unsigned char* control, const ReplySource& source)
{
    if (source.family == AF_INET) {
        in_pktinfo info{};
        info.ipi_spec_dst = source.ip.v4;  // the source address; routing picks the interface
        set_control_message(header, control, IPPROTO_IP, IP_PKTINFO, info);
    } else {
        in6_pktinfo info{};
        info.ipi6_addr = source.ip.v6;
        // A link-local address means nothing without its interface.
        if (IN6_IS_ADDR_LINKLOCAL(&source.ip.v6))
            info.ipi6_ifindex = source.interface;
        set_control_message(header, control, IPPROTO_IPV6, IPV6_PKTINFO, info);
    }
}

} // namespace

// ---- UdpFlow ------------------------------------------------------------------

UdpFlow::UdpFlow(UdpListener& listener, std::shared_ptr<WorkerRuntime> generation, const PoolRuntime& pool,
                 BackendId backend, UniqueFd socket)
    : Session(listener.config(), std::move(generation), listener.worker().loop().now()), listener_(listener),
      pool_(&pool), socket_(std::move(socket)), backend_(backend)
{
    io_.bind<UdpFlow, &UdpFlow::on_readable>(listener.worker().loop(), this, socket_.get());
    io_.set_events(EV_READ);
    set_pool(&pool);
}

// The flow holds one backend reference (BackendTable::acquire, taken by the
// ConnectAttempts); its admission is given back by the registry.
UdpFlow::~UdpFlow()
{
    io_.stop();
    release_backend_slot(listener_.worker().table(), *pool_, backend_, monotonic_ms());
}

void UdpFlow::end(EndCause cause) { listener_.end_flow(*this, cause); }

// The size is a limit, not an allocation: an idle flow costs nothing for it.
void UdpFlow::raise_receive_buffer() noexcept
{
    set_buffer_sizes(socket_.get(), UdpListener::kFlowReceiveBuffer, 0);
    large_buffer_ = true;
}

// One reply per readable event. One is the common case (a query, its answer);
// level-triggered epoll brings the flow back while more are queued, so a
// chatty backend cannot starve the other flows.
void UdpFlow::on_readable(int)
{
    listener_.worker().loop().assert_loop_thread();
    std::byte* space = listener_.reply_space();
    IoResult got = read_some(socket_.get(), space, UdpListener::kSlotSize);
    if (got.ok()) [[likely]] {
        // A 0-byte datagram is a legal reply, not an end of stream.
        note_datagram_size(static_cast<std::size_t>(got.bytes));
        listener_.queue_reply(*this, static_cast<std::size_t>(got.bytes));
        return;  // queue_reply may have ended the flow
    }
    if (got.would_block() || got.error == SysError::Interrupted)
        return;
    if (backend_failure(got.error)) {
        listener_.record_backend_failure(*this, got.error);
        listener_.end_flow(*this, EndCause::BackendRefused);
    } else {
        listener_.end_flow(*this, EndCause::BackendError);
    }
}

// ---- UdpListener --------------------------------------------------------------

UdpListener::UdpListener(WorkerContext& worker, UniqueFd fd, const ListenerConfig& config)
    : Listener(config, listener_counters(worker, config), worker.index()), worker_(worker), fd_(std::move(fd)),
      wildcard_(config.listen.is_wildcard()),
      receive_slots_(new std::byte[kBatch * kSlotSize]),
      reply_arena_(new std::byte[kReplyArena]),
      incoming_(new Incoming[kBatch]),
      receive_headers_(new mmsghdr[kBatch]),
      replies_(new Reply[kReplyBatch]),
      reply_headers_(new mmsghdr[kReplyBatch])
{
    io_.bind<UdpListener, &UdpListener::on_readable>(worker.loop(), this, fd_.get());
    idle_timer_.bind<UdpListener, &UdpListener::on_idle_timer>(worker.loop(), this);
    ev_prepare_init(&prepare_, &UdpListener::on_prepare);
    prepare_.data = this;
    set_buffer_sizes(fd_.get(), kSocketBuffer, kSocketBuffer);

    for (int i = 0; i < kBatch; ++i) {
        incoming_[i].data.iov_base = receive_slots_.get() + static_cast<std::size_t>(i) * kSlotSize;
        incoming_[i].data.iov_len = kSlotSize;
        msghdr& h = receive_headers_[i].msg_hdr;
        h = msghdr{};
        h.msg_name = &incoming_[i].sender;
        h.msg_iov = &incoming_[i].data;
        h.msg_iovlen = 1;
    }
}

UdpListener::~UdpListener() { stop(); }

void UdpListener::start()
{
    worker_.loop().assert_loop_thread();
    io_.set_events(EV_READ);
    ev_prepare_start(worker_.loop().raw(), &prepare_);
}

void UdpListener::stop()
{
    worker_.loop().assert_loop_thread();
    if (!fd_.valid())
        return;
    flush_replies();
    while (UdpFlow* flow = flows_.oldest())
        end_flow(*flow, EndCause::Shutdown);
    io_.stop();
    idle_timer_.stop();
    ev_prepare_stop(worker_.loop().raw(), &prepare_);
    fd_.reset();
}

void UdpListener::on_readable(int)
{
    worker_.loop().assert_loop_thread();
    for (int batch = 0; batch < kMaxBatchesPerWake; ++batch) {
        for (int i = 0; i < kBatch; ++i) {
            msghdr& h = receive_headers_[i].msg_hdr;
            h.msg_namelen = sizeof(sockaddr_storage);
            h.msg_flags = 0;
            if (wildcard_) {
                h.msg_control = incoming_[i].control;
                h.msg_controllen = sizeof(incoming_[i].control);
            }
        }
        int n = ::recvmmsg(fd_.get(), receive_headers_.get(), kBatch, MSG_DONTWAIT, nullptr);
        if (n < 0) {
            SysError error = classify_errno(errno);
            if (error == SysError::Interrupted)
                continue;
            if (error != SysError::WouldBlock) [[unlikely]]
                log::debug("listener {}: recvmmsg: {}", config_->name, describe(error));
            return;
        }
        for (int i = 0; i < n; ++i) {
            msghdr& h = receive_headers_[i].msg_hdr;
            if (h.msg_flags & MSG_TRUNC) [[unlikely]] {
                stats_.dropped.fetch_add(1, std::memory_order_relaxed);
                continue;
            }
            SocketAddress client = SocketAddress::from_sockaddr(static_cast<const sockaddr*>(h.msg_name),
                                                                h.msg_namelen);
            ReplySource source = wildcard_ ? destination_of(h) : ReplySource{};
            forward(client, source, static_cast<const std::byte*>(incoming_[i].data.iov_base),
                    receive_headers_[i].msg_len);
        }
        if (n < kBatch)
            return;  // the queue is drained; epoll tells us about the next one
    }
}

// One datagram from `client`: to its flow's backend, starting the flow first
// if it has none. A send the backend refused (an ICMP error queued from an
// earlier datagram) ends that flow; the datagram then gets one new flow.
void UdpListener::forward(const SocketAddress& client, const ReplySource& source, const std::byte* data,
                          std::size_t length)
{
    UdpFlow* flow = flows_.find(client);
    for (int attempt = 0; attempt < 2; ++attempt) {
        if (!flow) {
            flow = open_flow(client);
            if (!flow)
                return;  // counted by open_flow
        }
        // Before the send: the replies to a large request may come in a burst.
        flow->note_datagram_size(length);
        IoResult sent = write_some(flow->fd(), data, length);
        if (sent.ok()) [[likely]] {
            flow->count_request(length);
            if (wildcard_)
                flow->source = source;
            flows_.touch(flow, worker_.loop().now());
            worker_.backend_counters().count_bytes(flow->backend_id(), worker_.table().epoch(flow->backend_id()), length, 0);
            stats_.bytes_in.fetch_add(length, std::memory_order_relaxed);
            return;
        }
        if (backend_failure(sent.error)) {
            record_backend_failure(*flow, sent.error);
            end_flow(*flow, EndCause::BackendRefused);
            flow = nullptr;
            continue;
        }
        break;  // a full send buffer: dropped, as a congested link would
    }
    stats_.dropped.fetch_add(1, std::memory_order_relaxed);
}

UdpFlow* UdpListener::open_flow(const SocketAddress& client)
{
    SharedState& shared = worker_.shared();
    SourceAdmission source = admit_source(client);
    if (!source) [[unlikely]]
        return nullptr;
    if (!admit_session(shared)) [[unlikely]]
        return nullptr;
    const std::shared_ptr<WorkerRuntime>& generation = worker_.runtime();
    PoolPicker* pool = generation->find_pool(config_->pool);
    if (pool) [[likely]] {
        ConnectAttempts connector(*pool->runtime, pool->balancer, worker_.table(), worker_.backend_counters());
        std::int64_t now_ms = monotonic_ms();
        while (std::optional<BackendId> id = connector.next(client, now_ms)) {
            const std::optional<SocketAddress>& local = pool->runtime->config->source;
            Result<UniqueFd> sock = open_connected_udp(pool->runtime->backend(*id)->address, local ? &*local : nullptr);
            if (sock) [[likely]] {
                UdpFlow& added = worker_.sessions().add(
                    std::make_unique<UdpFlow>(*this, generation, *pool->runtime, *id, std::move(sock.value())));
                worker_.sessions().set_backend(added, *id);
                added.set_connect_seconds(0);  // a UDP connect(2) has no handshake
                added.set_retries(connector.attempts_failed());
                added.hold_source(std::move(source.lease));
                flows_.insert(client, &added, worker_.loop().now());
                stats_.accepted.fetch_add(1, std::memory_order_relaxed);
                arm_idle_timer();
                return &added;
            }
            if (is_local_resource_error(sock.error())) {
                connector.local_shortage(*id, sock.error(), now_ms);
                stats_.rejected.fetch_add(1, std::memory_order_relaxed);
                shared.sessions.fetch_sub(1, std::memory_order_relaxed);
                return nullptr;
            }
            connector.failed(*id, sock.error(), now_ms);  // unreachable: try another
        }
    }
    shared.sessions.fetch_sub(1, std::memory_order_relaxed);
    stats_.dropped.fetch_add(1, std::memory_order_relaxed);
    return nullptr;
}

std::byte* UdpListener::reply_space()
{
    if (reply_count_ == kReplyBatch || kReplyArena - reply_used_ < kSlotSize) [[unlikely]]
        flush_replies();
    return reply_arena_.get() + reply_used_;
}

void UdpListener::queue_reply(UdpFlow& flow, std::size_t length)
{
    Reply& reply = replies_[reply_count_];
    reply.client = *flow.client_key;
    reply.data.iov_base = reply_arena_.get() + reply_used_;
    reply.data.iov_len = length;
    msghdr& h = reply_headers_[reply_count_].msg_hdr;
    h = msghdr{};
    h.msg_name = reply.client.sockaddr_ptr();
    h.msg_namelen = reply.client.length();
    h.msg_iov = &reply.data;
    h.msg_iovlen = 1;
    if (flow.source.family != AF_UNSPEC)
        set_reply_source(h, reply.control, flow.source);
    ++reply_count_;
    // Keep the next reply 16-byte aligned; the arena always has a slot free.
    reply_used_ += (length + 15) & ~std::size_t{15};

    worker_.backend_counters().count_bytes(flow.backend_id(), worker_.table().epoch(flow.backend_id()), 0, length);
    stats_.bytes_out.fetch_add(length, std::memory_order_relaxed);
    flow.count_reply(length);
    if (flow.answered(config_->responses)) {
        end_flow(flow, EndCause::Responses);  // e.g. DNS: the answers came, free it at once
        return;
    }
    flows_.touch(&flow, worker_.loop().now());
}

// Sends every queued reply with as few sendmmsg(2) calls as the kernel allows.
// A reply the socket refuses (full send buffer) is dropped and counted: UDP
// makes no promise, and holding it would only add latency to the rest.
void UdpListener::flush_replies()
{
    int sent = 0;
    while (sent < reply_count_) {
        int n = ::sendmmsg(fd_.get(), reply_headers_.get() + sent, static_cast<unsigned>(reply_count_ - sent),
                           MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            sent += n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        stats_.dropped.fetch_add(1, std::memory_order_relaxed);
        ++sent;  // skip the reply that failed; try the rest
    }
    reply_count_ = 0;
    reply_used_ = 0;
}

void UdpListener::on_prepare(struct ev_loop*, ev_prepare* watcher, int)
{
    auto* self = static_cast<UdpListener*>(watcher->data);
    if (self->reply_count_ > 0)
        self->flush_replies();
}

void UdpListener::end_flow(UdpFlow& flow, EndCause cause)
{
    worker_.loop().assert_loop_thread();
    if (log::enabled(log::Level::Debug)) [[unlikely]]
        log::debug("listener {}: flow {} -> {} ended ({}, {} replies)", config_->name, flow.client().to_string(),
                   flow.pool().label(flow.backend_id()), to_string(cause), flow.replies());
    // Destroyed in finish(): socket closed, backend and admission released.
    flows_.remove(&flow, [this, cause](UdpFlow* ended) { worker_.sessions().finish(*ended, cause); });
}

void UdpListener::record_backend_failure(UdpFlow& flow, SysError error)
{
    record_passive_failure(worker_.table(), flow.pool(), flow.backend_id(), "datagram", error, monotonic_ms());
}

// Idle expiry from the oldest end of the table: every flow there that has been
// quiet for idle_timeout ends; the timer then sleeps until the oldest remaining
// flow's deadline. Activity only stamps last_active (libev's "be smart about
// timeouts"), so the per-datagram path never touches the timer heap.
void UdpListener::on_idle_timer()
{
    worker_.loop().assert_loop_thread();
    double idle = seconds(config_->idle_timeout);
    if (idle <= 0)
        return;
    double now = worker_.loop().now();
    while (UdpFlow* flow = flows_.oldest()) {
        double deadline = flow->last_active + idle;
        if (deadline > now) {
            idle_timer_.start(deadline - now);
            return;
        }
        end_flow(*flow, EndCause::IdleTimeout);
    }
}

void UdpListener::arm_idle_timer()
{
    double idle = seconds(config_->idle_timeout);
    if (idle <= 0 || idle_timer_.active())
        return;
    if (UdpFlow* flow = flows_.oldest()) {
        double wait = flow->last_active + idle - worker_.loop().now();
        idle_timer_.start(wait > 0 ? wait : 0);
    }
}

} // namespace sluice
