#include "sluice/reload.h"

#include <catch2/catch.hpp>

#include <fmt/format.h>

using namespace sluice;

namespace {

ListenerConfig listener(std::string name, std::string_view address, Protocol protocol = Protocol::Tcp)
{
    ListenerConfig l;
    l.name = std::move(name);
    l.listen = *SocketAddress::parse(address);
    l.protocol = protocol;
    l.pool = "p";
    return l;
}

} // namespace

TEST_CASE("a reload keeps a listener with the same protocol and address, whatever its other settings")
{
    Config current, next;
    current.listeners = {listener("a", "127.0.0.1:5432"), listener("b", "127.0.0.1:6379"),
                         listener("u", "127.0.0.1:53", Protocol::Udp)};
    next.listeners = {listener("renamed", "127.0.0.1:6379"), listener("new", "127.0.0.1:7000"),
                      listener("t", "127.0.0.1:53", Protocol::Tcp), listener("u", "127.0.0.1:53", Protocol::Udp)};
    auto kept = match_listeners(current, next);
    REQUIRE(kept.size() == 4);
    CHECK(kept[0] == std::optional<std::size_t>(1));
    CHECK_FALSE(kept[1]);
    CHECK_FALSE(kept[2]);  // tcp and udp on one address are different listeners
    CHECK(kept[3] == std::optional<std::size_t>(2));
}

TEST_CASE("port-0 listeners on one address are told apart by name, each kept once")
{
    Config current, next;
    current.listeners = {listener("x", "127.0.0.1:0"), listener("y", "127.0.0.1:0")};
    next.listeners = {listener("y", "127.0.0.1:0"), listener("z", "127.0.0.1:0"), listener("x", "127.0.0.1:0")};
    auto kept = match_listeners(current, next);
    CHECK(kept[0] == std::optional<std::size_t>(1));
    CHECK_FALSE(kept[1]);
    CHECK(kept[2] == std::optional<std::size_t>(0));
}

TEST_CASE("removed_backends lists the slots the new generation no longer uses")
{
    BackendTable table;
    auto config_with = [](std::vector<std::string> addresses) {
        Config c;
        PoolConfig pool;
        pool.name = "p";
        for (auto& a : addresses) {
            BackendConfig b;
            b.address = *SocketAddress::parse(a);
            b.name = a;
            pool.backends.push_back(b);
        }
        c.pools.push_back(pool);
        return c;
    };
    std::string error;
    auto first = build_runtime(config_with({"10.0.0.1:1", "10.0.0.2:1"}), table, nullptr, &error);
    auto second = build_runtime(config_with({"10.0.0.2:1", "10.0.0.3:1"}), table, first.get(), &error);
    REQUIRE(first);
    REQUIRE(second);
    CHECK(removed_backends(*first, *second) == std::vector<BackendId>{first->pools[0].backend_ids[0]});
    CHECK(removed_backends(*second, *first) == std::vector<BackendId>{second->pools[0].backend_ids[1]});
}

TEST_CASE("attach_operations carries listener and pool counters to the next generation")
{
    BackendTable table;
    Config c1;
    c1.listeners = {listener("front", "127.0.0.1:5432")};
    PoolConfig pool;
    pool.name = "p";
    BackendConfig b;
    b.address = *SocketAddress::parse("10.0.0.1:1");
    b.name = "b";
    pool.backends.push_back(b);
    c1.pools.push_back(pool);
    Config c2 = c1;
    c2.listeners.push_back(listener("other", "127.0.0.1:5433"));
    std::string error;
    auto first = build_runtime(c1, table, nullptr, &error);
    REQUIRE(attach_operations(*first, nullptr, 2, nullptr));
    first->listeners[0].counters->worker(1).accepted = 5;
    first->pools[0].stats->retries = 3;
    auto second = build_runtime(c2, table, first.get(), &error);
    REQUIRE(attach_operations(*second, first.get(), 2, nullptr));
    CHECK(second->listeners[0].counters == first->listeners[0].counters);
    CHECK(second->listeners[0].counters->total().accepted == 5);
    CHECK(second->listeners[1].counters->total().accepted == 0);
    CHECK(second->pools[0].stats->retries == 3);
}

TEST_CASE("attach_operations reports an access log it cannot open")
{
    BackendTable table;
    Config c;
    c.listeners = {listener("front", "127.0.0.1:5432")};
    c.listeners[0].access_log = "/nonexistent-dir/access.log";
    std::string error;
    auto runtime = build_runtime(c, table, nullptr, &error);
    std::vector<std::string> errors;
    CHECK_FALSE(attach_operations(*runtime, nullptr, 1, &errors));
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].rfind("listener front: cannot open access log /nonexistent-dir/access.log: ", 0) == 0);
}

