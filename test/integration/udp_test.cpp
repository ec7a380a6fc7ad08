// UDP load balancing through the real sluice binary, with sluice-echo --udp
// backends: flows and their stickiness, the algorithms, byte-exact payloads,
// idle expiry, responses, many flows, the flow cap, dead backends.
//
// UDP may drop a datagram even on loopback, so a client asks the way a DNS
// resolver does: it resends after a short wait. Whether a flow exists is read
// from what sluice holds: one socket per flow (/proc/PID/fd), and with -d one
// debug line per flow that ends.
#include "harness.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <arpa/inet.h>
#include <atomic>
#include <csignal>
#include <filesystem>
#include <fmt/format.h>
#include <map>
#include <netinet/in.h>
#include <optional>
#include <poll.h>
#include <set>
#include <sstream>
#include <sys/resource.h>
#include <fstream>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <thread>
#include <unistd.h>

using namespace sluice::test;

namespace {

// A config with one udp listener "front" on 127.0.0.1:0 in front of pool "p".
std::string udp_config(const std::vector<std::string>& backends, const std::string& listener_extra = "",
                       const std::string& pool_extra = "", const std::string& global_extra = "workers = 2",
                       const std::string& listen = "127.0.0.1:0")
{
    std::string list;
    for (const auto& b : backends)
        list += fmt::format("  {{ address = \"{}\" }},\n", b);
    return fmt::format("[global]\n{}\n\n"
                       "[[listeners]]\nname = \"front\"\nlisten = \"{}\"\nprotocol = \"udp\"\n"
                       "pool = \"p\"\n{}\n\n"
                       "[pools.p]\n{}\nbackends = [\n{}]\n",
                       global_extra, listen, listener_extra, pool_extra, list);
}

// A client socket connected to sluice's listener, from `source_ip` and a port
// of its own: one client address, so one flow.
class UdpClient {
public:
    explicit UdpClient(std::uint16_t port, const std::string& ip = "127.0.0.1",
                       const std::string& source_ip = "")
    {
        bool v6 = ip.find(':') != std::string::npos;
        fd_ = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        REQUIRE(fd_ >= 0);
        int size = 1 << 20;
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
        if (v6) {
            sockaddr_in6 to{};
            to.sin6_family = AF_INET6;
            to.sin6_port = htons(port);
            REQUIRE(::inet_pton(AF_INET6, ip.c_str(), &to.sin6_addr) == 1);
            REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&to), sizeof(to)) == 0);
            return;
        }
        if (!source_ip.empty()) {
            sockaddr_in from{};
            from.sin_family = AF_INET;
            REQUIRE(::inet_pton(AF_INET, source_ip.c_str(), &from.sin_addr) == 1);
            REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&from), sizeof(from)) == 0);
        }
        sockaddr_in to{};
        to.sin_family = AF_INET;
        to.sin_port = htons(port);
        REQUIRE(::inet_pton(AF_INET, ip.c_str(), &to.sin_addr) == 1);
        REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&to), sizeof(to)) == 0);
    }
    ~UdpClient() { ::close(fd_); }
    UdpClient(const UdpClient&) = delete;
    UdpClient& operator=(const UdpClient&) = delete;

    int fd() const noexcept { return fd_; }

    void send(const std::string& datagram)
    {
        REQUIRE(::send(fd_, datagram.data(), datagram.size(), 0) == static_cast<ssize_t>(datagram.size()));
    }

    // The next datagram within `timeout`, or nullopt.
    std::optional<std::string> receive(std::chrono::milliseconds timeout)
    {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1)
            return std::nullopt;
        std::string buffer(65536, '\0');
        ssize_t n = ::recv(fd_, buffer.data(), buffer.size(), MSG_DONTWAIT);
        if (n < 0)
            return std::nullopt;
        buffer.resize(static_cast<std::size_t>(n));
        return buffer;
    }

    // Sends `query` and waits for a reply ending with it, resending up to
    // `tries` times (a resolver's retransmit). Stale replies are skipped.
    std::optional<std::string> ask(const std::string& query, int tries = 5,
                                   std::chrono::milliseconds wait = 500ms)
    {
        for (int t = 0; t < tries; ++t) {
            send(query);
            auto until = Clock::now() + wait;
            while (Clock::now() < until) {
                auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
                auto got = receive(std::max(left, 1ms));
                if (got && got->size() >= query.size()
                    && got->compare(got->size() - query.size(), query.size(), query) == 0)
                    return got;
            }
        }
        return std::nullopt;
    }

