// The redis health check against real redis-server processes (a master with
// requirepass and its replica) and against hostile servers: drives
// start_health_check() on an EventLoop directly and asserts the exact verdict.
#include "harness.h"
#include "redis_server.h"

#include "sluice/event_loop.h"
#include "sluice/health_check.h"

#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>

using namespace sluice;
using namespace sluice::test;
using Role = HealthCheckConfig::Role;

namespace {

#define REQUIRE_REDIS()                                                                      \
    do {                                                                                     \
        if (!RedisServer::available()) {                                                     \
            WARN("SKIPPED: " << RedisServer::binary() << " is not installed (scripts/setup)"); \
            return;                                                                          \
        }                                                                                    \
    } while (false)

HealthCheckConfig redis_check(Role role = Role::Any, std::string password = {})
{
    HealthCheckConfig config;
    config.kind = HealthCheckConfig::Kind::Redis;
    config.role = role;
    config.password = std::move(password);
    return config;
}

SocketAddress loopback(std::uint16_t port) { return *SocketAddress::from_ip("127.0.0.1", port); }

// One probe on its own loop, as the prober runs it: the check is destroyed
// after `done`, never under it. nullopt when no verdict came within `wait`;
// the check is destroyed then too (the prober's deadline).
std::optional<HealthCheckResult> probe(const HealthCheckConfig& config, const SocketAddress& target,
                                       std::chrono::milliseconds wait = 10s)
{
    EventLoop loop;
    std::optional<HealthCheckResult> result;
    std::unique_ptr<HealthCheck> check = start_health_check(loop, config, target, [&](HealthCheckResult verdict) {
        result = std::move(verdict);
        loop.break_loop();
    });
    if (!result) {
        ev_timer deadline;
        ev_timer_init(&deadline, [](struct ev_loop* raw, ev_timer*, int) { ev_break(raw, EVBREAK_ONE); },
                      std::chrono::duration<double>(wait).count(), 0.);
        ev_timer_start(loop.raw(), &deadline);
        loop.run();
        ev_timer_stop(loop.raw(), &deadline);
    }
    check.reset();
    return result;
}

void check_verdict(const std::optional<HealthCheckResult>& result, bool passed, HealthReason reason,
                   const std::string& detail, BackendRole role = BackendRole::Unknown)
{
    REQUIRE(result);
    INFO("detail: " << result->detail);
    CHECK(result->passed == passed);
    CHECK(result->reason == reason);
    CHECK(result->detail == detail);
    CHECK(result->role == role);
}

std::size_t my_sockets() { return open_socket_count(::getpid()); }

} // namespace

TEST_CASE("redis check passes a master and a replica for the role each is")
{
    REQUIRE_REDIS();
    RedisServer master(redis_master("s3cret"));
    RedisServer replica(redis_replica("s3cret", master.port()));

    check_verdict(probe(redis_check(Role::Primary, "s3cret"), loopback(master.port())), true, HealthReason::None,
                  "role:master", BackendRole::Primary);
    check_verdict(probe(redis_check(Role::Replica, "s3cret"), loopback(replica.port())), true, HealthReason::None,
                  "role:slave, master_link_status:up", BackendRole::Replica);
    // role any: both pass, each saying what it is.
    check_verdict(probe(redis_check(Role::Any, "s3cret"), loopback(master.port())), true, HealthReason::None,
                  "role:master", BackendRole::Primary);
    check_verdict(probe(redis_check(Role::Any, "s3cret"), loopback(replica.port())), true, HealthReason::None,
                  "role:slave, master_link_status:up", BackendRole::Replica);
}

TEST_CASE("redis check fails a master where a replica is wanted, and the reverse")
{
    REQUIRE_REDIS();
    RedisServer master(redis_master("s3cret"));
    RedisServer replica(redis_replica("s3cret", master.port()));

    check_verdict(probe(redis_check(Role::Replica, "s3cret"), loopback(master.port())), false,
                  HealthReason::WrongRole, "role:master", BackendRole::Primary);
    check_verdict(probe(redis_check(Role::Primary, "s3cret"), loopback(replica.port())), false,
                  HealthReason::WrongRole, "role:slave, master_link_status:up", BackendRole::Replica);
}

