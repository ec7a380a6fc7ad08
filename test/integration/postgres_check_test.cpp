// The postgres health check (issue 17) against real PostgreSQL servers, a
// primary and its streaming replica started in temporary folders, and
// against hostile servers: each probe is driven by start_health_check() on an
// EventLoop of the test's own, and its HealthCheckResult is asserted whole.
#include "harness.h"
#include "postgres_server.h"

#include "sluice/event_loop.h"
#include "sluice/health_check.h"

#include <catch2/catch.hpp>
#include <libpq-fe.h>

#include <arpa/inet.h>
#include <atomic>
#include <filesystem>
#include <regex>
#include <sys/socket.h>

using namespace sluice;
using namespace sluice::test;

namespace {

// One probe on a loop of its own, run until its verdict or a deadline.
class Probe {
public:
    Probe() { deadline_.bind<Probe, &Probe::on_deadline>(loop_, this); }
    Probe(const HealthCheckConfig& config, const std::string& address) : Probe() { start(config, address); }

    void start(const HealthCheckConfig& config, const std::string& address)
    {
        auto target = SocketAddress::parse(address);
        REQUIRE(target);
        check_ = start_health_check(loop_, config, *target, [this](HealthCheckResult result) {
            result_ = std::move(result);
            loop_.break_loop();
        });
    }

    // Runs the loop until the check calls done or `deadline` passes; the
    // verdict, or nullopt if there was none by then (the check stays alive).
    std::optional<HealthCheckResult> wait(std::chrono::milliseconds deadline = 10s)
    {
        if (!result_) {
            deadline_.start(std::chrono::duration<double>(deadline).count());
            loop_.run();
            deadline_.stop();
        }
        return result_;
    }

    // Cancels the check, as the prober does at its timeout.
    void destroy() { check_.reset(); }

private:
    void on_deadline() { loop_.break_loop(); }

    EventLoop loop_;
    TimerWatcher deadline_;
    std::optional<HealthCheckResult> result_;
    std::unique_ptr<HealthCheck> check_;
};

HealthCheckResult probe(const HealthCheckConfig& config, const std::string& address)
{
    auto result = Probe(config, address).wait();
    REQUIRE(result);
    return *result;
}

HealthCheckConfig postgres_check(HealthCheckConfig::Role role, std::string password = "secret")
{
    HealthCheckConfig config;
    config.kind = HealthCheckConfig::Kind::Postgres;
    config.role = role;
    config.user = "monitor";
    config.password = std::move(password);
    config.database = "postgres";
    return config;
}

std::size_t open_fds() { return open_fd_count(::getpid(), ""); }

// A primary (logging at debug1 with disconnections, so an unclean logout
// shows as "unexpected EOF on client connection") and its streaming replica,
// shared by the tests of this file; started on first use.
struct Cluster {
    std::unique_ptr<PostgresServer> primary;
    std::unique_ptr<PostgresServer> replica;
};

Cluster* cluster()
{
    static Cluster shared;
    if (!shared.primary) {
        shared.primary = PostgresServer::start_primary({"log_min_messages = debug1\nlog_disconnections = on"});
        shared.replica = PostgresServer::start_replica(*shared.primary);
    }
    return &shared;
}

#define REQUIRE_POSTGRES()                                                                                  \
    do {                                                                                                    \
        std::string why;                                                                                    \
        if (PostgresServer::bin_dir(&why).empty()) {                                                        \
            WARN("SKIPPED: " << why);                                                                       \
            return;                                                                                         \
        }                                                                                                   \
    } while (false)

void check_result(const HealthCheckResult& result, bool passed, HealthReason reason, const std::string& detail,
                  BackendRole role)
{
    INFO("detail: " << result.detail);
    CHECK(result.passed == passed);
    CHECK(to_string(result.reason) == to_string(reason));
    CHECK(result.detail == detail);
    CHECK(to_string(result.role) == to_string(role));
    CHECK_FALSE(result.local_shortage);
}

// Sends `bytes` until done or the peer goes away; returns how many were sent.
std::size_t send_counted(int fd, std::string_view bytes)
{
    std::size_t sent = 0;
    while (sent < bytes.size()) {
        ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
        if (n <= 0)
            break;
        sent += static_cast<std::size_t>(n);
    }
    return sent;
}

// libpq's first bytes: an SSLRequest (sslmode prefer), 8 bytes.
bool read_ssl_request(int fd) { return recv_exact(fd, 8).size() == 8; }

// The startup packet: a 4-byte length and the rest.
bool read_startup_packet(int fd)
{
    std::string length = recv_exact(fd, 4);
    if (length.size() != 4)
        return false;
    std::uint32_t n = ntohl(*reinterpret_cast<const std::uint32_t*>(length.data()));
    return n >= 8 && n < 10000 && recv_exact(fd, n - 4).size() == n - 4;
}

std::string message(char type, std::string_view body)
{
    std::uint32_t length = htonl(static_cast<std::uint32_t>(body.size() + 4));
    std::string out(1, type);
    out.append(reinterpret_cast<const char*>(&length), 4);
    out.append(body);
    return out;
}

} // namespace

