// The mysql health check against real MariaDB servers and hostile impostors,
// driven directly on an EventLoop (no prober): exact verdicts, clean
// logouts, cancellation that closes the socket.
#include "harness.h"
#include "mysql_server.h"

#include "sluice/event_loop.h"
#include "sluice/health_check.h"

#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <optional>

using namespace sluice;
using namespace sluice::test;

namespace {

// One probe on its own loop: the verdict, or nullopt when the check had not
// answered when `deadline` passed (then the check was destroyed, as the
// prober does).
class Probe {
public:
    explicit Probe(const HealthCheckConfig& config, std::uint16_t port, std::chrono::milliseconds deadline = 10s)
    {
        auto target = SocketAddress::from_ip("127.0.0.1", port);
        REQUIRE(target);
        deadline_.bind<Probe, &Probe::on_deadline>(loop_, this);
        deadline_.start(static_cast<double>(deadline.count()) / 1000.);
        check_ = start_health_check(loop_, config, *target, [this](HealthCheckResult result) {
            result_ = std::move(result);
            loop_.break_loop();
        });
        if (!result_)
            loop_.run();
        deadline_.stop();
        check_.reset();
    }

    std::optional<HealthCheckResult> result_;

private:
    void on_deadline() { loop_.break_loop(); }

    EventLoop loop_;
    TimerWatcher deadline_;
    std::unique_ptr<HealthCheck> check_;
};

HealthCheckConfig mysql_check(HealthCheckConfig::Role role = HealthCheckConfig::Role::Any,
                              std::string password = "s3cret-monitor")
{
    HealthCheckConfig config;
    config.kind = HealthCheckConfig::Kind::Mysql;
    config.role = role;
    config.user = "monitor";
    config.password = std::move(password);
    return config;
}

HealthCheckResult probe(const HealthCheckConfig& config, std::uint16_t port)
{
    Probe run(config, port);
    REQUIRE(run.result_);
    return *run.result_;
}

// One server for the whole file (starting one costs seconds); each test
// sets the read_only it needs.
MysqlServer& shared_server()
{
    static std::unique_ptr<MysqlServer> server;
    if (!server) {
        server = std::make_unique<MysqlServer>();
        server->create_user("monitor", "s3cret-monitor");
    }
    return *server;
}

#define REQUIRE_MARIADB()                                                                       \
    do {                                                                                        \
        if (!MysqlServer::available()) {                                                        \
            WARN("SKIPPED: " << MysqlServer::missing());                                        \
            return;                                                                             \
        }                                                                                       \
    } while (false)

std::size_t open_sockets() { return open_socket_count(::getpid()); }

using Role = HealthCheckConfig::Role;

} // namespace

TEST_CASE("a primary (read_only = 0) passes a primary check and fails a replica check")
{
    REQUIRE_MARIADB();
    MysqlServer& server = shared_server();
    server.sql("SET GLOBAL read_only = 0");

    HealthCheckResult primary = probe(mysql_check(Role::Primary), server.port());
    CHECK(primary.passed);
    CHECK(primary.reason == HealthReason::None);
    CHECK(primary.detail == "primary (read_only = 0)");
    CHECK(primary.role == BackendRole::Primary);

    HealthCheckResult replica = probe(mysql_check(Role::Replica), server.port());
    CHECK_FALSE(replica.passed);
    CHECK(replica.reason == HealthReason::WrongRole);
    CHECK(replica.detail == "primary (read_only = 0)");
    CHECK(replica.role == BackendRole::Primary);
}