TEST_CASE("redis check fails a replica whose link is down or that lags more than max_lag")
{
    REQUIRE_REDIS();
    RedisServer master(redis_master("s3cret"));
    // The master pings its replicas every repl-ping-replica-period: slow it
    // so master_last_io_seconds_ago grows on an idle link.
    REQUIRE(master.command({"CONFIG", "SET", "repl-ping-replica-period", "60"}) == "+OK");
    RedisServer replica(redis_replica("s3cret", master.port()));

    HealthCheckConfig lenient = redis_check(Role::Replica, "s3cret");
    lenient.max_lag = std::chrono::seconds(60);
    auto result = probe(lenient, loopback(replica.port()));
    REQUIRE(result);
    CHECK(result->passed);
    CHECK(result->detail.starts_with("role:slave, master_link_status:up, master_last_io_seconds_ago:"));

    REQUIRE(wait_until([&] { return std::stoi("0" + replica.info_field("replication", "master_last_io_seconds_ago")) >= 2; },
                       10s));
    HealthCheckConfig strict = redis_check(Role::Replica, "s3cret");
    strict.max_lag = std::chrono::seconds(1);
    result = probe(strict, loopback(replica.port()));
    REQUIRE(result);
    INFO(result->detail);
    CHECK_FALSE(result->passed);
    CHECK(result->reason == HealthReason::Lagging);
    CHECK(result->role == BackendRole::Replica);
    CHECK(result->detail.starts_with("role:slave, master_link_status:up, master_last_io_seconds_ago:"));

    // Its master gone, the replica's link goes down: not a replica to read from.
    master.process().send_signal(SIGKILL);
    REQUIRE(master.process().wait_exit());
    REQUIRE(wait_until([&] { return replica.info_field("replication", "master_link_status") == "down"; }));
    check_verdict(probe(redis_check(Role::Replica, "s3cret"), loopback(replica.port())), false,
                  HealthReason::Lagging, "role:slave, master_link_status:down", BackendRole::Replica);
    // role any without max_lag does not care about the link.
    check_verdict(probe(redis_check(Role::Any, "s3cret"), loopback(replica.port())), true, HealthReason::None,
                  "role:slave, master_link_status:down", BackendRole::Replica);
}

TEST_CASE("redis check reports a refused login in the server's words")
{
    REQUIRE_REDIS();
    RedisServer master(redis_master("s3cret"));
    check_verdict(probe(redis_check(Role::Primary, "wrong"), loopback(master.port())), false,
                  HealthReason::AuthFailed, "WRONGPASS invalid username-password pair or user is disabled.");
    check_verdict(probe(redis_check(Role::Primary), loopback(master.port())), false, HealthReason::AuthFailed,
                  "NOAUTH Authentication required.");

    // An ACL user: AUTH user password, sent as separate arguments.
    REQUIRE(master.command({"ACL", "SETUSER", "monitor", "on", ">p w\r\n\"x", "+ping", "+info", "+quit"}) == "+OK");
    HealthCheckConfig acl = redis_check(Role::Primary, "p w\r\n\"x");
    acl.user = "monitor";
    check_verdict(probe(acl, loopback(master.port())), true, HealthReason::None, "role:master",
                  BackendRole::Primary);
    acl.password = "p w";
    check_verdict(probe(acl, loopback(master.port())), false, HealthReason::AuthFailed,
                  "WRONGPASS invalid username-password pair or user is disabled.");
}

TEST_CASE("redis check reports a refused connection")
{
    check_verdict(probe(redis_check(Role::Primary), loopback(unused_port())), false,
                  HealthReason::ConnectionRefused, "connection refused");
}

TEST_CASE("redis check logs out with QUIT after every probe")
{
    REQUIRE_REDIS();
    RedisServer master(redis_master("s3cret"));
    // loglevel verbose logs every accepted connection, and a client that
    // leaves without QUIT as "Client closed connection"; one that QUITs is
    // closed by the server without a word.
    const std::size_t accepted = master.count_log_lines("Accepted 127.0.0.1:");
    const std::size_t unclean = master.count_log_lines("Client closed connection");
    constexpr std::size_t kProbes = 300;
    std::size_t passed = 0;
    for (std::size_t i = 0; i < kProbes; ++i) {
        auto result = probe(redis_check(Role::Primary, "s3cret"), loopback(master.port()));
        passed += result && result->passed;
    }
    CHECK(passed == kProbes);
    // The server has logged what it saw once it answers this (its log is in order).
    REQUIRE(master.command({"PING"}) == "+PONG");
    CHECK(wait_until([&] { return master.count_log_lines("Accepted 127.0.0.1:") >= accepted + kProbes + 1; }));
    CHECK(master.count_log_lines("Client closed connection") == unclean);
}

