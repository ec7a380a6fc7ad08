// The PROXY protocol through the real sluice binary: send_proxy's exact
// headers on the wire (IPv4, IPv6), accept_proxy's announced client carried
// on and logged, refusals that never touch a backend, a flood of bad headers,
// and a real MariaDB seeing the client's address.
#include "harness.h"
#include "mysql_server.h"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <fmt/format.h>
#include <mariadb/mysql.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

using namespace sluice::test;

namespace {

const std::string kV2Signature{"\r\n\r\n\0\r\nQUIT\n", 12};

// A backend that records, per connection, every byte it receives (until the
// peer closes). Sends nothing. Listens on 127.0.0.1 or ::1.
class Recorder {
public:
    explicit Recorder(const std::string& ip = "127.0.0.1") : ip_(ip)
    {
        const bool v6 = ip.find(':') != std::string::npos;
        listen_fd_ = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        REQUIRE(listen_fd_ >= 0);
        sockaddr_storage ss{};
        socklen_t len;
        if (v6) {
            auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
            a->sin6_family = AF_INET6;
            ::inet_pton(AF_INET6, ip.c_str(), &a->sin6_addr);
            len = sizeof(sockaddr_in6);
        } else {
            auto* a = reinterpret_cast<sockaddr_in*>(&ss);
            a->sin_family = AF_INET;
            ::inet_pton(AF_INET, ip.c_str(), &a->sin_addr);
            len = sizeof(sockaddr_in);
        }
        REQUIRE(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&ss), len) == 0);
        REQUIRE(::listen(listen_fd_, 128) == 0);
        REQUIRE(::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&ss), &len) == 0);
        port_ = ntohs(v6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
        thread_ = std::thread([this] { run(); });
    }
    ~Recorder()
    {
        stop_ = true;
        thread_.join();
        ::close(listen_fd_);
        for (int fd : fds_)
            ::close(fd);
    }
    std::uint16_t port() const noexcept { return port_; }
    std::string address() const
    {
        return ip_.find(':') != std::string::npos ? fmt::format("[{}]:{}", ip_, port_) : fmt::format("{}:{}", ip_, port_);
    }
    std::size_t connections()
    {
        std::lock_guard lock(mutex_);
        return received_.size();
    }
    // Waits until connection `index` has sent at least `length` bytes; returns
    // everything it sent so far.
    std::string wait_bytes(std::size_t index, std::size_t length)
    {
        wait_until([&] {
            std::lock_guard lock(mutex_);
            return index < received_.size() && received_[index].size() >= length;
        });
        std::lock_guard lock(mutex_);
        return index < received_.size() ? received_[index] : std::string();
    }

private:
    // One thread polls the listener and every connection: no Catch2 here.
    void run()
    {
        while (!stop_) {
            std::vector<pollfd> polled{{listen_fd_, POLLIN, 0}};
            for (int fd : fds_)
                polled.push_back({fd, static_cast<short>(fd >= 0 ? POLLIN : 0), 0});
            if (::poll(polled.data(), polled.size(), 20) <= 0)
                continue;
            if (polled[0].revents & POLLIN) {
                int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
                if (fd >= 0) {
                    std::lock_guard lock(mutex_);
                    fds_.push_back(fd);
                    received_.emplace_back();
                }
            }
            for (std::size_t i = 1; i < polled.size(); ++i) {
                if (!(polled[i].revents & (POLLIN | POLLHUP | POLLERR)))
                    continue;
                char buf[4096];
                ssize_t n = ::recv(polled[i].fd, buf, sizeof buf, 0);
                std::lock_guard lock(mutex_);
                if (n > 0) {
                    received_[i - 1].append(buf, static_cast<std::size_t>(n));
                } else {
                    ::close(fds_[i - 1]);
                    fds_[i - 1] = -1;
                }
            }
        }
    }

    std::string ip_;
    int listen_fd_ = -1;
    std::uint16_t port_ = 0;
    std::atomic<bool> stop_{false};
    std::thread thread_;
    std::mutex mutex_;
    std::vector<int> fds_;                // parallel to received_; -1 once closed
    std::vector<std::string> received_;
};

struct Endpoint {
    std::string ip;
    std::uint16_t port = 0;
};

Endpoint local_of(int fd)
{
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0);
    char text[INET6_ADDRSTRLEN] = {};
    if (ss.ss_family == AF_INET6) {
        auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
        ::inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof text);
        return {text, ntohs(a->sin6_port)};
    }
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    ::inet_ntop(AF_INET, &a->sin_addr, text, sizeof text);
    return {text, ntohs(a->sin_port)};
}