private:
    int fd_ = -1;
};

// The backend a whoami reply names ("a\n..." -> "a").
std::string who(const std::optional<std::string>& reply)
{
    if (!reply)
        return "(no reply)";
    return reply->substr(0, reply->find('\n'));
}

// `count` new clients (a flow each) ask once; how many each backend answered.
std::map<std::string, int> new_flows_by_backend(std::uint16_t port, int count, const std::string& tag)
{
    std::map<std::string, int> answered;
    for (int i = 0; i < count; ++i) {
        UdpClient client(port);
        ++answered[who(client.ask(fmt::format("{} {}", tag, i)))];
    }
    return answered;
}

std::size_t open_fds(pid_t pid)
{
    std::size_t n = 0;
    std::error_code ec;
    for (auto it = std::filesystem::directory_iterator(fmt::format("/proc/{}/fd", pid), ec);
         !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
        ++n;
    return n;
}

void raise_fd_limit()
{
    rlimit limit{};
    ::getrlimit(RLIMIT_NOFILE, &limit);
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
}

// SO_RCVBUF of each UDP socket `pid` holds that is connected to
// 127.0.0.1:`backend_port` (its flows towards that backend), sorted. The
// sockets are borrowed with pidfd_getfd(2), which root may do.
std::vector<int> flow_receive_buffers(pid_t pid, std::uint16_t backend_port)
{
    std::vector<int> sizes;
    int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    REQUIRE(pidfd >= 0);
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(fmt::format("/proc/{}/fd", pid), ec)) {
        int fd = static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd, std::stoi(entry.path().filename()), 0));
        if (fd < 0)
            continue;  // closed meanwhile
        int type = 0;
        socklen_t length = sizeof(type);
        sockaddr_in peer{};
        socklen_t peer_length = sizeof(peer);
        if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) == 0 && type == SOCK_DGRAM
            && ::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_length) == 0
            && peer.sin_family == AF_INET && ntohs(peer.sin_port) == backend_port) {
            int size = 0;
            length = sizeof(size);
            ::getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, &length);
            sizes.push_back(size);
        }
        ::close(fd);
    }
    ::close(pidfd);
    std::sort(sizes.begin(), sizes.end());
    return sizes;
}

int read_sysctl(const std::string& path)
{
    std::ifstream in(path);
    int value = 0;
    in >> value;
    return value;
}

// A UDP backend that holds queries until it has `batch` of them, then echoes
// them all: that many queries are then certainly in flight on one flow at
// once, whatever the timing.
class BatchingUdpBackend {
public:
    explicit BatchingUdpBackend(std::size_t batch) : batch_(batch)
    {
        fd_ = bind_loopback(SOCK_DGRAM, &port_);
        thread_ = std::thread([this] { run(); });
    }
    ~BatchingUdpBackend()
    {
        stop_ = true;
        thread_.join();
        ::close(fd_);
    }
    BatchingUdpBackend(const BatchingUdpBackend&) = delete;
    BatchingUdpBackend& operator=(const BatchingUdpBackend&) = delete;

    std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

private:
    struct Held {
        sockaddr_storage from;
        socklen_t from_len;
        std::string data;
    };

    void run()
    {
        std::vector<Held> held;
        while (!stop_) {
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, 50) != 1)
                continue;
            Held h{};
            h.from_len = sizeof(h.from);
            h.data.resize(65536);
            ssize_t n = ::recvfrom(fd_, h.data.data(), h.data.size(), 0, reinterpret_cast<sockaddr*>(&h.from),
                                   &h.from_len);
            if (n < 0)
                continue;
            h.data.resize(static_cast<std::size_t>(n));
            held.push_back(std::move(h));
            if (held.size() < batch_)
                continue;
            for (const Held& q : held)
                ::sendto(fd_, q.data.data(), q.data.size(), 0, reinterpret_cast<const sockaddr*>(&q.from),
                         q.from_len);
            held.clear();
        }
    }

    std::size_t batch_;
    int fd_ = -1;
    std::uint16_t port_ = 0;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

} // namespace

