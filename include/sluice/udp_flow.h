// UDP load balancing: one worker's listener socket and its flows.
//
// A flow is the traffic of one client address (IP and port) on one listener.
// It owns a socket connect()ed to the backend picked for it, so
//   - a reply read from that socket belongs to the flow's client without a
//     lookup (the socket's watcher knows its flow), and
//   - an ICMP port unreachable from the backend surfaces as ECONNREFUSED on
//     that socket, which counts as a passive failure of the backend.
// Replies leave through the listener socket, so the client sees them come from
// the address it sent to.
//
// A flow ends after `idle_timeout` without traffic either way, once it has had
// `responses` replies for each datagram it carried (when set; 1 for DNS), when
// its backend refuses, or when
// the listener stops. Flows count towards max_connections (SharedState::sessions,
// shared with TCP sessions); a datagram that would start a flow beyond the cap
// is dropped and counted in ListenerStats::rejected, while existing flows keep
// working.
//
// Everything here runs on the owning worker's loop thread.
#pragma once

#include "sluice/addr.h"
#include "sluice/backend_table.h"
#include "sluice/event_loop.h"
#include "sluice/fd.h"
#include "sluice/listener.h"
#include "sluice/session.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <netinet/in.h>
#include <string_view>
#include <unordered_map>
#include <vector>

struct mmsghdr;

namespace sluice {

struct WorkerRuntime;

// Where a client's datagrams arrived, on a wildcard listener (0.0.0.0, [::]):
// its replies leave from that address (IP_PKTINFO / IPV6_PKTINFO). Left to
// routing, the kernel would pick the source itself, and a client that sent to
// another of the host's addresses would drop replies from the "wrong" one.
struct ReplySource {
    sa_family_t family = AF_UNSPEC;  // AF_UNSPEC: the kernel chooses
    unsigned interface = 0;          // used for IPv6 link-local addresses only
    union {
        in_addr v4;
        in6_addr v6;
    } ip{};
};
struct PoolRuntime;

// Key of the flow table: the client's IP and port.
struct ClientAddressHash {
    std::size_t operator()(const SocketAddress& address) const noexcept
    {
        return static_cast<std::size_t>(address.full_hash());
    }
};

// The part of a flow the table manages: its place in the idle order.
struct FlowLink {
    FlowLink* older = nullptr;
    FlowLink* newer = nullptr;
    double last_active = 0;               // loop time of the last datagram either way
    const SocketAddress* client_key = nullptr; // the table's key (map nodes do not move)
};

// Flows by client address, plus an intrusive list from least to most recently
// active. Touching a flow moves it to the newest end in O(1), so idle expiry
// only ever looks at the oldest end: one timer per listener, no per-flow
// timer, no sweep over every flow. `Flow` derives from FlowLink.
template <typename Flow>
class FlowTable {
public:
    FlowTable() = default;
    FlowTable(const FlowTable&) = delete;
    FlowTable& operator=(const FlowTable&) = delete;

    Flow* find(const SocketAddress& client) const
    {
        auto it = flows_.find(client);
        return it == flows_.end() ? nullptr : it->second;
    }

    // Adds `flow` for `client` (not already present) as the newest one. The
    // table does not own it; the flow's `client` points at the table's key.
    Flow* insert(const SocketAddress& client, Flow* flow, double now)
    {
        auto [it, inserted] = flows_.emplace(client, flow);
        flow->client_key = &it->first;
        flow->last_active = now;
        link_newest(flow);
        return flow;
    }

    // Traffic on `flow`: it becomes the newest.
    void touch(Flow* flow, double now) noexcept
    {
        flow->last_active = now;
        if (newest_ == flow)
            return;
        unlink(flow);
        link_newest(flow);
    }

    // Takes `flow` out of the table and calls `destroy(flow)` while its
    // client address (the table's key) is still valid.
    template <typename Destroy>
    void remove(Flow* flow, Destroy&& destroy)
    {
        unlink(flow);
        auto it = flows_.find(*flow->client_key);
        destroy(flow);
        flows_.erase(it);
    }

    // The least recently active flow, or null when empty.
    Flow* oldest() const noexcept { return static_cast<Flow*>(oldest_); }
    std::size_t size() const noexcept { return flows_.size(); }
    bool empty() const noexcept { return flows_.empty(); }

private:
    void link_newest(FlowLink* link) noexcept
    {
        link->older = newest_;
        link->newer = nullptr;
        if (newest_)
            newest_->newer = link;
        else
            oldest_ = link;
        newest_ = link;
    }
    void unlink(FlowLink* link) noexcept
    {
        (link->older ? link->older->newer : oldest_) = link->newer;
        (link->newer ? link->newer->older : newest_) = link->older;
        link->older = link->newer = nullptr;
    }

    std::unordered_map<SocketAddress, Flow*, ClientAddressHash> flows_;
    FlowLink* oldest_ = nullptr;
    FlowLink* newest_ = nullptr;
};

class UdpListener;

// One client's flow: the connected socket towards its backend. A session
// (session.h): owned by the worker's SessionRegistry, found by client address
// through its listener's FlowTable.
class UdpFlow final : public FlowLink, public Session {
public:
    UdpFlow(UdpListener& listener, std::shared_ptr<WorkerRuntime> generation, const PoolRuntime& pool,
            BackendId backend, UniqueFd socket);
    ~UdpFlow() override;  // releases the backend

    // --- Session ---
    void end(EndCause cause) override;
    const SocketAddress& client() const noexcept override { return *client_key; }
    SessionCounts counts() const noexcept override { return {bytes_in_, bytes_out_, requests_, replies_}; }
    std::string_view state() const noexcept override { return "active"; }

