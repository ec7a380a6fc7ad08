#include "balance_fixture.h"

#include <catch2/catch.hpp>

#include <string>

using namespace sluice;
using sluice::test::Backends;
using sluice::test::pick_counts;

namespace {

// The sequence of picks as letters: member 0 is 'a', 1 is 'b', ...
std::string sequence(Balancer& balancer, const Backends& backends, int count, PickContext ctx = {})
{
    std::string out;
    for (int i = 0; i < count; ++i) {
        auto id = balancer.pick(ctx);
        out += id ? static_cast<char>('a' + backends.index_of(*id)) : '-';
    }
    return out;
}

} // namespace

TEST_CASE("round robin interleaves weights 3:2:1 exactly as nginx's smooth weighted round robin")
{
    // Derivation (current weights after adding 3,2,1; the max wins and pays 6):
    //   (3,2,1)->a  (0,4,2)->b  (3,0,3)->a (first of a tie)  (0,2,4)->c
    //   (3,4,-1)->b  (6,0,0)->a  and back to (0,0,0).
    Backends backends{3, 2, 1};
    auto rr = backends.balancer(BalanceAlgorithm::RoundRobin);
    CHECK(sequence(*rr, backends, 12) == "abacbaabacba");
}

TEST_CASE("round robin gives each backend exactly its weight per cycle")
{
    Backends backends{5, 1, 3, 7};
    auto rr = backends.balancer(BalanceAlgorithm::RoundRobin);
    constexpr int kCycles = 50;
    auto counts = pick_counts(*rr, backends, 16 * kCycles);
    CHECK(counts[0] == 5 * kCycles);
    CHECK(counts[1] == 1 * kCycles);
    CHECK(counts[2] == 3 * kCycles);
    CHECK(counts[3] == 7 * kCycles);
    CHECK(counts.count(-1) == 0);
}

TEST_CASE("round robin with equal weights rotates through backends in order")
{
    auto backends = Backends::equal(4);
    auto rr = backends.balancer(BalanceAlgorithm::RoundRobin);
    CHECK(sequence(*rr, backends, 8) == "abcdabcd");
}

TEST_CASE("round robin follows a weight changed while it runs")
{
    Backends backends{1, 1};
    auto rr = backends.balancer(BalanceAlgorithm::RoundRobin);
    CHECK(sequence(*rr, backends, 4) == "abab");
    backends.table->set_weight(backends.ids[1], 3);
    auto counts = pick_counts(*rr, backends, 400);
    CHECK(counts[0] == 100);
    CHECK(counts[1] == 300);
}

TEST_CASE("round robin skips backends that are down, draining, in maintenance or passively down")
{
    auto backends = Backends::equal(5);
    auto& table = *backends.table;
    table.set_health(backends.ids[0], Health::Down, HealthReason::Timeout);
    table.set_admin(backends.ids[1], AdminState::Drain);
    table.set_admin(backends.ids[2], AdminState::Maint);
    REQUIRE(table.record_connect_failure(backends.ids[3], 1'000, 1, 10'000));
    auto rr = backends.balancer(BalanceAlgorithm::RoundRobin);
    PickContext ctx;
    ctx.now_ms = 1'000;
    auto counts = pick_counts(*rr, backends, 20, false, ctx);
    CHECK(counts == std::map<int, int>{{4, 20}});

    // After fail_timeout the passively down one is back in rotation.
    ctx.now_ms = 11'000;
    CHECK(sequence(*rr, backends, 4, ctx) == "dede");
}

TEST_CASE("round robin never picks a backend this session already tried")
{
    Backends backends{3, 2, 1};
    auto rr = backends.balancer(BalanceAlgorithm::RoundRobin);
    BackendId tried[] = {backends.ids[0], backends.ids[2]};
    PickContext ctx;
    ctx.excluded = tried;
    for (int i = 0; i < 10; ++i)
        CHECK(rr->pick(ctx) == backends.ids[1]);
}

TEST_CASE("round robin returns nothing when every backend is unusable or excluded")
{
    Backends backends{1, 1};
    auto rr = backends.balancer(BalanceAlgorithm::RoundRobin);
    BackendId tried[] = {backends.ids[0]};
    PickContext ctx;
    ctx.excluded = tried;
    backends.table->set_health(backends.ids[1], Health::Down, HealthReason::Timeout);
    CHECK_FALSE(rr->pick(ctx));
    CHECK_FALSE(rr->pick({}) == backends.ids[1]);

    Backends none;
    CHECK_FALSE(none.balancer(BalanceAlgorithm::RoundRobin)->pick({}));
}

TEST_CASE("round robin takes a returning backend back at its normal share")
{
    Backends backends{1, 1, 1};
    auto rr = backends.balancer(BalanceAlgorithm::RoundRobin);
    backends.table->set_health(backends.ids[2], Health::Down, HealthReason::Timeout);
    pick_counts(*rr, backends, 7);
    backends.table->set_health(backends.ids[2], Health::Up, HealthReason::None);
    auto counts = pick_counts(*rr, backends, 300);
    CHECK(counts[0] == 100);
    CHECK(counts[1] == 100);
    CHECK(counts[2] == 100);
}

TEST_CASE("round robin gives no new sessions to a backend whose weight is set to zero")
{
    Backends backends{2, 2};
    auto rr = backends.balancer(BalanceAlgorithm::RoundRobin);
    backends.table->set_weight(backends.ids[0], 0);
    auto counts = pick_counts(*rr, backends, 10);
    CHECK(counts == std::map<int, int>{{1, 10}});
}