TEST_CASE("a flow sticks to its backend and round robin spreads new flows 10/10/10")
{
    EchoBackend a("a", "whoami", "127.0.0.1:0", Transport::Udp);
    EchoBackend b("b", "whoami", "127.0.0.1:0", Transport::Udp);
    EchoBackend c("c", "whoami", "127.0.0.1:0", Transport::Udp);
    // One worker: the round-robin position is per worker.
    Sluice sluice(udp_config({a.address(), b.address(), c.address()}, "", "", "workers = 1"));
    std::map<std::string, int> flows;
    int sticky = 0;
    for (int i = 0; i < 30; ++i) {
        UdpClient client(sluice.port("front"));
        std::string first = who(client.ask(fmt::format("q{}-0", i)));
        ++flows[first];
        bool same = true;
        for (int k = 1; k < 4; ++k)
            same = same && who(client.ask(fmt::format("q{}-{}", i, k))) == first;
        sticky += same;
    }
    CHECK(sticky == 30);
    CHECK(flows["a"] == 10);
    CHECK(flows["b"] == 10);
    CHECK(flows["c"] == 10);
}

TEST_CASE("ip_hash gives a client IP the same backend across flows, on every worker")
{
    EchoBackend a("a", "whoami", "127.0.0.1:0", Transport::Udp);
    EchoBackend b("b", "whoami", "127.0.0.1:0", Transport::Udp);
    EchoBackend c("c", "whoami", "127.0.0.1:0", Transport::Udp);
    Sluice sluice(udp_config({a.address(), b.address(), c.address()}, "", "balance = \"ip_hash\""));
    std::set<std::string> used;
    int consistent = 0;
    for (int ip = 10; ip < 40; ++ip) {
        std::string source = fmt::format("127.0.0.{}", ip);
        std::set<std::string> backends;
        // Eight flows (eight source ports), spread over both workers by the kernel.
        for (int flow = 0; flow < 8; ++flow) {
            UdpClient client(sluice.port("front"), "127.0.0.1", source);
            backends.insert(who(client.ask(fmt::format("{}#{}", source, flow))));
        }
        consistent += backends.size() == 1 && !backends.count("(no reply)");
        used.insert(backends.begin(), backends.end());
    }
    CHECK(consistent == 30);
    CHECK(used.size() == 3);  // 30 IPs over 3 backends: each gets some
}

TEST_CASE("datagrams from 0 to 65507 bytes come back byte-exact")
{
    EchoBackend echo("e", "echo", "127.0.0.1:0", Transport::Udp);
    Sluice sluice(udp_config({echo.address()}));
    UdpClient client(sluice.port("front"));
    int exact = 0;
    const std::vector<std::size_t> sizes{0, 1, 2, 100, 512, 1472, 1473, 4096, 9000, 32768, 65000, 65506, 65507};
    for (std::size_t i = 0; i < sizes.size(); ++i) {
        std::string payload = random_bytes(sizes[i], 100 + i);
        std::optional<std::string> reply;
        for (int t = 0; t < 5 && !reply; ++t) {
            client.send(payload);
            // Sizes are unique, so a reply of the right size is this one.
            for (auto got = client.receive(1s); got; got = client.receive(1s))
                if (got->size() == payload.size()) {
                    reply = got;
                    break;
                }
        }
        INFO("size " << sizes[i]);
        CHECK(reply == payload);
        exact += reply == payload;
    }
    CHECK(exact == static_cast<int>(sizes.size()));
}

TEST_CASE("a burst of 65507-byte datagrams on one flow arrives whole")
{
    EchoBackend echo("e", "echo", "127.0.0.1:0", Transport::Udp);
    Sluice sluice(udp_config({echo.address()}));
    UdpClient client(sluice.port("front"));
    REQUIRE(client.ask("warm-up"));
    std::set<std::string> sent;
    for (int i = 0; i < 20; ++i) {
        std::string payload = random_bytes(65507, 500 + static_cast<std::uint64_t>(i));
        sent.insert(payload);
        client.send(payload);
    }
    int intact = 0;
    int damaged = 0;
    while (intact + damaged < 20) {
        auto got = client.receive(2s);
        if (!got)
            break;
        (sent.count(*got) ? intact : damaged)++;
    }
    // Loopback with 4 MiB socket buffers keeps a burst of 20; none may be altered.
    CHECK(damaged == 0);
    CHECK(intact == 20);
}

