#include "balance_fixture.h"

#include <catch2/catch.hpp>

using namespace sluice;
using sluice::test::Backends;
using sluice::test::pick_counts;

TEST_CASE("least_conn picks the backend with the fewest active sessions")
{
    auto backends = Backends::equal(3);
    auto& table = *backends.table;
    for (int i = 0; i < 5; ++i)
        table.acquire(backends.ids[0]);
    for (int i = 0; i < 2; ++i)
        table.acquire(backends.ids[1]);
    for (int i = 0; i < 3; ++i)
        table.acquire(backends.ids[2]);
    auto lc = backends.balancer(BalanceAlgorithm::LeastConn);
    CHECK(lc->pick({}) == backends.ids[1]);
    table.acquire(backends.ids[1]);
    table.acquire(backends.ids[1]);
    CHECK(lc->pick({}) == backends.ids[2]);
}

TEST_CASE("least_conn breaks ties in rotation so equal backends fill evenly")
{
    auto backends = Backends::equal(4);
    auto lc = backends.balancer(BalanceAlgorithm::LeastConn);
    // Nothing is ever acquired: every pick is a four-way tie.
    auto counts = pick_counts(*lc, backends, 400);
    for (int i = 0; i < 4; ++i)
        CHECK(counts[i] == 100);

    // Sessions held: the counts never differ by more than one.
    auto held = Backends::equal(3);
    auto lc2 = held.balancer(BalanceAlgorithm::LeastConn);
    for (int i = 0; i < 100; ++i) {
        held.table->acquire(*lc2->pick({}));
        std::uint32_t lo = ~0u, hi = 0;
        for (BackendId id : held.ids) {
            lo = std::min(lo, held.table->active(id));
            hi = std::max(hi, held.table->active(id));
        }
        REQUIRE(hi - lo <= 1);
    }
}

TEST_CASE("least_conn divides active sessions by weight when comparing")
{
    Backends backends{3, 1};
    auto lc = backends.balancer(BalanceAlgorithm::LeastConn);
    auto counts = pick_counts(*lc, backends, 400, /*hold=*/true);
    CHECK(counts[0] == 300);
    CHECK(counts[1] == 100);
    CHECK(backends.table->active(backends.ids[0]) == 300);
}

TEST_CASE("least_conn sees sessions started by other workers")
{
    auto backends = Backends::equal(2);
    auto worker_a = backends.balancer(BalanceAlgorithm::LeastConn);
    auto worker_b = backends.balancer(BalanceAlgorithm::LeastConn);
    for (int i = 0; i < 50; ++i) {
        backends.table->acquire(*worker_a->pick({}));
        backends.table->acquire(*worker_b->pick({}));
    }
    CHECK(backends.table->active(backends.ids[0]) == 50);
    CHECK(backends.table->active(backends.ids[1]) == 50);
}

TEST_CASE("least_conn skips unusable and excluded backends even when they are emptiest")
{
    auto backends = Backends::equal(4);
    auto& table = *backends.table;
    table.acquire(backends.ids[3]);
    table.set_health(backends.ids[0], Health::Down, HealthReason::Reset);
    table.set_admin(backends.ids[1], AdminState::Drain);
    BackendId tried[] = {backends.ids[2]};
    PickContext ctx;
    ctx.excluded = tried;
    auto lc = backends.balancer(BalanceAlgorithm::LeastConn);
    CHECK(lc->pick(ctx) == backends.ids[3]);
    tried[0] = backends.ids[3];
    CHECK(lc->pick(ctx) == backends.ids[2]);
}

TEST_CASE("least_conn returns nothing when no backend is usable")
{
    auto backends = Backends::equal(3);
    for (BackendId id : backends.ids)
        backends.table->set_admin(id, AdminState::Maint);
    CHECK_FALSE(backends.balancer(BalanceAlgorithm::LeastConn)->pick({}));
}

TEST_CASE("least_conn skips a passively down backend until its mark expires")
{
    auto backends = Backends::equal(2);
    backends.table->acquire(backends.ids[1]);
    REQUIRE(backends.table->record_connect_failure(backends.ids[0], 5'000, 1, 2'000));
    auto lc = backends.balancer(BalanceAlgorithm::LeastConn);
    PickContext ctx;
    ctx.now_ms = 6'999;
    CHECK(lc->pick(ctx) == backends.ids[1]);
    ctx.now_ms = 7'000;
    CHECK(lc->pick(ctx) == backends.ids[0]);
}
