// Tests of SourceLimits and SourceLease (src/source_limits.cpp): the count of
// sessions per client IP behind max_connections_per_source.
#include "sluice/source_limits.h"

#include <catch2/catch.hpp>

#include <atomic>
#include <thread>
#include <vector>

using sluice::SocketAddress;
using sluice::SourceLease;
using sluice::SourceLimits;

namespace {

SocketAddress at(const char* text) { return *SocketAddress::parse(text); }

} // namespace

TEST_CASE("a client IP gets up to the limit, whatever its ports, and a release frees one place")
{
    SourceLimits limits;
    CHECK(limits.try_acquire(at("10.0.0.1:1000"), 2));
    CHECK(limits.try_acquire(at("10.0.0.1:1001"), 2));
    CHECK_FALSE(limits.try_acquire(at("10.0.0.1:1002"), 2));
    CHECK(limits.try_acquire(at("10.0.0.2:1000"), 2));  // another IP has its own count
    CHECK(limits.count(at("10.0.0.1:0")) == 2);
    limits.release(at("10.0.0.1:5555"));
    CHECK(limits.try_acquire(at("10.0.0.1:1003"), 2));
}

TEST_CASE("an IPv4-mapped IPv6 client counts as its IPv4 address; IPv6 has its own counts")
{
    SourceLimits limits;
    CHECK(limits.try_acquire(at("10.0.0.1:1"), 1));
    CHECK_FALSE(limits.try_acquire(at("[::ffff:10.0.0.1]:2"), 1));
    CHECK(limits.try_acquire(at("[2001:db8::1]:1"), 1));
    CHECK_FALSE(limits.try_acquire(at("[2001:db8::1]:2"), 1));
    CHECK(limits.try_acquire(at("[2001:db8::2]:1"), 1));
}

TEST_CASE("an IP whose last session ends leaves the table, and a stray release changes nothing")
{
    SourceLimits limits;
    REQUIRE(limits.try_acquire(at("10.0.0.1:1"), 1));
    limits.release(at("10.0.0.1:1"));
    CHECK(limits.count(at("10.0.0.1:1")) == 0);
    limits.release(at("10.0.0.1:1"));  // nothing held: no underflow
    CHECK(limits.count(at("10.0.0.1:1")) == 0);
    CHECK(limits.try_acquire(at("10.0.0.1:1"), 1));
}

TEST_CASE("a lease gives its count back once, for the address it was taken for, and moves")
{
    auto limits = std::make_shared<SourceLimits>();
    const SocketAddress client = at("10.0.0.7:40000");
    REQUIRE(limits->try_acquire(client, 5));
    SourceLease lease(limits, client);
    CHECK(lease.held());
    SourceLease moved(std::move(lease));
    CHECK_FALSE(lease.held());  // NOLINT: moved-from is empty by contract
    CHECK(limits->count(client) == 1);
    moved.release();
    moved.release();
    CHECK(limits->count(client) == 0);
    {
        REQUIRE(limits->try_acquire(client, 5));
        SourceLease scoped(limits, client);
    }
    CHECK(limits->count(client) == 0);  // the destructor released it
}

TEST_CASE("the limit is exact when eight threads race for the same IP")
{
    SourceLimits limits;
    constexpr std::uint32_t kLimit = 100;
    std::atomic<int> granted{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t)
        threads.emplace_back([&] {
            for (int i = 0; i < 1000; ++i)
                if (limits.try_acquire(at("192.0.2.1:1"), kLimit))
                    granted.fetch_add(1);
        });
    for (auto& thread : threads)
        thread.join();
    CHECK(granted.load() == static_cast<int>(kLimit));
    CHECK(limits.count(at("192.0.2.1:1")) == kLimit);
}