TEST_CASE("a flow raises its receive buffer only once it carries a datagram larger than an Ethernet frame")
{
    EchoBackend echo("e", "echo", "127.0.0.1:0", Transport::Udp);
    // A backend that answers any query with 4000 bytes: a large reply.
    std::uint16_t big_port = 0;
    int big = bind_loopback(SOCK_DGRAM, &big_port);
    std::thread answering([big] {
        char query[2048];
        sockaddr_storage from{};
        socklen_t from_length = sizeof(from);
        pollfd p{big, POLLIN, 0};
        if (::poll(&p, 1, 10000) != 1)
            return;
        if (::recvfrom(big, query, sizeof(query), 0, reinterpret_cast<sockaddr*>(&from), &from_length) < 0)
            return;
        std::string reply(4000, 'r');
        ::sendto(big, reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&from), from_length);
    });
    std::string config = udp_config({echo.address()}, "", "", "workers = 1")
        + fmt::format("\n[[listeners]]\nname = \"big\"\nlisten = \"127.0.0.1:0\"\nprotocol = \"udp\"\n"
                      "pool = \"q\"\n\n[pools.q]\nbackends = [ {{ address = \"127.0.0.1:{}\" }} ]\n",
                      big_port);
    Sluice sluice(config);
    pid_t pid = sluice.process().pid();

    UdpClient small(sluice.port("front"));
    UdpClient large(sluice.port("front"));
    UdpClient small_query(sluice.port("big"));
    REQUIRE(small.ask(std::string(1472, 's')));
    REQUIRE(large.ask(std::string(1473, 'l')));
    small_query.send("q");
    auto reply = small_query.receive(5s);
    answering.join();
    ::close(big);
    REQUIRE(reply);
    CHECK(reply->size() == 4000);

    // setsockopt(SO_RCVBUF, n) gives 2 * min(n, rmem_max); untouched is rmem_default.
    const int untouched = read_sysctl("/proc/sys/net/core/rmem_default");
    const int raised = 2 * std::min(1 << 20, read_sysctl("/proc/sys/net/core/rmem_max"));
    REQUIRE(raised != untouched);
    auto echo_flows = flow_receive_buffers(pid, echo.port());
    CHECK(echo_flows == std::vector<int>{std::min(untouched, raised), std::max(untouched, raised)});
    CHECK(flow_receive_buffers(pid, big_port) == std::vector<int>{raised});
}

TEST_CASE("a quiet flow ends after idle_timeout and frees its socket")
{
    EchoBackend a("a", "whoami", "127.0.0.1:0", Transport::Udp);
    EchoBackend b("b", "whoami", "127.0.0.1:0", Transport::Udp);
    Sluice sluice(udp_config({a.address(), b.address()}, "idle_timeout = \"300ms\"", "", "workers = 1"), {"-d"});
    pid_t pid = sluice.process().pid();
    std::size_t base = open_fds(pid);
    UdpClient client(sluice.port("front"));
    CHECK(who(client.ask("one")) == "a");
    CHECK(open_fds(pid) == base + 1);
    auto start = Clock::now();
    auto ended = sluice.process().wait_for_line("ended (idle-timeout", 5s);
    auto waited = Clock::now() - start;
    REQUIRE(ended);
    CHECK(waited >= 200ms);  // 300 ms after the last reply, less the time to read it
    CHECK(waited < 3s);
    CHECK(wait_until([&] { return open_fds(pid) == base; }, 5s));
    // The same client address now starts a new flow: the next backend.
    CHECK(who(client.ask("two")) == "b");
}