std::string be16(std::uint16_t v) { return {static_cast<char>(v >> 8), static_cast<char>(v & 0xff)}; }

std::string ip_bytes(const std::string& ip)
{
    unsigned char b[16];
    if (ip.find(':') != std::string::npos) {
        REQUIRE(::inet_pton(AF_INET6, ip.c_str(), b) == 1);
        return std::string(reinterpret_cast<char*>(b), 16);
    }
    REQUIRE(::inet_pton(AF_INET, ip.c_str(), b) == 1);
    return std::string(reinterpret_cast<char*>(b), 4);
}

// The v2 header for a TCP connection, built here byte by byte from the spec.
std::string v2_header(const Endpoint& source, const Endpoint& destination)
{
    const bool v6 = source.ip.find(':') != std::string::npos;
    return kV2Signature + std::string(1, '\x21') + std::string(1, v6 ? '\x21' : '\x11') + be16(v6 ? 36 : 12)
        + ip_bytes(source.ip) + ip_bytes(destination.ip) + be16(source.port) + be16(destination.port);
}

std::string v1_header(const Endpoint& source, const Endpoint& destination)
{
    const bool v6 = source.ip.find(':') != std::string::npos;
    return fmt::format("PROXY {} {} {} {} {}\r\n", v6 ? "TCP6" : "TCP4", source.ip, destination.ip, source.port,
                       destination.port);
}

// [global], [admin] with metrics, one listener "front" on `listen` in front
// of pool p.
std::string config(const std::string& listen, const std::string& listener_keys, const std::string& backends,
                   const std::string& pool_keys = "")
{
    return fmt::format("[global]\nworkers = 2\n\n[admin]\nsocket = \"@DIR@/admin.sock\"\nmetrics = \"127.0.0.1:0\"\n\n"
                       "[[listeners]]\nname = \"front\"\nlisten = \"{}\"\npool = \"p\"\n"
                       "access_log = \"@DIR@/access.log\"\n{}\n\n"
                       "[pools.p]\n{}\nbackends = [{}]\n",
                       listen, listener_keys, pool_keys, backends);
}

std::string backend(const std::string& address, const std::string& extra = "")
{
    return fmt::format("{{ address = \"{}\"{} }}", address, extra);
}

// Waits for sluice to close `fd` (EOF or reset), without sending anything more.
bool closed_by_peer(int fd)
{
    set_receive_timeout(fd, 10s);
    int error = 0;
    recv_until_eof(fd, &error);
    return error != EAGAIN && error != EWOULDBLOCK;
}

std::uint64_t metric(Sluice& sluice, const std::string& sample)
{
    const std::string text = http_get(sluice.metrics_port(), "/metrics");
    const std::size_t at = text.find(sample + " ");
    if (at == std::string::npos)
        return ~std::uint64_t{0};
    return std::stoull(text.substr(at + sample.size() + 1));
}

const std::string kRefused = "sluice_listener_proxy_refused_total{listener=\"front\",protocol=\"tcp\"}";

std::string read_text(const std::string& path)
{
    std::string out;
    if (FILE* f = std::fopen(path.c_str(), "r")) {
        char buf[4096];
        std::size_t n;
        while ((n = std::fread(buf, 1, sizeof buf, f)) > 0)
            out.append(buf, n);
        std::fclose(f);
    }
    return out;
}

} // namespace

TEST_CASE("send_proxy puts the exact v1 and v2 header on the wire before any client byte, IPv4 and IPv6")
{
    for (const std::string ip : {"127.0.0.1", "::1"}) {
        for (const std::string version : {"v1", "v2"}) {
            INFO(ip << " " << version);
            Recorder recorder(ip);
            const std::string listen = ip == "::1" ? "[::1]:0" : "127.0.0.1:0";
            Sluice sluice(config(listen, "", backend(recorder.address()), fmt::format("send_proxy = \"{}\"", version)));
            // The client says nothing: the header must still go out at once
            // (a server that speaks first, like MySQL, waits for nothing else).
            Fd client(connect_tcp(sluice.port("front"), ip, ip == "::1" ? "" : "127.0.0.2"));
            const Endpoint source = local_of(client);
            const Endpoint destination{ip, sluice.port("front")};
            CHECK(source.ip == (ip == "::1" ? "::1" : "127.0.0.2"));
            const std::string header = version == "v1" ? v1_header(source, destination) : v2_header(source, destination);
            CHECK(recorder.wait_bytes(0, header.size()) == header);
            // Then the client's bytes, after the header and nothing else.
            send_all(client, "hello");
            CHECK(recorder.wait_bytes(0, header.size() + 5) == header + "hello");
            // bytes_in counts the client's bytes only.
            ::close(std::exchange(client.fd, -1));
            REQUIRE(wait_until([&] { return read_text(sluice.dir() + "/access.log").find("end=") != std::string::npos; }));
            CHECK(read_text(sluice.dir() + "/access.log").find(" bytes_in=5 ") != std::string::npos);
        }
    }
}

