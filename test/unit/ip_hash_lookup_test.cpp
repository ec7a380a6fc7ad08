// IpHashLookup: ip_hash's Maglev table is built by one thread (the control
// thread) and shared by the workers' balancers, which never build one
// (issue 19: "a change of one target rebuilds without stalling workers").
#include "balance_fixture.h"

#include <catch2/catch.hpp>

#include <atomic>
#include <thread>

using namespace sluice;
using sluice::test::Backends;
using sluice::test::client;

namespace {

PickContext for_client(const SocketAddress& address, std::int64_t now_ms = 0)
{
    PickContext ctx;
    ctx.client = &address;
    ctx.now_ms = now_ms;
    return ctx;
}

std::vector<std::optional<BackendId>> assignment(Balancer& balancer, int clients, std::int64_t now_ms = 0)
{
    std::vector<std::optional<BackendId>> out;
    for (int i = 0; i < clients; ++i) {
        SocketAddress address = client(static_cast<std::uint32_t>(i));
        out.push_back(balancer.pick(for_client(address, now_ms)));
    }
    return out;
}

// A worker's balancer over `lookup`, as PoolPicker makes it.
std::unique_ptr<Balancer> worker_balancer(const Backends& backends, std::shared_ptr<IpHashLookup> lookup)
{
    return make_balancer(BalanceAlgorithm::IpHash, {}, *backends.table, std::move(lookup));
}

} // namespace

TEST_CASE("a worker's pick never builds: it picks from the last published build until the next")
{
    constexpr int kClients = 3'000;
    auto backends = Backends::equal(6);
    auto lookup = backends.lookup_of(backends.ids);
    REQUIRE(lookup->builds() == 1);  // built by its constructor, on this (the control) thread
    auto worker = worker_balancer(backends, lookup);
    const auto before = assignment(*worker, kClients);

    // A backend goes down. No refresh yet: the worker still picks from the
    // build that has it, and skips it at lookup time.
    const BackendId down = backends.ids[2];
    backends.table->set_health(down, Health::Down, HealthReason::Timeout);
    const auto stale = assignment(*worker, kClients);
    CHECK(lookup->builds() == 1);
    int moved_early = 0;
    for (int i = 0; i < kClients; ++i) {
        REQUIRE(stale[i]);
        CHECK(*stale[i] != down);
        if (before[i] != down)
            CHECK(stale[i] == before[i]);  // nobody else moves
        else
            ++moved_early;
    }
    CHECK(moved_early > 0);

    // The control thread rebuilds once; the worker takes that build, and
    // lands every client where a fresh lookup over the same state would.
    CHECK(lookup->refresh(0));
    CHECK(lookup->builds() == 2);
    const auto rebuilt = assignment(*worker, kClients);
    CHECK(rebuilt == assignment(*backends.balancer(BalanceAlgorithm::IpHash), kClients));
    CHECK(lookup->builds() == 2);

    // It comes back: until the next build its clients stay where they went
    // (the build the worker has does not hold it), then they return.
    backends.table->set_health(down, Health::Up, HealthReason::None);
    CHECK(assignment(*worker, kClients) == rebuilt);
    CHECK(lookup->refresh(0));
    CHECK(assignment(*worker, kClients) == before);
    CHECK(lookup->builds() == 3);
}

TEST_CASE("every worker shares the one build of a change")
{
    auto backends = Backends::equal(12);
    auto lookup = backends.lookup_of(backends.ids);
    auto worker_a = worker_balancer(backends, lookup);
    auto worker_b = worker_balancer(backends, lookup);
    backends.table->set_admin(backends.ids[7], AdminState::Maint);
    CHECK(lookup->refresh(0));
    CHECK(assignment(*worker_a, 5'000) == assignment(*worker_b, 5'000));
    CHECK(lookup->builds() == 2);  // one rebuild for the change, whatever the workers
}

