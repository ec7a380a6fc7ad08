#include "balance_fixture.h"

#include <catch2/catch.hpp>

using namespace sluice;
using sluice::test::Backends;

namespace {

constexpr BalanceAlgorithm kAll[] = {BalanceAlgorithm::RoundRobin, BalanceAlgorithm::LeastConn,
                                     BalanceAlgorithm::IpHash, BalanceAlgorithm::Random};

const char* name(BalanceAlgorithm algorithm)
{
    switch (algorithm) {
    case BalanceAlgorithm::RoundRobin: return "round_robin";
    case BalanceAlgorithm::LeastConn: return "least_conn";
    case BalanceAlgorithm::IpHash: return "ip_hash";
    case BalanceAlgorithm::Random: return "random";
    }
    return "?";
}

// Two primaries and two backups in one table.
struct Pool {
    Backends backends = Backends::equal(4);
    std::vector<BackendId> primaries{backends.ids[0], backends.ids[1]};
    std::vector<BackendId> backups{backends.ids[2], backends.ids[3]};

    PoolBalancer balancer(BalanceAlgorithm algorithm) const
    {
        const bool ip_hash = algorithm == BalanceAlgorithm::IpHash;
        return PoolBalancer(algorithm, primaries, backups, *backends.table,
                            ip_hash ? backends.lookup_of(primaries) : nullptr,
                            ip_hash ? backends.lookup_of(backups) : nullptr);
    }
    void set_primaries(Health health)
    {
        for (BackendId id : primaries)
            backends.table->set_health(id, health, HealthReason::None);
    }
};

// Picks for many distinct clients (so ip_hash spreads too) and counts by id.
std::map<BackendId, int> spread(PoolBalancer& pool, int count, PickContext base = {})
{
    std::map<BackendId, int> counts;
    for (int i = 0; i < count; ++i) {
        SocketAddress address = sluice::test::client(static_cast<std::uint32_t>(i));
        PickContext ctx = base;
        ctx.client = &address;
        auto id = pool.pick(ctx);
        REQUIRE(id);
        ++counts[*id];
    }
    return counts;
}

} // namespace

TEST_CASE("the factory builds every algorithm and each one picks only usable backends")
{
    for (BalanceAlgorithm algorithm : kAll) {
        INFO(name(algorithm));
        auto backends = Backends::equal(3);
        auto balancer = backends.balancer(algorithm);
        REQUIRE(balancer);
        backends.table->set_health(backends.ids[0], Health::Down, HealthReason::Timeout);
        backends.table->set_admin(backends.ids[2], AdminState::Drain);
        for (int i = 0; i < 50; ++i) {
            SocketAddress address = sluice::test::client(static_cast<std::uint32_t>(i));
            PickContext ctx;
            ctx.client = &address;
            REQUIRE(balancer->pick(ctx) == backends.ids[1]);
        }
    }
}

TEST_CASE("backups take no sessions while any primary is usable")
{
    for (BalanceAlgorithm algorithm : kAll) {
        INFO(name(algorithm));
        Pool pool;
        auto balancer = pool.balancer(algorithm);
        pool.backends.table->set_admin(pool.primaries[0], AdminState::Maint);
        auto counts = spread(balancer, 200);
        CHECK(counts == std::map<BackendId, int>{{pool.primaries[1], 200}});
    }
}