TEST_CASE("a flow with traffic outlives idle_timeout")
{
    EchoBackend a("a", "whoami", "127.0.0.1:0", Transport::Udp);
    EchoBackend b("b", "whoami", "127.0.0.1:0", Transport::Udp);
    Sluice sluice(udp_config({a.address(), b.address()}, "idle_timeout = \"400ms\"", "", "workers = 1"), {"-d"});
    UdpClient client(sluice.port("front"));
    std::set<std::string> backends;
    auto until = Clock::now() + 1200ms;
    int asked = 0;
    while (Clock::now() < until) {
        backends.insert(who(client.ask(fmt::format("tick {}", asked++))));
        std::this_thread::sleep_for(100ms);  // pacing the client, not waiting for sluice
    }
    CHECK(backends == std::set<std::string>{"a"});
    CHECK(sluice.process().count_lines("ended (idle-timeout") == 0);
}

TEST_CASE("responses = 1 ends each flow at its reply, so every query starts a new flow")
{
    EchoBackend a("a", "whoami", "127.0.0.1:0", Transport::Udp);
    EchoBackend b("b", "whoami", "127.0.0.1:0", Transport::Udp);
    Sluice sluice(udp_config({a.address(), b.address()}, "responses = 1", "", "workers = 1"), {"-d"});
    pid_t pid = sluice.process().pid();
    std::size_t base = open_fds(pid);
    UdpClient client(sluice.port("front"));
    std::vector<std::string> order;
    for (int i = 0; i < 6; ++i) {
        order.push_back(who(client.ask(fmt::format("query {}", i))));
        // The flow is freed as its reply leaves, not at idle_timeout (30 s).
        CHECK(wait_until([&] { return open_fds(pid) == base; }, 2s));
    }
    CHECK(order == std::vector<std::string>{"a", "b", "a", "b", "a", "b"});
    // The log lines reach us through a pipe, a little after the fds closed.
    CHECK(wait_until([&] { return sluice.process().count_lines("ended (responses, 1 replies)") == 6; }, 5s));
}

TEST_CASE("responses = 1 keeps a flow until every query in flight on it is answered")
{
    // A resolver (or dnsperf) sends several queries from one port before the
    // first answer comes back. Ending the flow at the first answer would close
    // the socket the other answers arrive on; like NGINX's proxy_responses,
    // the flow ends once it has one answer per query it carried. The backend
    // answers only when it holds all five, so they are surely in flight
    // together.
    constexpr int kInFlight = 5;
    BatchingUdpBackend a(kInFlight);
    Sluice sluice(udp_config({a.address()}, "responses = 1", "", "workers = 1"), {"-d"});
    UdpClient client(sluice.port("front"));
    for (std::size_t round = 0; round < 3; ++round) {
        std::set<std::string> sent, answered;
        for (int i = 0; i < kInFlight; ++i) {
            std::string query = fmt::format("round {} query {}", round, i);
            client.send(query);
            sent.insert(query);
        }
        while (answered.size() < sent.size()) {
            auto got = client.receive(2s);
            if (!got)
                break;
            answered.insert(*got);
        }
        CHECK(answered == sent);
        // Exactly one flow per round, ended by its fifth answer.
        CHECK(wait_until([&] { return sluice.process().count_lines("ended (responses, 5 replies)") == round + 1; },
                         5s));
    }
    CHECK(sluice.process().count_lines("ended (responses, 1 replies)") == 0);
}

TEST_CASE("a wildcard listener answers from the address each client sent to")
{
    // Bound to 0.0.0.0, sluice must reply from the address the datagram came
    // to, or a client that sent to a secondary address (127.0.0.2 here; the
    // kernel would pick 127.0.0.1 by route) drops the reply: its socket is
    // connected to 127.0.0.2, so it accepts datagrams from there only.
    EchoBackend a("a", "echo", "127.0.0.1:0", Transport::Udp);
    Sluice sluice(udp_config({a.address()}, "", "", "workers = 2", "0.0.0.0:0"));
    for (const char* ip : {"127.0.0.2", "127.0.0.1", "127.0.0.3"}) {
        UdpClient client(sluice.port("front"), ip);
        for (int i = 0; i < 3; ++i) {
            std::string query = fmt::format("to {} #{}", ip, i);
            auto reply = client.ask(query);
            INFO(query);
            REQUIRE(reply);
            CHECK(*reply == query);
        }
    }
}