TEST_CASE("SET GLOBAL read_only = 1 makes a replica for the check; role any passes both")
{
    REQUIRE_MARIADB();
    MysqlServer& server = shared_server();
    server.sql("SET GLOBAL read_only = 1");

    HealthCheckResult replica = probe(mysql_check(Role::Replica), server.port());
    CHECK(replica.passed);
    CHECK(replica.detail == "replica (read_only = 1)");
    CHECK(replica.role == BackendRole::Replica);

    HealthCheckResult primary = probe(mysql_check(Role::Primary), server.port());
    CHECK_FALSE(primary.passed);
    CHECK(primary.reason == HealthReason::WrongRole);
    CHECK(primary.detail == "replica (read_only = 1)");

    HealthCheckResult any = probe(mysql_check(Role::Any), server.port());
    CHECK(any.passed);
    CHECK(any.detail == "replica (read_only = 1)");
    CHECK(any.role == BackendRole::Replica);

    server.sql("SET GLOBAL read_only = 0");
    any = probe(mysql_check(Role::Any), server.port());
    CHECK(any.passed);
    CHECK(any.detail == "primary (read_only = 0)");
    CHECK(any.role == BackendRole::Primary);
}

TEST_CASE("max_lag reads Seconds_Behind_Master: not replicating and stopped replication fail, a caught-up replica passes")
{
    REQUIRE_MARIADB();
    MysqlServer& primary = shared_server();
    primary.sql("SET GLOBAL read_only = 0");
    MysqlServer replica;
    replica.create_user("monitor", "s3cret-monitor");
    replica.sql("SET GLOBAL read_only = 1");
    HealthCheckConfig config = mysql_check(Role::Replica);
    config.max_lag = 5000ms;

    HealthCheckResult alone = probe(config, replica.port());
    CHECK_FALSE(alone.passed);
    CHECK(alone.reason == HealthReason::Lagging);
    CHECK(alone.detail == "replica (read_only = 1), not replicating (SHOW SLAVE STATUS is empty)");
    CHECK(alone.role == BackendRole::Replica);

    primary.sql("CREATE USER IF NOT EXISTS 'repl'@'%' IDENTIFIED BY 'repl-pw'; "
                "GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%'; DROP DATABASE IF EXISTS lagtest");
    // From the primary's current position: its earlier events (CREATE USER
    // monitor) exist on the replica already.
    const std::string position = primary.sql("SHOW MASTER STATUS");
    const auto tab = position.find('\t');
    REQUIRE(tab != std::string::npos);
    const std::string file = position.substr(0, tab);
    const long offset = std::strtol(position.c_str() + tab + 1, nullptr, 10);
    replica.sql("CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = " + std::to_string(primary.port())
                + ", MASTER_USER = 'repl', MASTER_PASSWORD = 'repl-pw', MASTER_USE_GTID = no, MASTER_LOG_FILE = '"
                + file + "', MASTER_LOG_POS = " + std::to_string(offset));
    HealthCheckResult stopped = probe(config, replica.port());
    CHECK_FALSE(stopped.passed);
    CHECK(stopped.reason == HealthReason::Lagging);
    CHECK(stopped.detail == "replica (read_only = 1), replication not running (Seconds_Behind_Master = NULL)");

    replica.sql("START SLAVE");
    primary.sql("CREATE DATABASE IF NOT EXISTS lagtest");
    const bool replicated = wait_until([&] { return replica.sql("SHOW DATABASES LIKE 'lagtest'") == "lagtest\n"; }, 30s);
    INFO(replica.sql("SHOW SLAVE STATUS"));
    REQUIRE(replicated);
    HealthCheckResult running = probe(config, replica.port());
    CHECK(running.passed);
    CHECK(running.detail == "replica (read_only = 1), Seconds_Behind_Master = 0");
    CHECK(running.role == BackendRole::Replica);

    // A primary is not asked for its lag.
    HealthCheckConfig any = config;
    any.role = Role::Any;
    HealthCheckResult on_primary = probe(any, primary.port());
    CHECK(on_primary.passed);
    CHECK(on_primary.detail == "primary (read_only = 0)");
    replica.sql("STOP SLAVE");
}