TEST_CASE("backups take over when no primary is usable and are spread with the same algorithm")
{
    for (BalanceAlgorithm algorithm : kAll) {
        INFO(name(algorithm));
        Pool pool;
        auto balancer = pool.balancer(algorithm);
        pool.set_primaries(Health::Down);
        auto counts = spread(balancer, 2'000);
        REQUIRE(counts.size() == 2);
        CHECK(counts[pool.backups[0]] == Approx(1'000).epsilon(0.1));
        CHECK(counts[pool.backups[1]] == Approx(1'000).epsilon(0.1));
    }
}

TEST_CASE("round robin over backups alternates exactly")
{
    Pool pool;
    auto balancer = pool.balancer(BalanceAlgorithm::RoundRobin);
    pool.set_primaries(Health::Down);
    for (int i = 0; i < 6; ++i)
        CHECK(balancer.pick({}) == pool.backups[static_cast<std::size_t>(i % 2)]);
}

TEST_CASE("sessions return to the primaries as soon as one is usable again")
{
    for (BalanceAlgorithm algorithm : kAll) {
        INFO(name(algorithm));
        Pool pool;
        auto balancer = pool.balancer(algorithm);
        pool.set_primaries(Health::Down);
        spread(balancer, 10);
        pool.backends.table->set_health(pool.primaries[1], Health::Up, HealthReason::None);
        auto counts = spread(balancer, 100);
        CHECK(counts == std::map<BackendId, int>{{pool.primaries[1], 100}});
    }
}

TEST_CASE("a retry that has tried every primary goes to a backup")
{
    Pool pool;
    auto balancer = pool.balancer(BalanceAlgorithm::LeastConn);
    PickContext ctx;
    ctx.excluded = pool.primaries;
    auto id = balancer.pick(ctx);
    REQUIRE(id);
    CHECK((*id == pool.backups[0] || *id == pool.backups[1]));
}

TEST_CASE("a pool with nothing usable, backups included, picks nothing")
{
    Pool pool;
    auto balancer = pool.balancer(BalanceAlgorithm::RoundRobin);
    pool.set_primaries(Health::Down);
    for (BackendId id : pool.backups)
        pool.backends.table->set_admin(id, AdminState::Maint);
    CHECK_FALSE(balancer.pick({}));

    Backends only_primaries = Backends::equal(2);
    PoolBalancer no_backups(BalanceAlgorithm::Random, only_primaries.ids, {}, *only_primaries.table);
    for (BackendId id : only_primaries.ids)
        only_primaries.table->set_health(id, Health::Down, HealthReason::Timeout);
    CHECK_FALSE(no_backups.pick({}));
}

TEST_CASE("every algorithm passes over a backend at its max_connections")
{
    for (BalanceAlgorithm algorithm : {BalanceAlgorithm::RoundRobin, BalanceAlgorithm::LeastConn,
                                       BalanceAlgorithm::Random, BalanceAlgorithm::IpHash}) {
        sluice::test::Backends backends = sluice::test::Backends::equal(2);
        backends.table->set_limits(backends.ids[0], 1, 0);
        REQUIRE(backends.table->try_acquire(backends.ids[0]));
        auto balancer = backends.balancer(algorithm);
        SocketAddress client = sluice::test::client(7);
        PickContext ctx;
        ctx.client = &client;
        auto counts = sluice::test::pick_counts(*balancer, backends, 50, false, ctx);
        INFO("algorithm " << static_cast<int>(algorithm));
        CHECK(counts[1] == 50);
    }
}

TEST_CASE("slow start gives a backend that just came up a share growing with time")
{
    for (BalanceAlgorithm algorithm :
         {BalanceAlgorithm::RoundRobin, BalanceAlgorithm::LeastConn, BalanceAlgorithm::Random}) {
        INFO("algorithm " << static_cast<int>(algorithm));
        sluice::test::Backends backends = sluice::test::Backends::equal(2);
        constexpr std::int64_t t0 = 1'000'000;
        for (BackendId id : backends.ids)
            backends.table->set_limits(id, 0, 10'000);
        backends.table->mark_came_up(backends.ids[1], t0);
        auto balancer = backends.balancer(algorithm);
        auto share_at = [&](std::int64_t now) {
            PickContext ctx;
            ctx.now_ms = now;
            // Sessions held, so least_conn and random see the loads grow.
            sluice::test::Backends& b = backends;
            auto counts = sluice::test::pick_counts(*balancer, b, 400, true, ctx);
            for (BackendId id : b.ids)
                while (b.table->active(id) > 0)
                    b.table->release(id);
            return counts[1] / 400.0;
        };
        double early = share_at(t0 + 1000);   // 10% of the ramp: weight 0.1 against 1
        double middle = share_at(t0 + 5000);  // half: 0.5 against 1
        double done = share_at(t0 + 10'000);  // full
        CHECK(early < 0.15);
        CHECK(middle > 0.25);
        CHECK(middle < 0.42);
        CHECK(done > 0.45);
        CHECK(done < 0.55);
    }
}