TEST_CASE("a client's first bytes leave with the send_proxy header, and a backend's own send_proxy wins")
{
    Recorder v1_backend;
    Sluice sluice(config("127.0.0.1:0", "", backend(v1_backend.address(), ", send_proxy = \"v1\""),
                         "send_proxy = \"v2\""));
    Fd client(connect_tcp(sluice.port("front"), "127.0.0.1", "127.0.0.2"));
    send_all(client, "early bytes");
    const std::string header = v1_header(local_of(client), {"127.0.0.1", sluice.port("front")});
    CHECK(v1_backend.wait_bytes(0, header.size() + 11) == header + "early bytes");
}

TEST_CASE("accept_proxy: the announced client is forwarded by send_proxy, logged, and LOCAL keeps the real peer")
{
    Recorder recorder;
    Sluice sluice(config("127.0.0.1:0", "accept_proxy = true\naccept_proxy_from = [\"127.0.0.0/8\"]",
                         backend(recorder.address()), "send_proxy = \"v1\""));
    const std::uint16_t port = sluice.port("front");

    // v1 in, with the client's first bytes in the same packet.
    Fd a(connect_tcp(port, "127.0.0.1", "127.0.0.2"));
    send_all(a, "PROXY TCP4 192.0.2.9 198.51.100.1 5555 80\r\nhello");
    CHECK(recorder.wait_bytes(0, 47) == "PROXY TCP4 192.0.2.9 198.51.100.1 5555 80\r\nhello");

    // v2 TCP6 in, sent in two pieces, the client's bytes later.
    Fd b(connect_tcp(port, "127.0.0.1", "127.0.0.2"));
    const std::string v2 = v2_header({"2001:db8::9", 4444}, {"2001:db8::1", 5432});
    send_all(b, v2.substr(0, 20));
    send_all(b, v2.substr(20));
    const std::string out_b = "PROXY TCP6 2001:db8::9 2001:db8::1 4444 5432\r\n";
    CHECK(recorder.wait_bytes(1, out_b.size()) == out_b);
    send_all(b, "after");
    CHECK(recorder.wait_bytes(1, out_b.size() + 5) == out_b + "after");

    // v2 LOCAL: no client announced, the real peer stays the client.
    Fd c(connect_tcp(port, "127.0.0.1", "127.0.0.2"));
    send_all(c, kV2Signature + std::string("\x20\x00\x00\x00", 4) + "x");
    const std::string out_c = v1_header(local_of(c), {"127.0.0.1", port}) + "x";
    CHECK(recorder.wait_bytes(2, out_c.size()) == out_c);

    // show sessions lists the announced clients, and the LOCAL one as itself.
    AdminClient admin(sluice.dir() + "/admin.sock");
    const std::string sessions = admin.command("show sessions");
    INFO(sessions);
    CHECK(sessions.find("192.0.2.9:5555") != std::string::npos);
    CHECK(sessions.find("[2001:db8::9]:4444") != std::string::npos);
    CHECK(sessions.find(fmt::format("127.0.0.2:{}", local_of(c).port)) != std::string::npos);

    // The access log names the announced clients.
    ::close(std::exchange(a.fd, -1));
    ::close(std::exchange(b.fd, -1));
    REQUIRE(wait_until([&] {
        const std::string log = read_text(sluice.dir() + "/access.log");
        return log.find("client=192.0.2.9:5555 ") != std::string::npos
            && log.find("client=[2001:db8::9]:4444 ") != std::string::npos;
    }));
    CHECK(read_text(sluice.dir() + "/access.log").find("client=192.0.2.9:5555 backend=p/127.0.0.1:") != std::string::npos);
    CHECK(metric(sluice, kRefused) == 0);
}

