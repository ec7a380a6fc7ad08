// Who may connect and connection hygiene, through the real sluice binary:
// allow/deny, max_connections_per_source (TCP and UDP, across two workers),
// tcp_keepalive on both sockets, client/server_fin_timeout, a pool's source.
// Clients come from several 127.0.0.x addresses (bound before connect).
#include "harness.h"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fmt/format.h>
#include <fstream>
#include <mutex>
#include <netinet/in.h>
#include <sstream>
#include <sys/socket.h>
#include <unistd.h>

using namespace sluice::test;

namespace {

// A config with one listener "front" (127.0.0.1:0 unless `listen` says
// otherwise) in front of pool "p", an admin socket and an access log.
std::string admission_config(const std::string& backend, const std::string& listener_extra,
                             const std::string& pool_extra = "", const std::string& listen = "127.0.0.1:0",
                             const std::string& protocol = "tcp")
{
    return fmt::format("[global]\nworkers = 2\n\n[admin]\nsocket = \"@DIR@/admin.sock\"\n\n"
                       "[[listeners]]\nname = \"front\"\nlisten = \"{}\"\nprotocol = \"{}\"\npool = \"p\"\n"
                       "access_log = \"@DIR@/access.log\"\n{}\n\n"
                       "[pools.p]\n{}\nbackends = [{{ address = \"{}\" }}]\n",
                       listen, protocol, listener_extra, pool_extra, backend);
}

double number_after(const std::string& json, const std::string& key)
{
    auto at = json.find("\"" + key + "\":");
    return at == std::string::npos ? -1.0 : std::atof(json.c_str() + at + key.size() + 3);
}

// The listener's counter `key` from `json show stat`.
double stat_of(Sluice& sluice, const std::string& key)
{
    AdminClient admin(sluice.dir() + "/admin.sock");
    return number_after(admin.command("json show stat"), key);
}

// One echo round trip; false when the session is gone (closed or reset).
bool echoes(int fd, const std::string& text = "ping\n")
{
    set_receive_timeout(fd, 5s);
    if (::send(fd, text.data(), text.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(text.size()))
        return false;
    std::string back;
    char buf[256];
    while (back.size() < text.size()) {
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0)
            return false;
        back.append(buf, static_cast<std::size_t>(n));
    }
    return back == text;
}

// True when sluice closed the client without a byte (EOF or reset).
bool closed_at_once(int fd)
{
    set_receive_timeout(fd, 5s);
    char byte;
    ssize_t n = ::recv(fd, &byte, 1, 0);
    return n == 0 || (n < 0 && (errno == ECONNRESET || errno == EPIPE));
}

std::string read_file(const std::string& path)
{
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

// An echo server that counts the connections that reached it.
struct CountingEcho {
    std::atomic<int> accepted{0};
    ScriptedServer server{[this](int fd) {
        accepted.fetch_add(1);
        char buf[4096];
        for (;;) {
            ssize_t n = ::recv(fd, buf, sizeof buf, 0);
            if (n <= 0)
                return;
            send_all(fd, buf, static_cast<std::size_t>(n));
        }
    }};
};

// A UDP socket bound to `source_ip` on a free port.
Fd udp_client(const std::string& source_ip)
{
    Fd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    REQUIRE(fd >= 0);
    sockaddr_in local{};
    local.sin_family = AF_INET;
    ::inet_pton(AF_INET, source_ip.c_str(), &local.sin_addr);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof local) == 0);
    return fd;
}

// Sends `text` to 127.0.0.1:port and waits `wait` for one datagram back.
std::optional<std::string> udp_round_trip(int fd, std::uint16_t port, const std::string& text,
                                          std::chrono::milliseconds wait = 5s)
{
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    ::inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    if (::sendto(fd, text.data(), text.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to)
        != static_cast<ssize_t>(text.size()))
        return std::nullopt;
    set_receive_timeout(fd, wait);
    char buf[2048];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0)
        return std::nullopt;
    return std::string(buf, static_cast<std::size_t>(n));
}

// `ss -tnoH` lines of established sockets (with their timers).
std::string established_sockets()
{
    std::string out;
    if (FILE* pipe = ::popen("ss -tnoH state established 2>&1", "r")) {
        char buf[4096];
        while (std::size_t n = std::fread(buf, 1, sizeof buf, pipe))
            out.append(buf, n);
        ::pclose(pipe);
    }
    return out;
}

// The ss line whose local (column 3) or peer (column 4) address ends in ":port".
std::string socket_line(const std::string& sockets, std::uint16_t port, bool local)
{
    std::istringstream lines(sockets);
    std::string line;
    const std::string suffix = ":" + std::to_string(port);
    while (std::getline(lines, line)) {
        std::istringstream fields(line);
        std::string recv_q, send_q, local_address, peer_address;
        fields >> recv_q >> send_q >> local_address >> peer_address;
        const std::string& address = local ? local_address : peer_address;
        if (address.size() >= suffix.size() && address.ends_with(suffix))
            return line;
    }
    return "";
}

} // namespace