TEST_CASE("a postgres check passes the primary as primary and the replica as replica, in pg_is_in_recovery's words")
{
    REQUIRE_POSTGRES();
    Cluster* c = cluster();
    check_result(probe(postgres_check(HealthCheckConfig::Role::Primary), c->primary->address()), true,
                 HealthReason::None, "primary (pg_is_in_recovery = false)", BackendRole::Primary);
    check_result(probe(postgres_check(HealthCheckConfig::Role::Replica), c->replica->address()), true,
                 HealthReason::None, "replica (pg_is_in_recovery = true)", BackendRole::Replica);
}

TEST_CASE("a postgres check fails the wrong role with WrongRole and says what the server is")
{
    REQUIRE_POSTGRES();
    Cluster* c = cluster();
    check_result(probe(postgres_check(HealthCheckConfig::Role::Replica), c->primary->address()), false,
                 HealthReason::WrongRole, "primary (pg_is_in_recovery = false)", BackendRole::Primary);
    check_result(probe(postgres_check(HealthCheckConfig::Role::Primary), c->replica->address()), false,
                 HealthReason::WrongRole, "replica (pg_is_in_recovery = true)", BackendRole::Replica);
}

TEST_CASE("a postgres check with role any passes both and reports the role each claimed")
{
    REQUIRE_POSTGRES();
    Cluster* c = cluster();
    check_result(probe(postgres_check(HealthCheckConfig::Role::Any), c->primary->address()), true,
                 HealthReason::None, "primary (pg_is_in_recovery = false)", BackendRole::Primary);
    check_result(probe(postgres_check(HealthCheckConfig::Role::Any), c->replica->address()), true,
                 HealthReason::None, "replica (pg_is_in_recovery = true)", BackendRole::Replica);
}

TEST_CASE("a postgres check fails a replica whose replay trails by more than max_lag, and passes it once caught up")
{
    REQUIRE_POSTGRES();
    Cluster* c = cluster();
    HealthCheckConfig config = postgres_check(HealthCheckConfig::Role::Replica);
    config.max_lag = std::chrono::milliseconds(1000);

    // Caught up: everything received is replayed, lag 0.
    c->primary->query("CREATE TABLE IF NOT EXISTS lag_probe (n int)");
    std::string lsn = c->primary->query("SELECT pg_current_wal_lsn()");
    REQUIRE(wait_until([&] {
        return c->replica->query("SELECT pg_last_wal_replay_lsn() >= '" + lsn + "'::pg_lsn") == "t";
    }));
    check_result(probe(config, c->replica->address()), true, HealthReason::None,
                 "replica (pg_is_in_recovery = true), lag 0.0 s", BackendRole::Replica);

    // Replay paused while the primary writes: received but not replayed, and
    // the last replayed transaction grows older than max_lag.
    c->replica->query("SELECT pg_wal_replay_pause()");
    c->primary->query("INSERT INTO lag_probe VALUES (1)");
    std::optional<HealthCheckResult> lagging;
    bool seen = wait_until(
        [&] {
            lagging = probe(config, c->replica->address());
            return !lagging->passed;
        },
        15s);
    c->replica->query("SELECT pg_wal_replay_resume()");
    REQUIRE(seen);
    INFO(lagging->detail);
    CHECK(to_string(lagging->reason) == to_string(HealthReason::Lagging));
    CHECK(to_string(lagging->role) == "replica");
    CHECK(std::regex_match(lagging->detail,
                           std::regex(R"(replica \(pg_is_in_recovery = true\), lag [0-9]+\.[0-9] s > max_lag 1 s)")));

    REQUIRE(wait_until([&] { return probe(config, c->replica->address()).passed; }, 15s));
}

