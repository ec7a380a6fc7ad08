#include "balance_fixture.h"

#include <catch2/catch.hpp>

using namespace sluice;
using sluice::test::Backends;
using sluice::test::pick_counts;

TEST_CASE("random never picks the most loaded backend while another is usable")
{
    // Two distinct candidates are compared, so the most loaded one always loses.
    auto backends = Backends::equal(3);
    for (int i = 0; i < 100; ++i)
        backends.table->acquire(backends.ids[1]);
    auto random = backends.balancer(BalanceAlgorithm::Random);
    auto counts = pick_counts(*random, backends, 3'000);
    CHECK(counts.count(1) == 0);
    CHECK(counts[0] + counts[2] == 3'000);
}

TEST_CASE("random prefers less loaded backends")
{
    auto backends = Backends::equal(4);
    for (int i = 0; i < 10; ++i)
        backends.table->acquire(backends.ids[0]);
    for (int i = 0; i < 5; ++i)
        backends.table->acquire(backends.ids[1]);
    auto random = backends.balancer(BalanceAlgorithm::Random);
    auto counts = pick_counts(*random, backends, 12'000);
    // Of the six equally likely pairs, backend 1 wins only {0,1}; backends 2
    // and 3 win both pairs with 0 or 1 and half of {2,3}; backend 0 wins none.
    CHECK(counts.count(0) == 0);
    CHECK(counts[1] < counts[2] / 2);
    CHECK(counts[1] < counts[3] / 2);
}

TEST_CASE("random with sessions held keeps the backends nearly level")
{
    auto backends = Backends::equal(5);
    auto random = backends.balancer(BalanceAlgorithm::Random);
    pick_counts(*random, backends, 5'000, /*hold=*/true);
    std::uint32_t lo = ~0u, hi = 0;
    for (BackendId id : backends.ids) {
        lo = std::min(lo, backends.table->active(id));
        hi = std::max(hi, backends.table->active(id));
    }
    // Plain random would spread by about +-60 here; two choices keep it tight.
    CHECK(hi - lo <= 10);
}

TEST_CASE("random weighs load by weight as least_conn does")
{
    Backends backends{2, 1};
    auto random = backends.balancer(BalanceAlgorithm::Random);
    auto counts = pick_counts(*random, backends, 3'000, /*hold=*/true);
    CHECK(counts[0] == Approx(2'000).margin(10));
    CHECK(counts[1] == Approx(1'000).margin(10));
}

TEST_CASE("random spreads evenly over idle backends")
{
    auto backends = Backends::equal(4);
    auto random = backends.balancer(BalanceAlgorithm::Random);
    auto counts = pick_counts(*random, backends, 40'000);
    for (int i = 0; i < 4; ++i)
        CHECK(counts[i] == Approx(10'000).epsilon(0.05));
}

TEST_CASE("random skips unusable and excluded backends")
{
    auto backends = Backends::equal(6);
    auto& table = *backends.table;
    table.set_health(backends.ids[0], Health::Down, HealthReason::Timeout);
    table.set_admin(backends.ids[1], AdminState::Drain);
    table.set_admin(backends.ids[2], AdminState::Maint);
    REQUIRE(table.record_connect_failure(backends.ids[3], 100, 1, 1'000));
    BackendId tried[] = {backends.ids[4]};
    PickContext ctx;
    ctx.excluded = tried;
    ctx.now_ms = 100;
    auto random = backends.balancer(BalanceAlgorithm::Random);
    auto counts = pick_counts(*random, backends, 500, false, ctx);
    CHECK(counts == std::map<int, int>{{5, 500}});

    tried[0] = backends.ids[5];
    auto none = pick_counts(*random, backends, 10, false, ctx);
    CHECK(none == std::map<int, int>{{4, 10}});
}

TEST_CASE("random returns nothing when every backend is unusable or excluded")
{
    auto backends = Backends::equal(2);
    backends.table->set_health(backends.ids[0], Health::Down, HealthReason::Timeout);
    BackendId tried[] = {backends.ids[1]};
    PickContext ctx;
    ctx.excluded = tried;
    CHECK_FALSE(backends.balancer(BalanceAlgorithm::Random)->pick(ctx));

    Backends empty;
    CHECK_FALSE(empty.balancer(BalanceAlgorithm::Random)->pick({}));
}

TEST_CASE("two random balancers draw different sequences")
{
    auto backends = Backends::equal(10);
    auto one = backends.balancer(BalanceAlgorithm::Random);
    auto two = backends.balancer(BalanceAlgorithm::Random);
    int same = 0;
    for (int i = 0; i < 200; ++i)
        same += one->pick({}) == two->pick({}) ? 1 : 0;
    CHECK(same < 100);
}