TEST_CASE("on an accept_proxy listener allow/deny and the per-source limit judge the announced client, not the proxy")
{
    Recorder recorder;
    // The proxy itself (127.0.0.2) is inside deny: were the checks made at
    // accept, every client would be refused.
    Sluice sluice(config("127.0.0.1:0",
                         "accept_proxy = true\naccept_proxy_from = [\"127.0.0.0/8\"]\n"
                         "deny = [\"127.0.0.0/8\", \"203.0.113.0/24\"]\nmax_connections_per_source = 1",
                         backend(recorder.address())));
    const std::uint16_t port = sluice.port("front");

    Fd allowed(connect_tcp(port, "127.0.0.1", "127.0.0.2"));
    send_all(allowed, "PROXY TCP4 192.0.2.9 198.51.100.1 5555 80\r\nhello");
    CHECK(recorder.wait_bytes(0, 5) == "hello");

    // The same announced address again: over max_connections_per_source.
    Fd second(connect_tcp(port, "127.0.0.1", "127.0.0.2"));
    send_all(second, "PROXY TCP4 192.0.2.9 198.51.100.1 5556 80\r\nagain");
    CHECK(closed_by_peer(second.fd));

    // An announced client inside deny.
    Fd denied(connect_tcp(port, "127.0.0.1", "127.0.0.2"));
    send_all(denied, "PROXY TCP4 203.0.113.7 198.51.100.1 5557 80\r\nnope");
    CHECK(closed_by_peer(denied.fd));

    REQUIRE(wait_until([&] {
        const std::string log = read_text(sluice.dir() + "/access.log");
        return log.find("client=192.0.2.9:5556 backend=- ") != std::string::npos
            && log.find("client=203.0.113.7:5557 backend=- ") != std::string::npos;
    }));
    const std::string log = read_text(sluice.dir() + "/access.log");
    INFO(log);
    CHECK(log.find("client=192.0.2.9:5556 backend=- ") < log.size());
    CHECK(log.find("end=source-refused") != std::string::npos);
    CHECK(metric(sluice, "sluice_listener_denied_total{listener=\"front\",protocol=\"tcp\"}") == 1);
    CHECK(metric(sluice, "sluice_listener_source_limited_total{listener=\"front\",protocol=\"tcp\"}") == 1);
    CHECK(recorder.connections() == 1);  // the refused clients never reached the backend
}

TEST_CASE("missing, garbled, slow and untrusted PROXY headers are refused with no backend touched")
{
    Recorder recorder;
    Sluice sluice(config("127.0.0.1:0",
                         "accept_proxy = true\naccept_proxy_from = [\"127.0.0.2\"]\nproxy_timeout = \"300ms\"",
                         backend(recorder.address())));
    const std::uint16_t port = sluice.port("front");
    const std::string good = "PROXY TCP4 192.0.2.9 198.51.100.1 5555 80\r\n";

    Fd missing(connect_tcp(port, "127.0.0.1", "127.0.0.2"));
    send_all(missing, "GET / HTTP/1.0\r\n\r\n");
    CHECK(closed_by_peer(missing));

    Fd garbled(connect_tcp(port, "127.0.0.1", "127.0.0.2"));
    send_all(garbled, "PROXY TCP4 192.0.2.9 198.51.100.1 5555\r\nhello");
    CHECK(closed_by_peer(garbled));

    Fd oversized(connect_tcp(port, "127.0.0.1", "127.0.0.2"));
    send_all(oversized, kV2Signature + std::string("\x21\x11\xff\xff", 4));
    CHECK(closed_by_peer(oversized));

    const auto slow_start = Clock::now();
    Fd slow(connect_tcp(port, "127.0.0.1", "127.0.0.2"));
    send_all(slow, good.substr(0, 20));
    CHECK(closed_by_peer(slow));
    CHECK(Clock::now() - slow_start >= 250ms);

    Fd silent(connect_tcp(port, "127.0.0.1", "127.0.0.2"));
    CHECK(closed_by_peer(silent));

    // 127.0.0.3 is not in accept_proxy_from: a perfect header changes nothing.
    Fd untrusted(connect_tcp(port, "127.0.0.1", "127.0.0.3"));
    send_all(untrusted, good);
    CHECK(closed_by_peer(untrusted));

    REQUIRE(wait_until([&] { return metric(sluice, kRefused) == 6; }));
    CHECK(recorder.connections() == 0);
    CHECK(sluice.process().wait_for_line("for their PROXY protocol header"));
    CHECK(read_text(sluice.dir() + "/access.log").find("end=proxy-refused") != std::string::npos);

    // A good header from the trusted peer still gets through.
    Fd ok(connect_tcp(port, "127.0.0.1", "127.0.0.2"));
    send_all(ok, good + "ping");
    CHECK(recorder.wait_bytes(0, 4) == "ping");
    CHECK(recorder.connections() == 1);
}