TEST_CASE("a new generation keeps an ip_hash pool's lookup while its members and names stay, and builds anew when they change")
{
    auto table = std::make_unique<BackendTable>();
    auto config_with = [](std::vector<std::string> addresses, BalanceAlgorithm balance) {
        Config c;
        for (std::string name : {"p", "other"}) {
            PoolConfig pool;
            pool.name = name;
            pool.balance = balance;
            for (const auto& a : addresses) {
                BackendConfig b;
                b.address = *SocketAddress::parse(a);
                b.name = name + "-" + a;
                b.backup = a == addresses.back();
                pool.backends.push_back(b);
            }
            c.pools.push_back(pool);
        }
        return c;
    };
    std::string error;
    auto first = build_runtime(config_with({"10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1"}, BalanceAlgorithm::IpHash),
                               *table, nullptr, &error);
    REQUIRE(first);
    const PoolRuntime& p1 = first->pools[0];
    REQUIRE(p1.primary_lookup);
    REQUIRE(p1.backup_lookup);
    CHECK(p1.primary_lookup->members().size() == 2);
    CHECK(p1.backup_lookup->members().size() == 1);
    CHECK(p1.primary_lookup->builds() == 1);  // built here, by the thread building the generation

    // The same file in another order: same members, same names: kept, no build.
    auto second = build_runtime(config_with({"10.0.0.2:1", "10.0.0.1:1", "10.0.0.3:1"}, BalanceAlgorithm::IpHash),
                                *table, first.get(), &error);
    REQUIRE(second);
    CHECK(second->pools[0].primary_lookup == p1.primary_lookup);
    CHECK(second->pools[0].backup_lookup == p1.backup_lookup);
    CHECK(p1.primary_lookup->builds() == 1);

    // A primary replaced: that set gets a new lookup, the backups keep theirs.
    auto third = build_runtime(config_with({"10.0.0.4:1", "10.0.0.1:1", "10.0.0.3:1"}, BalanceAlgorithm::IpHash),
                               *table, second.get(), &error);
    REQUIRE(third);
    CHECK(third->pools[0].primary_lookup != p1.primary_lookup);
    CHECK(third->pools[0].backup_lookup == p1.backup_lookup);

    // Other algorithms have none.
    auto fourth = build_runtime(config_with({"10.0.0.4:1", "10.0.0.1:1", "10.0.0.3:1"}, BalanceAlgorithm::RoundRobin),
                                *table, third.get(), &error);
    REQUIRE(fourth);
    CHECK_FALSE(fourth->pools[0].primary_lookup);
    CHECK_FALSE(fourth->pools[0].backup_lookup);
}

namespace {

// One pool "p" of `count` backends on 10.x.y.z:1 (one address per index),
// for generations of tens of thousands of backends.
Config numbered_pool(std::size_t count, BalanceAlgorithm balance = BalanceAlgorithm::RoundRobin)
{
    Config config;
    PoolConfig pool;
    pool.name = "p";
    pool.balance = balance;
    for (std::size_t i = 0; i < count; ++i) {
        BackendConfig b;
        b.address = *SocketAddress::parse(fmt::format("10.{}.{}.{}:1", i >> 16, (i >> 8) & 0xff, i & 0xff));
        b.name = b.address.to_string();
        pool.backends.push_back(b);
    }
    config.pools.push_back(pool);
    return config;
}

} // namespace

TEST_CASE("a generation whose ip_hash pool grew past 65,534 primaries is refused and gives its slots back")
{
    // What a discovery answer can do that --check cannot see.
    auto table = std::make_unique<BackendTable>();
    std::string error;
    CHECK_FALSE(build_runtime(numbered_pool(kIpHashMaxBackends + 1, BalanceAlgorithm::IpHash), *table, nullptr, &error));
    CHECK(error == "pool \"p\": 65535 primary backends, expected at most 65534 with balance = \"ip_hash\"");
    // Nothing was taken.
    CHECK(table->allocate(1) == BackendId{0});
}

TEST_CASE("a generation that does not fit in the backend table is refused, the running one keeps its slots")
{
    // A discovery answer or a reload may ask for more slots than are free:
    // build_runtime gives back what it took, and the current generation stays.
    auto table = std::make_unique<BackendTable>();
    std::string error;
    auto running = build_runtime(numbered_pool(BackendTable::kCapacity - 10), *table, nullptr, &error);
    REQUIRE(running);
    // 20 new backends beside the running ones: 10 fit, then the table is full.
    auto next = build_runtime(numbered_pool(BackendTable::kCapacity + 10), *table, running.get(), &error);
    CHECK_FALSE(next);
    CHECK(error == "too many backends: the backend table holds 100000");
    // The 10 taken were given back; the running generation's slots are untouched.
    for (int i = 0; i < 10; ++i)
        CHECK(table->allocate(1));
    CHECK_FALSE(table->allocate(1));
    CHECK(table->slot(running->pools[0].backend_ids.back()).in_use.load());
}
