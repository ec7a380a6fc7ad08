// MariaDB failover through sluice, by read_only (issue 17), on the recipe
// conf/examples/mysql-primary.toml with its addresses replaced by two real
// servers on loopback:
//   - the write listener reaches the server with read_only = 0 only, the read
//     listener the one with read_only = 1;
//   - swapping read_only moves new sessions to the new primary within
//     fall x interval + timeout, and on_down = "close" ends the session still
//     open on the demoted one; swapping back puts the old primary back;
//   - the servers count no aborted connects from the probes.
// Prints a "mysql failover:" line with the measured times.
#include "harness.h"
#include "mysql_server.h"
#include "operations_support.h"

#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

using namespace sluice::test;

namespace {

// The port of the server a new session through `listener` reaches (its
// @@port), or 0 if the session failed.
int reached_port(std::uint16_t listener)
{
    Process client("/usr/bin/mariadb", {"--no-defaults", "--protocol=TCP", "--host=127.0.0.1",
                                        "--port=" + std::to_string(listener), "--user=monitor",
                                        "--password=s3cret-monitor", "--batch", "--skip-column-names",
                                        "--connect-timeout=5", "--execute=SELECT @@port"});
    auto status = client.wait_exit(20s);
    if (status != 0)
        return 0;
    return std::atoi(client.stdout_text().c_str());
}

// Whether sluice logged a line containing `needle`, waiting up to 10 s for
// it (in any order with other lines).
bool logged(Process& log, const std::string& needle)
{
    return wait_until([&] { return log.count_lines(needle) > 0; }, 10s);
}

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

} // namespace

TEST_CASE("swapping read_only moves the write listener to the new primary and closes sessions on the old one")
{
    if (!MysqlServer::available()) {
        WARN("SKIPPED: " << MysqlServer::missing());
        return;
    }
    MysqlServer a, b;
    for (MysqlServer* server : {&a, &b})
        server->create_user("monitor", "s3cret-monitor");
    a.sql("SET GLOBAL read_only = 0");
    b.sql("SET GLOBAL read_only = 1");

    TempDir secrets;
    const std::string password_file = secrets.write("monitor.password", "s3cret-monitor\n");
    std::string config = read_text_file(SLUICE_EXAMPLES_DIR "/mysql-primary.toml");
    replace_all(config, "/run/sluice/admin.sock", "@DIR@/admin.sock");
    replace_all(config, "0.0.0.0:3306", "127.0.0.1:0");
    replace_all(config, "0.0.0.0:3307", "127.0.0.1:0");
    replace_all(config, "10.0.0.11:3306", a.address());
    replace_all(config, "10.0.0.12:3306", b.address());
    replace_all(config, "/etc/sluice/mysql-monitor.password", password_file);
    // max_lag needs a running replication; mysql_check_test covers it.
    replace_all(config, "max_lag = \"30s\"\n", "");

    Sluice sluice(config);
    Process& log = sluice.process();
    const std::uint16_t write = sluice.port("mysql-write");
    const std::uint16_t read = sluice.port("mysql-read");

    // Role gating: each pool starts with nothing confirmed, then one probe
    // confirms each role.
    REQUIRE(logged(log, "mysql-primary/db-a is UP"));
    REQUIRE(logged(log, "mysql-replicas/db-b is UP"));
    CHECK(reached_port(write) == a.port());
    CHECK(reached_port(read) == b.port());
    AdminClient admin(admin_path(sluice));
    const std::string servers = admin.command("show servers");
    INFO(servers);
    CHECK(servers.find("primary (read_only = 0)") != std::string::npos);
    CHECK(servers.find("replica (read_only = 1)") != std::string::npos);

    // A session held on the primary: logged in, in a 30 s query.
    Process held("/usr/bin/mariadb", {"--no-defaults", "--protocol=TCP", "--host=127.0.0.1",
                                      "--port=" + std::to_string(write), "--user=monitor",
                                      "--password=s3cret-monitor", "--execute=SELECT SLEEP(30)"});
    REQUIRE(wait_until([&] {
        return a.sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT SLEEP%'") == "1\n";
    }));

    const auto swapped = Clock::now();
    a.sql("SET GLOBAL read_only = 1");
    b.sql("SET GLOBAL read_only = 0");

    // sluice closes the held session (on_down = "close"), long before its query ends.
    auto held_status = held.wait_exit(10s);
    const double closed_after = seconds_since(swapped);
    INFO(held.output());
    const bool closed_by_sluice = held_status && *held_status != 0
        && held.output().find("Lost connection") != std::string::npos;
    CHECK(closed_by_sluice);
    REQUIRE(logged(log, "mysql-primary/db-a is DOWN (replica (read_only = 1): the wrong role takes it out at once)"));
    const double a_down_after = seconds_since(swapped);
    // From now on every new write session reaches b.
    REQUIRE(wait_until([&] { return reached_port(write) == b.port(); }, 10s));
    const double reached_after = seconds_since(swapped);
    for (int i = 0; i < 5; ++i)
        CHECK(reached_port(write) == b.port());
    // Within fall x interval + timeout = 2 x 1s + 1s (a wrong role takes it out at its first
    // answer, so it is usually one interval), with 10% jitter and a loaded machine's slack.
    CHECK(a_down_after < 3.0 + 1.0);
    CHECK(reached_after < 3.0 + 1.0);

    // a, now a replica, joins the read pool.
    REQUIRE(logged(log, "mysql-replicas/db-a is UP"));

    // = 0 puts it back.
    const auto swapped_back = Clock::now();
    b.sql("SET GLOBAL read_only = 1");
    a.sql("SET GLOBAL read_only = 0");
    REQUIRE(logged(log, "mysql-primary/db-b is DOWN (replica (read_only = 1): the wrong role takes it out at once)"));
    REQUIRE(wait_until([&] { return reached_port(write) == a.port(); }, 10s));
    const double back_after = seconds_since(swapped_back);
    REQUIRE(logged(log, "mysql-replicas/db-a is DOWN (primary (read_only = 0): the wrong role takes it out at once)"));
    CHECK(wait_until([&] { return reached_port(read) == b.port(); }, 10s));

    std::printf("mysql failover: held session closed after %.2f s, old primary down after %.2f s, new primary "
                "reached by every new session after %.2f s (bound 3 s); back after %.2f s\n",
                closed_after, a_down_after, reached_after, back_after);
    CHECK(a.status("Aborted_connects") == 0);
    CHECK(b.status("Aborted_connects") == 0);
}