TEST_CASE("a postgres check with a wrong password fails with AuthFailed in the server's words")
{
    REQUIRE_POSTGRES();
    Cluster* c = cluster();
    check_result(probe(postgres_check(HealthCheckConfig::Role::Primary, "wrong"), c->primary->address()), false,
                 HealthReason::AuthFailed, "password authentication failed for user \"monitor\"",
                 BackendRole::Unknown);
}

TEST_CASE("a postgres check of a port nobody listens on fails with ConnectionRefused")
{
    check_result(probe(postgres_check(HealthCheckConfig::Role::Primary),
                       "127.0.0.1:" + std::to_string(unused_port())),
                 false, HealthReason::ConnectionRefused, "connection refused", BackendRole::Unknown);
}

TEST_CASE("hundreds of postgres checks log out cleanly: the server logs no unexpected EOF")
{
    REQUIRE_POSTGRES();
    Cluster* c = cluster();
    Process& log = c->primary->process();
    auto unclean = [&] { return log.count_lines("unexpected EOF") + log.count_lines("could not receive data"); };
    const std::size_t unclean_before = unclean();
    const std::size_t disconnections_before = log.count_lines("disconnection: session time");
    const std::size_t fds_before = open_fds();

    constexpr int kProbes = 200;
    for (int i = 0; i < kProbes; ++i)
        REQUIRE(probe(postgres_check(HealthCheckConfig::Role::Primary), c->primary->address()).passed);
    // Every session has ended and been logged before the log is judged.
    REQUIRE(wait_until([&] { return log.count_lines("disconnection: session time") >= disconnections_before + kProbes; }));
    CHECK(unclean() == unclean_before);
    CHECK(open_fds() == fds_before);

    // The control: a client that leaves without Terminate is seen by the log.
    std::string conninfo = "host=127.0.0.1 port=" + std::to_string(c->primary->port())
                           + " user=monitor password=secret dbname=postgres gssencmode=disable";
    PGconn* rude = PQconnectdb(conninfo.c_str());
    REQUIRE(PQstatus(rude) == CONNECTION_OK);
    ::shutdown(PQsocket(rude), SHUT_RDWR);
    PQfinish(rude);
    CHECK(wait_until([&] { return unclean() > unclean_before; }));
}

TEST_CASE("a postgres check of a server that never answers does not return, and destroying it closes its socket")
{
    std::atomic<bool> saw_eof{false};
    ScriptedServer silent([&](int fd) {
        int error = 0;
        recv_until_eof(fd, &error);  // the SSLRequest, then EOF (or the 10 s receive timeout)
        saw_eof = error == 0;
    });
    Probe check;
    const std::size_t fds_before = open_fds();
    check.start(postgres_check(HealthCheckConfig::Role::Primary), silent.address());
    CHECK_FALSE(check.wait(300ms));
    check.destroy();
    CHECK(wait_until([&] { return saw_eof.load(); }, 5s));
    CHECK(wait_until([&] { return open_fds() == fds_before; }, 5s));
}

