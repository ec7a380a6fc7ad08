// Redis failover through sluice, on the shipped example config
// (conf/examples/redis-sentinel.toml): a primary-role and a replica-role
// listener in front of a real master and replica with requirepass; a
// REPLICAOF swap moves new sessions and closes the ones on the demoted
// master. Reports the failover time it measures.
#include "harness.h"
#include "redis_server.h"

#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>
#include <sys/socket.h>

using namespace sluice::test;

namespace {

// Every one of `count` new sessions through `port` reaches `expected`.
bool all_reach(std::uint16_t port, const std::string& password, std::uint16_t expected, int count = 20)
{
    for (int i = 0; i < count; ++i)
        if (redis_port_behind(port, password) != expected)
            return false;
    return true;
}

bool closed_by_peer(int fd)
{
    char byte;
    return ::recv(fd, &byte, 1, MSG_DONTWAIT) == 0;
}

} // namespace

TEST_CASE("redis failover: a REPLICAOF swap moves the primary listener and closes sessions on the demoted master")
{
    if (!RedisServer::available()) {
        WARN("SKIPPED: " << RedisServer::binary() << " is not installed (scripts/setup)");
        return;
    }
    const std::string password = "s3cret";
    RedisServer a(redis_master(password));
    RedisServer b(redis_replica(password, a.port()));
    // The check's own ACL user: PING, INFO and QUIT, nothing else (ACLs are
    // not replicated: each server gets it).
    for (RedisServer* server : {&a, &b})
        REQUIRE(server->command({"ACL", "SETUSER", "sluice", "on", ">monitor-pw", "-@all", "+ping", "+info", "+quit"})
                == "+OK");

    TempDir secrets;
    std::string config = read_text_file(std::string(SLUICE_SOURCE_ROOT) + "/conf/examples/redis-sentinel.toml");
    replace_all(config, "/run/sluice/admin.sock", "@DIR@/admin.sock");
    replace_all(config, "/etc/sluice/redis.password", secrets.write("redis.password", "monitor-pw\n"));
    replace_all(config, "0.0.0.0:6379", "127.0.0.1:0");
    replace_all(config, "0.0.0.0:6380", "127.0.0.1:0");
    replace_all(config, "10.0.2.11:6379", a.address());
    replace_all(config, "10.0.2.12:6379", b.address());
    replace_all(config, "10.0.2.13:6379", "127.0.0.1:" + std::to_string(unused_port()));  // a node that is down
    Sluice sluice(config);
    const std::uint16_t write = sluice.port("redis-write");
    const std::uint16_t read = sluice.port("redis-read");

    // Role routing, once each role is confirmed (role-checked backends start down).
    REQUIRE(wait_until([&] { return redis_port_behind(write, password) == a.port(); }, 10s));
    REQUIRE(wait_until([&] { return redis_port_behind(read, password) == b.port(); }, 10s));
    CHECK(all_reach(write, password, a.port()));
    CHECK(all_reach(read, password, b.port()));

    std::uint16_t behind = 0;
    Fd on_old_master = open_redis_session(write, password, &behind);
    REQUIRE(behind == a.port());
    Fd on_old_replica = open_redis_session(read, password, &behind);
    REQUIRE(behind == b.port());

    // The swap, as Sentinel does it: promote b, then make a its replica.
    const auto swapped = Clock::now();
    b.promote();
    a.replicate(b.port());
    REQUIRE(wait_until([&] { return redis_port_behind(write, password) == b.port(); }, 15s));
    const auto moved = Clock::now();
    REQUIRE(wait_until([&] { return closed_by_peer(on_old_master); }, 15s));
    const auto closed = Clock::now();
    CHECK(all_reach(write, password, b.port()));

    // The demoted master becomes the replica the read listener reaches; the
    // promoted one leaves the read pool, closing its sessions there.
    REQUIRE(wait_until([&] { return redis_port_behind(read, password) == a.port(); }, 15s));
    const auto replica_back = Clock::now();
    CHECK(wait_until([&] { return closed_by_peer(on_old_replica); }, 15s));
    CHECK(all_reach(read, password, a.port()));

    using ms = std::chrono::milliseconds;
    auto since_swap = [&](Clock::time_point when) { return std::chrono::duration_cast<ms>(when - swapped).count(); };
    WARN("redis failover (interval 1s, timeout 500ms, rise 2, fall 2): write listener reached the new master "
         << since_swap(moved) << " ms after the swap; the demoted master left it (its session closed) after "
         << since_swap(closed) << " ms; read listener reached the demoted master after " << since_swap(replica_back)
         << " ms");
    // The new master, never confirmed as one, needs one passing probe; the
    // old one fall failing ones (each within interval +10% jitter, plus up
    // to timeout): 2.2 s + 0.5 s, and a second of slack for a loaded machine.
    CHECK(since_swap(moved) < 3700);
    CHECK(since_swap(closed) < 3700);

    // The sessions ended as backend-down, and the check says why in words.
    AdminClient admin(sluice.dir() + "/admin.sock");
    const std::string servers = admin.command("show servers");
    INFO(servers);
    CHECK(servers.find("role:slave, master_link_status:up") != std::string::npos);
    CHECK(servers.find("role:master") != std::string::npos);
}