    int fd() const noexcept { return socket_.get(); }
    BackendId backend_id() const noexcept { return backend_; }
    const PoolRuntime& pool() const noexcept { return *pool_; }
    std::uint32_t replies() const noexcept { return replies_; }
    void count_reply(std::size_t length) noexcept
    {
        ++replies_;
        bytes_out_ += length;
    }
    // The address the client last sent to (wildcard listeners only).
    ReplySource source;
    void count_request(std::size_t length) noexcept
    {
        ++requests_;
        bytes_in_ += length;
    }
    // A datagram of `length` bytes went through the flow, either way. The
    // first one larger than an Ethernet frame's payload raises the socket's
    // receive buffer (see kFlowReceiveBuffer); most flows never pay for it.
    void note_datagram_size(std::size_t length) noexcept
    {
        if (length > kLargeDatagram && !large_buffer_) [[unlikely]]
            raise_receive_buffer();
    }
    // `responses` replies have come for every datagram sent (nginx's
    // proxy_responses): a client with several queries in flight from one port
    // keeps its flow until the last answer. 0 = never.
    bool answered(int responses) const noexcept
    {
        return responses > 0
            && std::uint64_t{replies_} >= static_cast<std::uint64_t>(responses) * std::uint64_t{requests_};
    }

private:
    // 1472 = 1500-byte MTU - IPv4 and UDP headers. The default receive buffer
    // (~208 KiB) queues about a hundred replies up to that size.
    static constexpr std::size_t kLargeDatagram = 1472;

    void on_readable(int revents);
    void raise_receive_buffer() noexcept;

    UdpListener& listener_;
    const PoolRuntime* pool_;  // of the session's generation
    UniqueFd socket_;
    IoWatcher io_;
    BackendId backend_;
    std::uint32_t requests_ = 0;  // datagrams sent to the backend
    std::uint32_t replies_ = 0;   // datagrams received from it
    std::uint64_t bytes_in_ = 0;  // client -> backend
    std::uint64_t bytes_out_ = 0; // backend -> client
    bool large_buffer_ = false;   // raise_receive_buffer() done
};

// One worker's socket of a `protocol = "udp"` listener, and its flows.
class UdpListener final : public Listener {
public:
    // Datagrams read per recvmmsg(2); a full batch is followed by another, up
    // to kMaxBatchesPerWake, before other watchers get their turn.
    static constexpr int kBatch = 32;
    static constexpr int kMaxBatchesPerWake = 4;
    // Room for the largest datagram (65507 bytes over IPv4, 65527 over IPv6).
    static constexpr std::size_t kSlotSize = 65536;
    // Replies queued for one sendmmsg(2), flushed once per loop iteration.
    static constexpr int kReplyBatch = 64;
    static constexpr std::size_t kReplyArena = 1u << 20;
    // Listener socket buffers (capped by net.core.{r,w}mem_max): bursts of
    // large datagrams must not overflow the kernel's default ~208 KiB.
    static constexpr int kSocketBuffer = 4 << 20;
    // Receive buffer of a flow's backend socket once the flow has carried a
    // datagram too large for an Ethernet frame: the default (~208 KiB) holds
    // only three 64 KiB replies, and a burst of them would overflow it. Flows
    // of small datagrams (DNS, syslog, games) keep the default and save the
    // setsockopt: one syscall in seven for a one-query flow.
    static constexpr int kFlowReceiveBuffer = 1 << 20;

    UdpListener(WorkerContext& worker, UniqueFd fd, const ListenerConfig& config);
    ~UdpListener() override;

    void start() override;
    // Ends every flow (their replies could only leave through this socket)
    // and closes the socket.
    void stop() override;

    std::size_t flow_count() const noexcept { return flows_.size(); }

    // --- called by UdpFlow ---
    // A reply of `flow` waits in the reply arena; sent at the end of this loop
    // iteration. Returns where the next reply may be read to, flushing first
    // when the arena or the batch is full.
    std::byte* reply_space();
    void queue_reply(UdpFlow& flow, std::size_t length);
    // The one end of a flow: out of the table, then SessionRegistry::finish.
    void end_flow(UdpFlow& flow, EndCause cause);
    void record_backend_failure(UdpFlow& flow, SysError error);
    WorkerContext& worker() noexcept { return worker_; }

private:
    void on_readable(int revents);
    void forward(const SocketAddress& client, const ReplySource& source, const std::byte* data,
                 std::size_t length);
    UdpFlow* open_flow(const SocketAddress& client);
    void on_idle_timer();
    void arm_idle_timer();
    void flush_replies();
    static void on_prepare(struct ev_loop* loop, ev_prepare* watcher, int revents);

    WorkerContext& worker_;
    UniqueFd fd_;
    IoWatcher io_;
    TimerWatcher idle_timer_;
    ev_prepare prepare_;  // flushes queued replies before the loop blocks
    FlowTable<UdpFlow> flows_;
    // Bound to 0.0.0.0 or [::]: datagrams carry their destination address
    // (open_udp_socket asked for it) and replies are sent from it.
    bool wildcard_ = false;

    // Allocated once per listener per worker and never initialised, so only
    // the pages that large datagrams touch become resident.
    std::unique_ptr<std::byte[]> receive_slots_;  // kBatch * kSlotSize
    std::unique_ptr<std::byte[]> reply_arena_;    // kReplyArena
    struct Incoming;
    std::unique_ptr<Incoming[]> incoming_;        // kBatch: sender address, iovec
    std::unique_ptr<mmsghdr[]> receive_headers_;  // kBatch
    struct Reply;
    std::unique_ptr<Reply[]> replies_;            // kReplyBatch: client address, iovec
    std::unique_ptr<mmsghdr[]> reply_headers_;    // kReplyBatch
    int reply_count_ = 0;
    std::size_t reply_used_ = 0;
};

} // namespace sluice