TEST_CASE("a wildcard IPv6 listener answers over IPv6")
{
    EchoBackend a("a", "echo", "127.0.0.1:0", Transport::Udp);
    Sluice sluice(udp_config({a.address()}, "", "", "workers = 1", "[::]:0"));
    UdpClient client(sluice.port("front"), "::1");
    auto reply = client.ask("over v6");
    REQUIRE(reply);
    CHECK(*reply == "over v6");
}

TEST_CASE("1000 concurrent flows are all answered")
{
    raise_fd_limit();
    EchoBackend a("a", "echo", "127.0.0.1:0", Transport::Udp);
    EchoBackend b("b", "echo", "127.0.0.1:0", Transport::Udp);
    Sluice sluice(udp_config({a.address(), b.address()}));
    pid_t pid = sluice.process().pid();
    std::size_t base = open_fds(pid);
    constexpr int kFlows = 1000;
    std::vector<std::unique_ptr<UdpClient>> clients;
    std::vector<std::string> queries;
    for (int i = 0; i < kFlows; ++i) {
        clients.push_back(std::make_unique<UdpClient>(sluice.port("front")));
        queries.push_back(fmt::format("flow {:04} {}", i, random_bytes(40, static_cast<std::uint64_t>(i))));
    }
    std::vector<bool> answered(kFlows, false);
    int answers = 0;
    int corrupt = 0;
    // All sent at once; the unanswered ones resent, as a resolver would.
    for (int round = 0; round < 10 && answers < kFlows; ++round) {
        for (int i = 0; i < kFlows; ++i)
            if (!answered[i])
                clients[i]->send(queries[i]);
        auto until = Clock::now() + 1s;
        while (answers < kFlows && Clock::now() < until) {
            std::vector<pollfd> fds;
            for (int i = 0; i < kFlows; ++i)
                fds.push_back({clients[i]->fd(), POLLIN, 0});
            if (::poll(fds.data(), fds.size(), 100) <= 0)
                continue;
            for (int i = 0; i < kFlows; ++i) {
                if (!(fds[i].revents & POLLIN))
                    continue;
                while (auto got = clients[i]->receive(0ms)) {
                    if (*got != queries[i])
                        ++corrupt;
                    else if (!answered[i]) {
                        answered[i] = true;
                        ++answers;
                    }
                }
            }
        }
    }
    CHECK(answers == kFlows);
    CHECK(corrupt == 0);
    // One flow, one backend socket, per client: resends did not add flows.
    CHECK(open_fds(pid) == base + kFlows);
}

TEST_CASE("at the flow cap new flows are dropped, counted once in the log, and existing flows keep working")
{
    raise_fd_limit();
    EchoBackend echo("e", "echo", "127.0.0.1:0", Transport::Udp);
    Sluice sluice(udp_config({echo.address()}, "", "", "workers = 2\nmax_connections = 20"));
    pid_t pid = sluice.process().pid();
    std::size_t base = open_fds(pid);
    std::vector<std::unique_ptr<UdpClient>> existing;
    for (int i = 0; i < 10; ++i) {
        existing.push_back(std::make_unique<UdpClient>(sluice.port("front")));
        REQUIRE(existing.back()->ask(fmt::format("existing {}", i)));
    }
    // A flood from 400 source ports, 5 datagrams each, while the existing
    // flows keep asking.
    std::vector<std::unique_ptr<UdpClient>> flood;
    for (int i = 0; i < 400; ++i)
        flood.push_back(std::make_unique<UdpClient>(sluice.port("front")));
    int existing_answered = 0;
    for (int round = 0; round < 5; ++round) {
        for (int i = 0; i < 400; ++i)
            flood[i]->send(fmt::format("flood {} {}", i, round));
        for (int i = 0; i < 10; ++i)
            existing_answered += existing[i]->ask(fmt::format("existing {} round {}", i, round)).has_value();
    }
    CHECK(existing_answered == 50);
    REQUIRE(sluice.process().wait_for_line("max_connections (20) reached", 5s));
    // Exactly 10 more flows fitted under the cap (one socket each); the rest
    // of the flood got nothing back.
    CHECK(open_fds(pid) == base + 20);
    int flood_answered = 0;
    for (auto& client : flood)
        flood_answered += client->receive(0ms).has_value();
    CHECK(flood_answered <= 10);
    CHECK(sluice.process().count_lines("max_connections (20) reached") == 1);
    // Still serving the flows it has.
    for (int i = 0; i < 10; ++i)
        CHECK(existing[i]->ask(fmt::format("after {}", i)));
}