TEST_CASE("a refresh without a change of the usable set or the weights builds nothing")
{
    auto backends = Backends::equal(5);
    auto lookup = backends.lookup_of({backends.ids[0], backends.ids[1], backends.ids[2]});
    CHECK_FALSE(lookup->refresh(0));  // version unmoved
    // The version moves for a backend outside this set (another pool's)...
    backends.table->set_health(backends.ids[4], Health::Down, HealthReason::Timeout);
    CHECK_FALSE(lookup->refresh(0));
    // ...and for a member's change that leaves it unusable either way.
    backends.table->set_health(backends.ids[1], Health::Down, HealthReason::Timeout);
    CHECK(lookup->refresh(0));
    backends.table->set_admin(backends.ids[1], AdminState::Maint);
    CHECK_FALSE(lookup->refresh(0));
    CHECK(lookup->builds() == 2);
    // A weight change is a change.
    backends.table->set_weight(backends.ids[0], 3);
    CHECK(lookup->refresh(0));
    CHECK(lookup->builds() == 3);
}

TEST_CASE("the lookup reports the next passive mark-down to expire, and rebuilds when it has")
{
    auto backends = Backends::equal(4);
    auto lookup = backends.lookup_of(backends.ids);
    CHECK(lookup->next_expiry_ms() == std::numeric_limits<std::int64_t>::max());
    REQUIRE(backends.table->record_connect_failure(backends.ids[1], 100, 1, 1'000));
    CHECK(lookup->refresh(200));
    CHECK(lookup->latest()->members_in_table == 3);
    CHECK(lookup->next_expiry_ms() == 1'100);
    CHECK_FALSE(lookup->refresh(1'099));
    CHECK(lookup->refresh(1'100));  // no version bump: the clock alone
    CHECK(lookup->latest()->members_in_table == 4);
    CHECK(lookup->next_expiry_ms() == std::numeric_limits<std::int64_t>::max());
}

TEST_CASE("same_members recognises the member set whatever its order")
{
    auto backends = Backends::equal(4);
    auto lookup = backends.lookup_of(backends.ids);
    std::vector<BackendId> reversed(backends.ids.rbegin(), backends.ids.rend());
    CHECK(lookup->same_members(reversed, backends.identities_of(reversed)));
    std::vector<BackendId> fewer(backends.ids.begin(), backends.ids.end() - 1);
    CHECK_FALSE(lookup->same_members(fewer, backends.identities_of(fewer)));
    auto renamed = backends.identities;
    renamed[2] = backend_identity("renamed");
    CHECK_FALSE(lookup->same_members(backends.ids, renamed));
}

TEST_CASE("workers pick while the control thread rebuilds: every pick is a usable backend")
{
    // TSan's case: one thread publishes builds while another takes them.
    // Catch2 is not thread-safe: the picking thread counts, the test asserts.
    auto backends = Backends::equal(40);
    auto lookup = backends.lookup_of(backends.ids);
    std::atomic<bool> stop{false};
    std::atomic<int> picks{0}, bad{0};
    std::thread worker([&, balancer = worker_balancer(backends, lookup)]() mutable {
        std::uint32_t n = 0;
        while (!stop.load(std::memory_order_acquire)) {
            SocketAddress address = client(n++ % 1'000);
            std::optional<BackendId> id = balancer->pick(for_client(address));
            // Backend 0 is never taken down, so there is always one.
            if (!id || backends.index_of(*id) < 0)
                bad.fetch_add(1, std::memory_order_relaxed);
            picks.fetch_add(1, std::memory_order_relaxed);
        }
    });
    int rebuilds = 0;
    for (int round = 0; round < 200; ++round) {
        const BackendId flapping = backends.ids[1 + round % 39];
        backends.table->set_health(flapping, Health::Down, HealthReason::Timeout);
        rebuilds += lookup->refresh(0) ? 1 : 0;
        backends.table->set_health(flapping, Health::Up, HealthReason::None);
        rebuilds += lookup->refresh(0) ? 1 : 0;
    }
    // Let the worker run past the last publish before stopping it.
    const int seen = picks.load();
    while (picks.load() < seen + 1'000)
        std::this_thread::yield();
    stop.store(true, std::memory_order_release);
    worker.join();
    CHECK(rebuilds == 400);
    CHECK(bad.load() == 0);
    CHECK(picks.load() >= 1'000);
}