TEST_CASE("hundreds of random and truncated PROXY headers are all refused and sluice still serves")
{
    Recorder recorder;
    Sluice sluice(config("127.0.0.1:0", "accept_proxy = true\naccept_proxy_from = [\"127.0.0.0/8\"]",
                         backend(recorder.address())));
    const std::uint16_t port = sluice.port("front");
    const std::vector<std::string> valid = {
        "PROXY TCP4 192.0.2.9 198.51.100.1 5555 80\r\n",
        "PROXY TCP6 2001:db8::9 2001:db8::1 4444 5432\r\n",
        "PROXY UNKNOWN\r\n",
        v2_header({"192.0.2.9", 1}, {"198.51.100.1", 2}),
        v2_header({"2001:db8::9", 1}, {"2001:db8::1", 2}),
    };
    std::mt19937 rng(18);
    constexpr int kClients = 400;
    int closed = 0;
    for (int i = 0; i < kClients; ++i) {
        std::string bytes;
        if (i % 2 == 0) {
            // A valid header cut short, then the client's FIN.
            const std::string& header = valid[static_cast<std::size_t>(i / 2) % valid.size()];
            bytes = header.substr(0, std::uniform_int_distribution<std::size_t>(0, header.size() - 1)(rng));
        } else {
            // Random bytes, some after a valid start.
            bytes = i % 3 == 0 ? std::string("PROXY ") : i % 5 == 0 ? kV2Signature : std::string();
            bytes += random_bytes(std::uniform_int_distribution<std::size_t>(1, 300)(rng), static_cast<std::uint64_t>(i));
        }
        Fd client(connect_tcp(port, "127.0.0.1", "127.0.0.2"));
        if (!bytes.empty())
            send_all(client, bytes);
        ::shutdown(client, SHUT_WR);
        closed += closed_by_peer(client) ? 1 : 0;
    }
    CHECK(closed == kClients);
    REQUIRE(wait_until([&] { return metric(sluice, kRefused) == kClients; }));
    CHECK(recorder.connections() == 0);
    CHECK(sluice.process().running());

    Fd ok(connect_tcp(port, "127.0.0.1", "127.0.0.2"));
    send_all(ok, valid[0] + "still here");
    CHECK(recorder.wait_bytes(0, 10) == "still here");
}

TEST_CASE("a real MariaDB with proxy_protocol_networks sees the client's address behind send_proxy v2")
{
    if (!MysqlServer::available()) {
        WARN("SKIPPED: " << MysqlServer::missing());
        return;
    }
    // MariaDB trusts headers from 127.0.0.1, where sluice connects from; the
    // client connects to sluice from 127.0.0.2.
    MysqlServer server({"--proxy-protocol-networks=127.0.0.1/32"});
    server.sql("CREATE USER app@'%' IDENTIFIED BY 'app-pass'");
    Sluice sluice(config("127.0.0.1:0", "", backend(server.address()), "send_proxy = \"v2\""));

    auto host_seen_by_server = [&](const char* bind_ip) {
        MYSQL* conn = mysql_init(nullptr);
        REQUIRE(conn);
        std::unique_ptr<MYSQL, void (*)(MYSQL*)> owner(conn, mysql_close);
        mysql_optionsv(conn, MYSQL_OPT_BIND, bind_ip);
        unsigned timeout = 10;
        mysql_optionsv(conn, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
        INFO(server.process().output());
        REQUIRE(mysql_real_connect(conn, "127.0.0.1", "app", "app-pass", nullptr, sluice.port("front"), nullptr, 0));
        REQUIRE(mysql_query(conn, "SELECT USER()") == 0);
        MYSQL_RES* result = mysql_store_result(conn);
        REQUIRE(result);
        MYSQL_ROW row = mysql_fetch_row(result);
        std::string user = row && row[0] ? row[0] : "";
        mysql_free_result(result);
        return user;
    };
    CHECK(host_seen_by_server("127.0.0.2") == "app@127.0.0.2");
    CHECK(host_seen_by_server("127.0.0.3") == "app@127.0.0.3");
}