TEST_CASE("a backend that refuses (ICMP port unreachable) stops getting new flows")
{
    EchoBackend a("a", "whoami", "127.0.0.1:0", Transport::Udp);
    EchoBackend b("b", "whoami", "127.0.0.1:0", Transport::Udp);
    Sluice sluice(udp_config({a.address(), b.address()}, "", "max_fails = 2\nfail_timeout = \"60s\"",
                             "workers = 1"),
                  {"-d"});
    b.stop();
    // New flows, one query each without retransmit: those sent to b are lost,
    // and each refusal ends its flow, until two of them mark b down.
    for (int i = 0; i < 40 && !sluice.process().count_lines("is DOWN"); ++i) {
        UdpClient client(sluice.port("front"));
        client.ask(fmt::format("probe {}", i), 1, 300ms);
    }
    REQUIRE(sluice.process().wait_for_line("is DOWN (2 datagram failures within 60000ms", 5s));
    CHECK(wait_until([&] { return sluice.process().count_lines("ended (backend-refused") == 2; }, 5s));
    std::map<std::string, int> flows = new_flows_by_backend(sluice.port("front"), 20, "after");
    CHECK(flows["a"] == 20);
    // No new flow went to b once it was down: no further refusal.
    CHECK(sluice.process().count_lines("ended (backend-refused") == 2);
}

TEST_CASE("an active udp probe takes a dead backend out before clients notice")
{
    EchoBackend a("a", "whoami", "127.0.0.1:0", Transport::Udp);
    EchoBackend b("b", "whoami", "127.0.0.1:0", Transport::Udp);
    Sluice sluice(udp_config({a.address(), b.address()}, "",
                             "max_fails = 0\n"
                             "health = { protocol = \"udp\", send = \"ping\", expect = \"\", "
                             "interval = \"100ms\", timeout = \"2s\", rise = 1, fall = 1 }",
                             "workers = 1"),
                  {"-d"});
    {
        std::map<std::string, int> before = new_flows_by_backend(sluice.port("front"), 4, "before");
        CHECK(before["a"] == 2);
        CHECK(before["b"] == 2);
    }
    b.stop();
    REQUIRE(sluice.process().wait_for_line("is DOWN", 5s));
    std::map<std::string, int> flows = new_flows_by_backend(sluice.port("front"), 20, "after");
    CHECK(flows["a"] == 20);
    // The probe found b dead first: no client flow ever went to it.
    CHECK(sluice.process().count_lines("ended (backend-refused") == 0);
}

TEST_CASE("a backup backend takes udp flows only while no primary is usable")
{
    EchoBackend a("a", "whoami", "127.0.0.1:0", Transport::Udp);
    EchoBackend spare("spare", "whoami", "127.0.0.1:0", Transport::Udp);
    std::string config = udp_config({a.address()}, "", "max_fails = 1\nfail_timeout = \"60s\"", "workers = 1");
    config.replace(config.rfind("]"), 1, fmt::format("  {{ address = \"{}\", backup = true }},\n]", spare.address()));
    Sluice sluice(config);
    {
        UdpClient client(sluice.port("front"));
        CHECK(who(client.ask("first")) == "a");
    }
    a.stop();
    {
        UdpClient client(sluice.port("front"));
        client.ask("lost to a", 1, 300ms);
    }
    REQUIRE(sluice.process().wait_for_line("is DOWN", 5s));
    UdpClient client(sluice.port("front"));
    CHECK(who(client.ask("to the backup")) == "spare");
}

TEST_CASE("an IPv6 udp listener reaches an IPv4 backend")
{
    EchoBackend echo("e", "echo", "127.0.0.1:0", Transport::Udp);
    std::string config = udp_config({echo.address()});
    config.replace(config.find("127.0.0.1:0"), 11, "[::1]:0");
    Sluice sluice(config);
    UdpClient client(sluice.port("front"), "::1");
    CHECK(client.ask("over v6") == "over v6");
}