TEST_CASE("a wrong password fails with AuthFailed and the server's words")
{
    REQUIRE_MARIADB();
    MysqlServer& server = shared_server();
    HealthCheckResult result = probe(mysql_check(Role::Any, "wrong"), server.port());
    CHECK_FALSE(result.passed);
    CHECK(result.reason == HealthReason::AuthFailed);
    CHECK(result.detail == "Access denied for user 'monitor'@'127.0.0.1' (using password: YES)");
}

TEST_CASE("a port nothing listens on fails with ConnectionRefused")
{
    HealthCheckResult result = probe(mysql_check(), unused_port());
    CHECK_FALSE(result.passed);
    CHECK(result.reason == HealthReason::ConnectionRefused);
    CHECK(result.detail == "connection refused");
    CHECK(result.role == BackendRole::Unknown);
}

TEST_CASE("hundreds of probes log out cleanly: no aborted connects or clients, no descriptor left")
{
    REQUIRE_MARIADB();
    MysqlServer& server = shared_server();
    server.sql("SET GLOBAL read_only = 0");
    const long connects_before = server.status("Aborted_connects");
    const long clients_before = server.status("Aborted_clients");
    const long connections_before = server.status("Connections");
    const std::size_t sockets_before = open_sockets();
    constexpr int kProbes = 300;
    int passed = 0;
    for (int i = 0; i < kProbes; ++i)
        passed += probe(mysql_check(Role::Primary), server.port()).passed ? 1 : 0;
    CHECK(passed == kProbes);
    CHECK(open_sockets() == sockets_before);
    // The status queries themselves are connections (over the unix socket).
    CHECK(server.status("Connections") - connections_before >= kProbes);
    CHECK(server.status("Aborted_connects") == connects_before);
    CHECK(server.status("Aborted_clients") == clients_before);
}

TEST_CASE("a server that accepts and never answers: the check waits, and destroying it closes its socket")
{
    std::atomic<int> saw_close{0};
    const std::size_t sockets_before = open_sockets();
    {
        ScriptedServer silent([&](int fd) {
            char byte;
            if (::recv(fd, &byte, 1, 0) == 0)  // the client says nothing first in this protocol
                saw_close.fetch_add(1);
        });
        Probe run(mysql_check(), silent.port(), 500ms);
        CHECK_FALSE(run.result_);  // still waiting for the greeting when the deadline came
        CHECK(wait_until([&] { return saw_close.load() == 1; }, 5s));
    }
    CHECK(open_sockets() == sockets_before);
}

TEST_CASE("a server that sends random bytes fails cleanly")
{
    const std::size_t sockets_before = open_sockets();
    {
        ScriptedServer noisy([](int fd) {
            std::string noise = random_bytes(4096, 17);
            ::send(fd, noise.data(), noise.size(), MSG_NOSIGNAL);
            char buffer[256];
            while (::recv(fd, buffer, sizeof buffer, 0) > 0) {
            }
        });
        HealthCheckResult result = probe(mysql_check(), noisy.port());
        CHECK_FALSE(result.passed);
        CHECK(result.reason == HealthReason::BadReply);
        CHECK(result.detail == "Lost connection to server at 'handshake: reading initial communication packet'");
    }
    CHECK(open_sockets() == sockets_before);
}

TEST_CASE("a server that closes mid-handshake fails cleanly")
{
    const std::size_t sockets_before = open_sockets();
    {
        ScriptedServer quitter([](int fd) {
            // The start of a greeting: a 90-byte packet, protocol 10, a version...
            const std::string partial("\x5a\x00\x00\x00\x0a" "10.11.0-MariaDB", 20);
            ::send(fd, partial.data(), partial.size(), MSG_NOSIGNAL);
        });
        HealthCheckResult result = probe(mysql_check(), quitter.port());
        CHECK_FALSE(result.passed);
        CHECK(result.reason == HealthReason::BadReply);
        CHECK(result.detail == "Lost connection to server at 'handshake: reading initial communication packet'");
    }
    CHECK(open_sockets() == sockets_before);
}