TEST_CASE("redis check reports -LOADING in the server's words")
{
    ScriptedServer loading([](int fd) {
        std::string got;
        char buffer[512];
        while (got.find("QUIT") == std::string::npos) {
            ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
            if (n <= 0)
                return;
            got.append(buffer, static_cast<std::size_t>(n));
        }
        send_all(fd, "-LOADING Redis is loading the dataset in memory\r\n"
                     "-LOADING Redis is loading the dataset in memory\r\n+OK\r\n");
    });
    check_verdict(probe(redis_check(Role::Primary), loopback(loading.port())), false, HealthReason::BadReply,
                  "expect mismatch: got \"-LOADING Redis is loading the dataset in memory\"");
}

TEST_CASE("redis check against a server that never answers waits, and its destruction closes the socket")
{
    std::atomic<int> accepted{0};
    ScriptedServer silent([&](int fd) {
        ++accepted;
        char buffer[512];
        while (::recv(fd, buffer, sizeof buffer, 0) > 0) {
        }
    });
    const std::size_t sockets_before = my_sockets();
    auto result = probe(redis_check(Role::Primary, "pw"), loopback(silent.port()), 500ms);
    CHECK_FALSE(result);  // no verdict: the prober's deadline decides
    CHECK(accepted == 1);
    // The server's end closes once it sees ours close.
    CHECK(wait_until([&] { return my_sockets() == sockets_before; }));
}

TEST_CASE("redis check fails cleanly on random bytes")
{
    ScriptedServer noisy([](int fd) {
        // \x01 is no RESP type byte; the rest is noise.
        send_all(fd, "\x01" + random_bytes(4096, 17));
        char buffer[512];
        while (::recv(fd, buffer, sizeof buffer, 0) > 0) {
        }
    });
    const std::size_t sockets_before = my_sockets();
    check_verdict(probe(redis_check(Role::Primary), loopback(noisy.port())), false, HealthReason::BadReply,
                  "Protocol error, got \"\\x01\" as reply type byte");
    // The server's end closes once it sees ours close.
    CHECK(wait_until([&] { return my_sockets() == sockets_before; }));
}

TEST_CASE("redis check fails cleanly when the server closes mid-conversation")
{
    ScriptedServer closer([](int fd) {
        // Answers PING, then hangs up before INFO.
        std::string got;
        char buffer[512];
        while (got.find("QUIT") == std::string::npos) {
            ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
            if (n <= 0)
                return;
            got.append(buffer, static_cast<std::size_t>(n));
        }
        send_all(fd, "+PONG\r\n");
        ::shutdown(fd, SHUT_WR);
        while (::recv(fd, buffer, sizeof buffer, 0) > 0) {
        }
    });
    const std::size_t sockets_before = my_sockets();
    check_verdict(probe(redis_check(Role::Primary), loopback(closer.port())), false, HealthReason::BadReply,
                  "server closed the connection");
    // The server's end closes once it sees ours close.
    CHECK(wait_until([&] { return my_sockets() == sockets_before; }));
}

TEST_CASE("redis check stops reading a 100 MB answer at 1 MiB")
{
    std::atomic<std::size_t> sent{0};
    ScriptedServer flood([&](int fd) {
        // One bulk string of 100 MB: hiredis alone would buffer all of it.
        constexpr std::size_t kTotal = 100u << 20;
        std::string header = "$" + std::to_string(kTotal) + "\r\n";
        ::send(fd, header.data(), header.size(), MSG_NOSIGNAL);
        std::string chunk(64 * 1024, 'x');
        while (sent < kTotal) {
            ssize_t n = ::send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL);
            if (n <= 0)
                return;  // the check hung up
            sent += static_cast<std::size_t>(n);
        }
    });
    const std::size_t sockets_before = my_sockets();
    check_verdict(probe(redis_check(Role::Primary), loopback(flood.port())), false, HealthReason::BadReply,
                  "reply longer than 1024 KiB");
    // The server's end closes once it sees ours close.
    CHECK(wait_until([&] { return my_sockets() == sockets_before; }));
    // What the server got out before the check hung up: what the check read
    // plus the sockets' buffers, far from 100 MB.
    CHECK(wait_until([&] { return sent.load() > 0; }));
    INFO("sent " << sent.load());
    CHECK(sent.load() < (20u << 20));
}