TEST_CASE("SIGTERM with open udp flows exits 0")
{
    EchoBackend echo("e", "echo", "127.0.0.1:0", Transport::Udp);
    Sluice sluice(udp_config({echo.address()}));
    std::vector<std::unique_ptr<UdpClient>> clients;
    for (int i = 0; i < 20; ++i) {
        clients.push_back(std::make_unique<UdpClient>(sluice.port("front")));
        REQUIRE(clients.back()->ask(fmt::format("c{}", i)));
    }
    sluice.process().send_signal(SIGTERM);
    CHECK(sluice.process().wait_exit(10s) == 0);
}

TEST_CASE("a UDP flow is a session: show sessions lists it, show stat counts it, its end is access-logged")
{
    EchoBackend a("a", "echo", "127.0.0.1:0", Transport::Udp);
    Sluice sluice(udp_config({a.address()}, "idle_timeout = \"1s\"\naccess_log = \"@DIR@/access.log\"", "",
                             "workers = 2\n\n[admin]\nsocket = \"@DIR@/admin.sock\"\nmetrics = \"\""));
    AdminClient admin(sluice.dir() + "/admin.sock");
    UdpClient client(sluice.port("front"));
    REQUIRE(client.ask("ping-1", 1, 5s));
    REQUIRE(client.ask("ping-22", 1, 5s));
    sockaddr_in local{};
    socklen_t len = sizeof(local);
    ::getsockname(client.fd(), reinterpret_cast<sockaddr*>(&local), &len);
    const std::string client_address = "127.0.0.1:" + std::to_string(ntohs(local.sin_port));

    std::string sessions = admin.command("json show sessions");
    INFO(sessions);
    CHECK(sessions.find(R"("client":")" + client_address + R"(")") != std::string::npos);
    CHECK(sessions.find(R"("backend":"p/)" + a.address() + R"(")") != std::string::npos);
    CHECK(sessions.find(R"("state":"active","protocol":"udp")") != std::string::npos);
    CHECK(admin.command("show sessions").find("  active  udp") != std::string::npos);
    // One worker counts the flow as its session.
    std::string stat = admin.command("json show stat");
    CHECK(stat.find(R"("sessions":1})") != std::string::npos);

    // The idle timeout ends the flow: one access line with its bytes.
    std::string log;
    CHECK(wait_until([&] {
        std::ifstream in(sluice.dir() + "/access.log");
        std::stringstream ss;
        ss << in.rdbuf();
        log = ss.str();
        return !log.empty();
    }));
    INFO(log);
    CHECK(std::count(log.begin(), log.end(), '\n') == 1);
    CHECK(log.find(" listener=front client=" + client_address + " backend=p/" + a.address() + " duration_ms=")
          != std::string::npos);
    // 6 + 7 bytes each way (nothing is resent: loopback with one client does
    // not drop).
    CHECK(log.find(" bytes_in=13 bytes_out=13 end=idle-timeout connect_ms=0.000 retries=0 datagrams_in=2 "
                   "datagrams_out=2\n")
          != std::string::npos);
    CHECK(wait_until([&] { return admin.command("json show sessions") == R"({"sessions":[]})"; }));
}

TEST_CASE("with active checks, a UDP backend marked down by traffic is logged once, by the prober, as TCP's is")
{
    EchoBackend a("a", "whoami", "127.0.0.1:0", Transport::Udp);
    EchoBackend b("b", "whoami", "127.0.0.1:0", Transport::Udp);
    // Probes too rare to find b first: the refusals of client flows do.
    Sluice sluice(udp_config({a.address(), b.address()}, "",
                             "max_fails = 1\nfail_timeout = \"60s\"\n"
                             "health = { protocol = \"udp\", send = \"ping\", expect = \"\", "
                             "interval = \"1h\", timeout = \"2s\", rise = 1, fall = 1 }",
                             "workers = 1"),
                  {"-d"});
    b.stop();
    for (int i = 0; i < 40 && !sluice.process().count_lines("is DOWN"); ++i) {
        UdpClient client(sluice.port("front"));
        client.ask(fmt::format("probe {}", i), 1, 300ms);
    }
    REQUIRE(sluice.process().wait_for_line("is DOWN (1 connect failure from traffic)", 5s));
    CHECK(sluice.process().count_lines("is DOWN") == 1);
    CHECK(sluice.process().count_lines("datagram failure") == 0);
}