TEST_CASE("a server that answers 100 MB fails without buffering it")
{
    std::atomic<std::size_t> sent{0};
    const std::size_t sockets_before = open_sockets();
    const long rss_before = rss_kib(::getpid());
    {
        ScriptedServer flood([&](int fd) {
            std::string chunk(1 << 20, '\xff');  // a header saying "16 MB packet", then more of the same
            for (int i = 0; i < 100; ++i) {
                ssize_t n = ::send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL);
                if (n <= 0)
                    return;
                sent.fetch_add(static_cast<std::size_t>(n));
            }
        });
        HealthCheckResult result = probe(mysql_check(), flood.port());
        CHECK_FALSE(result.passed);
        CHECK(result.reason == HealthReason::BadReply);
        CHECK(result.detail == "Lost connection to server at 'handshake: reading initial communication packet'");
    }
    CHECK(sent.load() < 100u << 20);
    CHECK(rss_kib(::getpid()) - rss_before < 16 * 1024);
    CHECK(open_sockets() == sockets_before);
}

namespace {

// A MySQL packet: 3-byte little-endian length, sequence number, payload.
std::string packet(std::uint8_t sequence, const std::string& payload)
{
    std::string out;
    out += static_cast<char>(payload.size() & 0xff);
    out += static_cast<char>((payload.size() >> 8) & 0xff);
    out += static_cast<char>((payload.size() >> 16) & 0xff);
    out += static_cast<char>(sequence);
    return out + payload;
}

// A protocol-10 greeting offering mysql_native_password, any password taken.
std::string greeting()
{
    using namespace std::string_literals;
    std::string payload = "\x0a"s + "5.5.5-10.11.0-MariaDB"s + '\0';
    payload += "\x01\x00\x00\x00"s;           // connection id
    payload += "abcdefgh"s + '\0';            // scramble, first 8 bytes, filler
    payload += "\x01\xa2"s;                   // capabilities: long password, 4.1 protocol, transactions, secure connection
    payload += "\x21\x02\x00"s;               // utf8, autocommit status
    payload += "\x08\x00"s;                   // capabilities, upper half: plugin auth
    payload += "\x15"s + std::string(10, '\0');
    payload += "ijklmnopqrst"s + '\0';        // scramble, last 12 bytes
    payload += "mysql_native_password"s + '\0';
    return packet(0, payload);
}

} // namespace

TEST_CASE("a server that logs the check in and never answers its query: destroying the check does not wait")
{
    std::atomic<int> queries{0};
    std::atomic<int> saw_close{0};
    const std::size_t sockets_before = open_sockets();
    {
        ScriptedServer mute([&](int fd) {
            std::string hello = greeting();
            ::send(fd, hello.data(), hello.size(), MSG_NOSIGNAL);
            char buffer[4096];
            if (::recv(fd, buffer, sizeof buffer, 0) <= 0)  // the login
                return;
            const std::string ok = packet(2, std::string("\x00\x00\x00\x02\x00\x00\x00", 7));
            ::send(fd, ok.data(), ok.size(), MSG_NOSIGNAL);
            ssize_t got = ::recv(fd, buffer, sizeof buffer, 0);  // the query, never answered
            if (got > 4 && buffer[4] == 0x03)                    // COM_QUERY
                queries.fetch_add(1);
            while ((got = ::recv(fd, buffer, sizeof buffer, 0)) > 0) {
            }
            if (got == 0)
                saw_close.fetch_add(1);
        });
        const auto start = Clock::now();
        Probe run(mysql_check(), mute.port(), 500ms);
        const auto took = Clock::now() - start;
        CHECK_FALSE(run.result_);
        CHECK(queries.load() == 1);
        // The probe ran 500 ms; its destruction (COM_QUIT on a shut-down
        // socket) added no wait of its own.
        CHECK(took < 700ms);
        CHECK(wait_until([&] { return saw_close.load() == 1; }, 5s));
    }
    CHECK(open_sockets() == sockets_before);
}