TEST_CASE("allow and deny decide who reaches a backend, deny wins, and refusals are counted")
{
    CountingEcho echo;
    Sluice sluice(admission_config(echo.server.address(),
                                   R"(allow = ["127.0.0.0/29"]
deny = ["127.0.0.3", "127.0.0.4/32"])"));
    const std::uint16_t port = sluice.port("front");

    Fd allowed(connect_tcp(port, "127.0.0.1", "127.0.0.2"));
    CHECK(echoes(allowed));
    Fd denied(connect_tcp(port, "127.0.0.1", "127.0.0.3"));  // in allow and in deny: deny wins
    CHECK(closed_at_once(denied));
    Fd denied_too(connect_tcp(port, "127.0.0.1", "127.0.0.4"));
    CHECK(closed_at_once(denied_too));
    Fd outside(connect_tcp(port, "127.0.0.1", "127.0.0.9"));  // not in allow
    CHECK(closed_at_once(outside));
    Fd edge(connect_tcp(port, "127.0.0.1", "127.0.0.7"));  // the last address of 127.0.0.0/29
    CHECK(echoes(edge));

    CHECK(echo.accepted.load() == 2);  // the refused never reached the backend
    CHECK(wait_until([&] { return stat_of(sluice, "denied") == 3; }));
    CHECK(stat_of(sluice, "accepted") == 2);
    CHECK(sluice.process().wait_for_line("refused 1 new client by allow/deny").has_value());
}

TEST_CASE("allow and deny work for IPv6 clients on ::1")
{
    CountingEcho echo;
    SECTION("::1 in deny is refused")
    {
        Sluice sluice(admission_config(echo.server.address(), R"(deny = ["::1"])", "", "[::1]:0"));
        Fd client(connect_tcp(sluice.port("front"), "::1"));
        CHECK(closed_at_once(client));
        CHECK(wait_until([&] { return stat_of(sluice, "denied") == 1; }));
        CHECK(echo.accepted.load() == 0);
    }
    SECTION("::1 in allow gets through, an IPv4 allow entry does not cover it")
    {
        Sluice sluice(admission_config(echo.server.address(), R"(allow = ["127.0.0.0/8", "::1/128"])", "", "[::1]:0"));
        Fd client(connect_tcp(sluice.port("front"), "::1"));
        CHECK(echoes(client));
        Sluice other(admission_config(echo.server.address(), R"(allow = ["127.0.0.0/8", "2001:db8::/32"])", "",
                                      "[::1]:0"));
        Fd refused(connect_tcp(other.port("front"), "::1"));
        CHECK(closed_at_once(refused));
        CHECK(echo.accepted.load() == 1);
    }
}

TEST_CASE("a deny list of 10,000 prefixes loads quickly and still refuses its last entry")
{
    std::string list;
    for (int i = 0; i < 10'000; ++i)
        list += fmt::format("\"10.{}.{}.0/24\", ", i / 256, i % 256);
    list += "\"127.0.0.6\"";
    CountingEcho echo;
    const auto started = Clock::now();
    Sluice sluice(admission_config(echo.server.address(), "deny = [" + list + "]"));
    const std::uint16_t port = sluice.port("front");
    CHECK(Clock::now() - started < 5s);  // start-up, parse included, on a shared machine
    Fd refused(connect_tcp(port, "127.0.0.1", "127.0.0.6"));
    CHECK(closed_at_once(refused));
    Fd client(connect_tcp(port, "127.0.0.1", "127.0.0.5"));
    CHECK(echoes(client));
    CHECK(echo.accepted.load() == 1);
}

TEST_CASE("max_connections_per_source is exact across two workers and frees a place when a session ends")
{
    CountingEcho echo;
    // 20 sessions spread over two workers (SO_REUSEPORT hashes each 4-tuple):
    // the chance that all land on one worker is 2^-19.
    Sluice sluice(admission_config(echo.server.address(), "max_connections_per_source = 20"));
    const std::uint16_t port = sluice.port("front");
    std::vector<Fd> admitted;
    int refused = 0;
    for (int i = 0; i < 30; ++i) {
        Fd client(connect_tcp(port, "127.0.0.1", "127.0.0.2"));
        if (echoes(client))
            admitted.push_back(std::move(client));
        else
            ++refused;
    }
    CHECK(admitted.size() == 20);
    CHECK(refused == 10);
    {
        AdminClient admin(sluice.dir() + "/admin.sock");
        const std::string stat = admin.command("json show stat");
        INFO(stat);
        const auto workers = stat.substr(stat.find("\"workers\""));
        const auto first = workers.find("\"sessions\":");
        const auto second = workers.find("\"sessions\":", first + 1);
        CHECK(std::atoi(workers.c_str() + first + 11) > 0);
        CHECK(std::atoi(workers.c_str() + second + 11) > 0);
    }
    CHECK(stat_of(sluice, "source_limited") == 10);

    // Another address has its own count.
    Fd other(connect_tcp(port, "127.0.0.1", "127.0.0.4"));
    CHECK(echoes(other));

    // Three sessions end: exactly three new ones get in.
    for (int i = 0; i < 3; ++i)
        admitted.pop_back();
    CHECK(wait_until([&] {
        const std::string log = read_file(sluice.dir() + "/access.log");
        std::size_t ends = 0;
        for (auto at = log.find(" end="); at != std::string::npos; at = log.find(" end=", at + 1))
            ++ends;
        return ends == 3;
    }));
    int again = 0;
    for (int i = 0; i < 5; ++i) {
        Fd client(connect_tcp(port, "127.0.0.1", "127.0.0.2"));
        if (echoes(client))
            admitted.push_back(std::move(client)), ++again;
    }
    CHECK(again == 3);
    CHECK(sluice.process().wait_for_line("max_connections_per_source (20) reached").has_value());
}

TEST_CASE("allow/deny and max_connections_per_source apply to each new UDP flow")
{
    EchoBackend echo("udp-echo", "echo", "127.0.0.1:0", Transport::Udp);
    Sluice sluice(admission_config(echo.address(), R"(deny = ["127.0.0.3"]
max_connections_per_source = 1)",
                                   "", "127.0.0.1:0", "udp"));
    const std::uint16_t port = sluice.port("front");

    Fd first(udp_client("127.0.0.2"));
    CHECK(udp_round_trip(first, port, "one") == std::optional<std::string>("one"));
    Fd denied(udp_client("127.0.0.3"));
    CHECK_FALSE(udp_round_trip(denied, port, "two", 300ms));
    CHECK(wait_until([&] { return stat_of(sluice, "denied") == 1; }));
    Fd second_port(udp_client("127.0.0.2"));  // a second flow from the same IP
    CHECK_FALSE(udp_round_trip(second_port, port, "three", 300ms));
    CHECK(wait_until([&] { return stat_of(sluice, "source_limited") == 1; }));
    Fd other(udp_client("127.0.0.4"));
    CHECK(udp_round_trip(other, port, "four") == std::optional<std::string>("four"));
    // The admitted flow goes on.
    CHECK(udp_round_trip(first, port, "five") == std::optional<std::string>("five"));
}

TEST_CASE("tcp_keepalive is set on the client socket (listener) and the backend socket (pool)")
{
    CountingEcho echo;
    Sluice sluice(admission_config(echo.server.address(),
                                   R"(tcp_keepalive = { idle = "77s", interval = "5s", count = 3 })",
                                   R"(tcp_keepalive = { idle = "99s", interval = "5s", count = 3 })"));
    const std::uint16_t port = sluice.port("front");
    Fd client(connect_tcp(port));
    REQUIRE(echoes(client));
    const std::string sockets = established_sockets();
    INFO(sockets);
    // sluice's side of the client connection: local port = the listener's.
    CHECK(socket_line(sockets, port, true).find("timer:(keepalive,1min1") != std::string::npos);
    // sluice's backend connection: peer port = the backend's.
    CHECK(socket_line(sockets, echo.server.port(), false).find("timer:(keepalive,1min3") != std::string::npos);
    // The test's own client socket has none.
    CHECK(socket_line(sockets, port, false).find("keepalive") == std::string::npos);
}

TEST_CASE("without tcp_keepalive neither sluice socket has a keepalive timer")
{
    CountingEcho echo;
    Sluice sluice(admission_config(echo.server.address(), ""));
    const std::uint16_t port = sluice.port("front");
    Fd client(connect_tcp(port));
    REQUIRE(echoes(client));
    const std::string sockets = established_sockets();
    INFO(sockets);
    CHECK_FALSE(socket_line(sockets, port, true).empty());
    CHECK(socket_line(sockets, port, true).find("keepalive") == std::string::npos);
    CHECK(socket_line(sockets, echo.server.port(), false).find("keepalive") == std::string::npos);
}

namespace {

// A backend that reads until the client's FIN arrives and then neither
// writes nor closes until released: the server side never finishes.
struct SilentAfterFin {
    std::atomic<bool> release{false};
    std::atomic<int> got_fin{0};
    ScriptedServer server{[this](int fd) {
        char buf[4096];
        while (::recv(fd, buf, sizeof buf, 0) > 0) {
        }
        got_fin.fetch_add(1);
        wait_until([this] { return release.load(); }, 20s);
    }};
    ~SilentAfterFin() { release = true; }
};

// A backend that says "bye" and half-closes at once, then waits (reading)
// until released: the client is the side expected to finish.
struct ByeAtOnce {
    std::atomic<bool> release{false};
    ScriptedServer server{[this](int fd) {
        send_all(fd, "bye");
        ::shutdown(fd, SHUT_WR);
        wait_until([this] { return release.load(); }, 20s);
    }};
    ~ByeAtOnce() { release = true; }
};

} // namespace

TEST_CASE("server_fin_timeout ends a session whose backend does not finish after the client's FIN")
{
    SilentAfterFin backend;
    Sluice sluice(admission_config(backend.server.address(), "", R"(server_fin_timeout = "1s")"));
    Fd client(connect_tcp(sluice.port("front")));
    send_all(client, "hi");
    ::shutdown(client, SHUT_WR);
    REQUIRE(wait_until([&] { return backend.got_fin.load() == 1; }));
    const auto fin_at = Clock::now();
    set_receive_timeout(client, 8s);
    char byte;
    CHECK(::recv(client, &byte, 1, 0) == 0);  // sluice ended the session: EOF
    const auto waited = Clock::now() - fin_at;
    CHECK(waited >= 800ms);
    CHECK(waited < 4s);
    CHECK(wait_until([&] {
        return read_file(sluice.dir() + "/access.log").find("end=fin-timeout") != std::string::npos;
    }));
}

TEST_CASE("client_fin_timeout ends a session whose client does not finish after the backend's FIN")
{
    ByeAtOnce backend;
    Sluice sluice(admission_config(backend.server.address(), R"(client_fin_timeout = "1s")"));
    Fd client(connect_tcp(sluice.port("front")));
    CHECK(recv_until_eof(client) == "bye");
    const auto eof_at = Clock::now();
    // The client keeps its side open and silent.
    CHECK(wait_until([&] {
        return read_file(sluice.dir() + "/access.log").find("end=fin-timeout") != std::string::npos;
    }));
    const auto waited = Clock::now() - eof_at;
    CHECK(waited >= 800ms);
    CHECK(waited < 4s);
}

TEST_CASE("without the fin timeouts a half-closed session stays")
{
    SilentAfterFin backend;
    Sluice sluice(admission_config(backend.server.address(), ""));
    Fd client(connect_tcp(sluice.port("front")));
    send_all(client, "hi");
    ::shutdown(client, SHUT_WR);
    REQUIRE(wait_until([&] { return backend.got_fin.load() == 1; }));
    // Longer than the 1 s the tests above end such a session in.
    set_receive_timeout(client, 2s);
    char byte;
    CHECK(::recv(client, &byte, 1, 0) < 0);
    CHECK(errno == EAGAIN);
    AdminClient admin(sluice.dir() + "/admin.sock");
    CHECK(admin.command("show sessions").find("client-half-closed") != std::string::npos);
    CHECK(read_file(sluice.dir() + "/access.log").find(" end=") == std::string::npos);
}

TEST_CASE("a pool's source address is what the backend sees, for TCP and for UDP flows")
{
    SECTION("tcp")
    {
        std::mutex mutex;
        std::string peer_ip;
        ScriptedServer backend([&](int fd) {
            sockaddr_in peer{};
            socklen_t length = sizeof peer;
            ::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &length);
            char text[INET_ADDRSTRLEN] = {};
            ::inet_ntop(AF_INET, &peer.sin_addr, text, sizeof text);
            {
                std::lock_guard lock(mutex);
                peer_ip = text;
            }
            send_all(fd, "ok");
        });
        Sluice sluice(admission_config(backend.address(), "", R"(source = "127.0.0.9")"));
        Fd client(connect_tcp(sluice.port("front")));
        CHECK(recv_exact(client, 2) == "ok");
        std::lock_guard lock(mutex);
        CHECK(peer_ip == "127.0.0.9");
    }
    SECTION("udp")
    {
        std::uint16_t backend_port = 0;
        Fd backend(bind_loopback(SOCK_DGRAM, &backend_port));
        Sluice sluice(admission_config(fmt::format("127.0.0.1:{}", backend_port), "", R"(source = "127.0.0.9")",
                                       "127.0.0.1:0", "udp"));
        Fd client(udp_client("127.0.0.2"));
        CHECK_FALSE(udp_round_trip(client, sluice.port("front"), "hello", 10ms));  // no reply is sent
        set_receive_timeout(backend, 5s);
        char buf[64];
        sockaddr_in from{};
        socklen_t length = sizeof from;
        ssize_t n = ::recvfrom(backend, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &length);
        REQUIRE(n == 5);
        char text[INET_ADDRSTRLEN] = {};
        ::inet_ntop(AF_INET, &from.sin_addr, text, sizeof text);
        CHECK(std::string(text) == "127.0.0.9");
    }
}