TEST_CASE("a postgres check of a server that sends random bytes fails with BadReply")
{
    const std::size_t fds_before = open_fds();
    {
        // In place of the answer to the SSLRequest.
        ScriptedServer noise([](int fd) {
            send_counted(fd, "\x9a" + random_bytes(4095, 17));
            recv_until_eof(fd);
        });
        check_result(probe(postgres_check(HealthCheckConfig::Role::Primary), noise.address()), false,
                     HealthReason::BadReply, "received invalid response to SSL negotiation: \\x9a",
                     BackendRole::Unknown);
    }
    {
        // SSL refused, then noise in place of the authentication request.
        // (Sent after the startup packet: noise glued to the "N" is read with
        // it and parsed only when more arrives, a libpq quirk; the check then
        // waits until the prober's deadline destroys it, as for a silent one.)
        ScriptedServer noise([](int fd) {
            if (read_ssl_request(fd) && send_counted(fd, "N") == 1 && read_startup_packet(fd))
                send_counted(fd, "\x9a" + random_bytes(4095, 18));
            recv_until_eof(fd);
        });
        check_result(probe(postgres_check(HealthCheckConfig::Role::Primary), noise.address()), false,
                     HealthReason::BadReply, "expected authentication request from server, but received \\x9a",
                     BackendRole::Unknown);
    }
    CHECK(open_fds() == fds_before);
}

TEST_CASE("a postgres check of a server that closes mid-handshake fails with Reset")
{
    const std::size_t fds_before = open_fds();
    {
        ScriptedServer closer([](int fd) {
            if (read_ssl_request(fd) && send_counted(fd, "N") == 1)
                read_startup_packet(fd);
        });  // and close
        check_result(probe(postgres_check(HealthCheckConfig::Role::Primary), closer.address()), false,
                     HealthReason::Reset, "server closed the connection unexpectedly", BackendRole::Unknown);
    }
    CHECK(open_fds() == fds_before);
}

TEST_CASE("a postgres check of a server that answers 100 MB fails without reading it all")
{
    constexpr std::size_t k100MB = 100 * 1024 * 1024;
    const std::string chunk(1024 * 1024, 'x');
    const std::size_t fds_before = open_fds();
    std::atomic<std::size_t> sent{0};
    // Logged in without a password (AuthenticationOk, ReadyForQuery), then
    // one 100 MB DataRow as the answer to the query: libpq would wait for
    // the whole message.
    {
        ScriptedServer flood([&](int fd) {
            if (!read_ssl_request(fd) || send_counted(fd, "N") != 1 || !read_startup_packet(fd))
                return;
            std::string hello = message('R', std::string(4, '\0')) + message('Z', "I");
            if (send_counted(fd, hello) != hello.size())
                return;
            char query[256];
            if (::recv(fd, query, sizeof query, 0) <= 0)
                return;
            std::uint32_t length = htonl(static_cast<std::uint32_t>(k100MB + 4));
            std::string header(1, 'D');
            header.append(reinterpret_cast<const char*>(&length), 4);
            std::size_t total = send_counted(fd, header);
            while (total < k100MB) {
                std::size_t n = send_counted(fd, chunk);
                total += n;
                if (n < chunk.size())
                    break;
            }
            sent = total;
        });
        check_result(probe(postgres_check(HealthCheckConfig::Role::Primary), flood.address()), false,
                     HealthReason::BadReply, "reply too large: more than 256 KiB", BackendRole::Unknown);
    }
    INFO("the server sent " << sent.load() << " bytes before the check closed");
    CHECK(sent.load() < 16 * 1024 * 1024);
    // And 100 MB in place of the SSL answer: refused at the first byte.
    {
        ScriptedServer flood([&](int fd) {
            std::size_t total = 0;
            while (total < k100MB) {
                std::size_t n = send_counted(fd, chunk);
                total += n;
                if (n < chunk.size())
                    break;
            }
        });
        check_result(probe(postgres_check(HealthCheckConfig::Role::Primary), flood.address()), false,
                     HealthReason::BadReply, "received invalid response to SSL negotiation: x", BackendRole::Unknown);
    }
    CHECK(open_fds() == fds_before);
}
