// ConnectAttempts: the retry budget of a connecting session, and which
// failures count against a backend.
#include "sluice/connect_attempts.h"

#include "balance_fixture.h"

#include <catch2/catch.hpp>

#include <set>

using namespace sluice;

namespace {

struct Pool {
    test::Backends backends = test::Backends::equal(3);
    PoolConfig config;
    PoolRuntime runtime;
    std::unique_ptr<PoolBalancer> balancer;
    BackendCounters counters;

    explicit Pool(int retries, int max_fails = 3)
    {
        config.name = "p";
        config.retries = retries;
        config.max_fails = max_fails;
        for (std::size_t i = 0; i < backends.ids.size(); ++i) {
            BackendConfig b;
            b.name = "b" + std::to_string(i);
            b.address = *SocketAddress::parse("127.0.0.1:" + std::to_string(1000 + i));
            config.backends.push_back(b);
        }
        runtime.config = &config;
        runtime.backend_ids = backends.ids;
        runtime.primaries = backends.ids;
        runtime.stats = std::make_shared<PoolStats>();
        balancer = std::make_unique<PoolBalancer>(BalanceAlgorithm::RoundRobin, backends.ids,
                                                  std::vector<BackendId>{}, *backends.table);
    }
    ConnectAttempts attempts() { return ConnectAttempts(runtime, *balancer, *backends.table, counters); }
};

const SocketAddress kClient = *SocketAddress::parse("10.0.0.1:40000");

} // namespace

TEST_CASE("a failed connect is retried on backends not tried yet, up to `retries` more")
{
    Pool pool(/*retries=*/1);
    ConnectAttempts attempts = pool.attempts();
    std::optional<BackendId> first = attempts.next(kClient, 0);
    REQUIRE(first);
    attempts.failed(*first, SysError::ConnectionRefused, 0);
    std::optional<BackendId> second = attempts.next(kClient, 0);
    REQUIRE(second);
    CHECK(*second != *first);
    attempts.failed(*second, SysError::TimedOut, 0);
    // One retry was allowed: spent.
    CHECK_FALSE(attempts.next(kClient, 0));
    CHECK(attempts.attempts_failed() == 2);
    CHECK(pool.runtime.stats->failed_connects.load() == 2);
    CHECK(pool.runtime.stats->retries.load() == 1);
    CHECK(pool.runtime.stats->rejected.load() == 1);
    // Every attempt gave its backend back.
    for (BackendId id : pool.backends.ids)
        CHECK(pool.backends.table->active(id) == 0);
}

TEST_CASE("with retries to spare, every backend is tried once and then the client is turned away")
{
    Pool pool(/*retries=*/5);
    ConnectAttempts attempts = pool.attempts();
    std::set<BackendId> tried;
    while (std::optional<BackendId> id = attempts.next(kClient, 0)) {
        CHECK(tried.insert(*id).second);
        attempts.failed(*id, SysError::ConnectionRefused, 0);
    }
    CHECK(tried.size() == 3);
}

TEST_CASE("our own shortage is never counted against a backend")
{
    Pool pool(/*retries=*/2, /*max_fails=*/1);
    ConnectAttempts attempts = pool.attempts();
    std::optional<BackendId> id = attempts.next(kClient, 0);
    REQUIRE(id);
    attempts.local_shortage(*id, SysError::TooManyFiles, 0);
    CHECK(pool.backends.table->usable(*id, 0));  // max_fails = 1 would have marked it down
    CHECK(pool.backends.table->active(*id) == 0);
    CHECK(pool.runtime.stats->failed_connects.load() == 0);
    CHECK(pool.runtime.stats->rejected.load() == 1);
    // A real failure with the same budget does mark it.
    ConnectAttempts other = pool.attempts();
    std::optional<BackendId> again = other.next(kClient, 0);
    REQUIRE(again);
    other.failed(*again, SysError::ConnectionRefused, 0);
    CHECK_FALSE(pool.backends.table->usable(*again, 0));
}

TEST_CASE("each started attempt is counted once for its backend on this worker")
{
    Pool pool(/*retries=*/2);
    ConnectAttempts attempts = pool.attempts();
    std::optional<BackendId> id = attempts.next(kClient, 0);
    REQUIRE(id);
    CHECK(pool.counters.read(*id, pool.backends.table->epoch(*id)).sessions == 1);
}
