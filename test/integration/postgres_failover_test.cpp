// PostgreSQL failover through sluice (issue 17), on the recipe
// conf/examples/postgres-streaming.toml with the addresses of a real primary
// and its streaming replica: a read-write listener (role primary) and a
// read-only one (role replica) route exactly; when the primary hangs, a
// session held on it is closed (on_down = "close"); once the replica is
// promoted the read-write listener reaches it within fall x interval +
// timeout. Prints a "postgres failover:" line with the figures.
#include "harness.h"
#include "postgres_server.h"

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <libpq-fe.h>

#include <csignal>
#include <fstream>
#include <poll.h>
#include <sstream>
#include <sys/socket.h>

using namespace sluice::test;

namespace {

std::string example(const std::string& name) { return std::string(SLUICE_SOURCE_DIR) + "/conf/examples/" + name; }

struct PgConnCloser {
    void operator()(PGconn* conn) const noexcept { PQfinish(conn); }
};
using PgConn = std::unique_ptr<PGconn, PgConnCloser>;

// A client session through sluice's listener on `port` (2 s to log in).
PgConn connect_through(std::uint16_t port)
{
    std::string conninfo = fmt::format("host=127.0.0.1 port={} user=monitor password=secret dbname=postgres "
                                       "gssencmode=disable sslmode=disable connect_timeout=2",
                                       port);
    return PgConn(PQconnectdb(conninfo.c_str()));
}

// The port of the server a session reached (its `port` setting), 0 if none.
int server_port(PGconn* conn)
{
    if (PQstatus(conn) != CONNECTION_OK)
        return 0;
    PGresult* result = PQexec(conn, "SELECT current_setting('port')");
    int port = PQresultStatus(result) == PGRES_TUPLES_OK ? std::atoi(PQgetvalue(result, 0, 0)) : 0;
    PQclear(result);
    return port;
}

int reached_through(std::uint16_t port) { return server_port(connect_through(port).get()); }

// The client side of a session saw EOF (or a reset) from sluice.
bool closed_by_peer(int fd)
{
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 0) != 1)
        return false;
    char byte;
    return ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) <= 0;
}

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

} // namespace

TEST_CASE("postgres example configs pass sluice --check")
{
    TempDir dir;
    std::string text = read_text_file(example("postgres-streaming.toml"));
    replace_all(text, "/etc/sluice/pg-monitor.password", dir.write("password", "secret\n"));
    for (const std::string& config : {dir.write("streaming.toml", text), example("postgres-patroni.toml")}) {
        Process check(binary_from_env("SLUICE_BIN"), {"-c", config, "--check"});
        auto status = check.wait_exit();
        INFO(config << ": " << check.output());
        CHECK(status == 0);
    }
}

TEST_CASE("postgres failover: the read-write listener follows the promoted replica and a session on the hung "
          "primary is closed")
{
    std::string why;
    if (PostgresServer::bin_dir(&why).empty()) {
        WARN("SKIPPED: " << why);
        return;
    }
    auto primary = PostgresServer::start_primary();
    auto replica = PostgresServer::start_replica(*primary);
    const int primary_port = primary->port();
    const int replica_port = replica->port();

    // The recipe as shipped, on loopback: pg-a the primary, pg-b the replica.
    TempDir dir;
    std::string text = read_text_file(example("postgres-streaming.toml"));
    replace_all(text, "/etc/sluice/pg-monitor.password", dir.write("password", "secret\n"));
    replace_all(text, "0.0.0.0:5432", "127.0.0.1:0");
    replace_all(text, "0.0.0.0:5433", "127.0.0.1:0");
    replace_all(text, "/run/sluice/admin.sock", "@DIR@/admin.sock");
    replace_all(text, "10.0.0.11:5432", primary->address());
    replace_all(text, "10.0.0.12:5432", replica->address());
    replace_all(text, "  { address = \"10.0.0.13:5432\", name = \"pg-c\" },\n", "");
    // fall x interval + timeout of the primary pool's check, as shipped.
    REQUIRE(text.find("interval = \"1s\", timeout = \"500ms\", rise = 1, fall = 2") != std::string::npos);
    constexpr double kBound = 2 * 1.0 + 0.5;

    Sluice sluice(text);
    const std::uint16_t rw = sluice.port("rw");
    const std::uint16_t ro = sluice.port("ro");
    INFO(sluice.process().output());

    // Each listener reaches its role only, once the checks confirmed it.
    REQUIRE(wait_until([&] { return reached_through(rw) == primary_port && reached_through(ro) == replica_port; },
                       15s));
    for (int i = 0; i < 10; ++i) {
        CHECK(reached_through(rw) == primary_port);
        CHECK(reached_through(ro) == replica_port);
    }

    // A session held on the primary, then the primary hangs (frozen: its TCP
    // connections stay open, so only sluice can end the session; a killed
    // postmaster's backends would close it themselves).
    PgConn held = connect_through(rw);
    REQUIRE(server_port(held.get()) == primary_port);
    const auto frozen = Clock::now();
    primary->signal_all(SIGSTOP);
    REQUIRE(wait_until([&] { return closed_by_peer(PQsocket(held.get())); }, 10s));
    const auto closed = Clock::now();

    // The failover: the replica is promoted; the primary stays dead.
    replica->promote();
    const auto promoted = Clock::now();
    REQUIRE(wait_until([&] { return reached_through(rw) == replica_port; }, 10s));
    const auto reached = Clock::now();
    primary->signal_all(SIGKILL);
    primary->kill();

    std::printf("postgres failover: hung primary's session closed %.2f s after the hang; read-write listener on "
                "the new primary %.2f s after its promotion (bound fall x interval + timeout = %.1f s)\n",
                seconds(closed - frozen), seconds(reached - promoted), kBound);
    // Probes start interval ±10% apart: fall of them fail within 10% more.
    CHECK(seconds(closed - frozen) <= 2 * 1.1 + 0.5 + 0.5);  // + 0.5 s for a shared machine
    CHECK(seconds(reached - promoted) <= kBound);
    CHECK(sluice.process().count_lines("primary/pg-b is UP") == 1);
}
