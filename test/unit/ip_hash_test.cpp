// ip_hash and the Maglev table under it (Eisenbud et al., NSDI 2016, §3.4).
#include "../../src/balance/maglev.h"
#include "balance_fixture.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <numeric>

using namespace sluice;
using sluice::balance::MaglevTable;
using sluice::test::Backends;
using sluice::test::client;

namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

std::vector<std::uint64_t> identities(std::size_t count)
{
    std::vector<std::uint64_t> ids(count);
    std::iota(ids.begin(), ids.end(), 0);
    return ids;
}

// How many table positions each member owns.
std::vector<std::size_t> shares(const MaglevTable& table)
{
    std::vector<std::size_t> owned(table.members(), 0);
    for (std::size_t p = 0; p < table.size(); ++p)
        ++owned.at(table.at(p));
    return owned;
}

std::vector<MaglevTable::MemberIndex> snapshot(const MaglevTable& table)
{
    std::vector<MaglevTable::MemberIndex> entries(table.size());
    for (std::size_t p = 0; p < table.size(); ++p)
        entries[p] = table.at(p);
    return entries;
}

// Of the positions not owned by `removed` before, the fraction still owned by
// the same member after. Keys hash uniformly onto positions, so this is the
// fraction of the other backends' clients that stay put.
double fraction_kept(const std::vector<MaglevTable::MemberIndex>& before, const MaglevTable& after,
                     std::size_t removed)
{
    std::size_t others = 0, kept = 0;
    for (std::size_t p = 0; p < before.size(); ++p) {
        if (before[p] == removed)
            continue;
        ++others;
        kept += after.at(p) == before[p] ? 1 : 0;
    }
    return static_cast<double>(kept) / static_cast<double>(others);
}

PickContext for_client(const SocketAddress& address)
{
    PickContext ctx;
    ctx.client = &address;
    return ctx;
}

// The backend each of `clients` clients lands on.
std::vector<std::optional<BackendId>> assignment(Balancer& balancer, int clients)
{
    std::vector<std::optional<BackendId>> out;
    out.reserve(clients);
    for (int i = 0; i < clients; ++i) {
        SocketAddress address = client(static_cast<std::uint32_t>(i));
        out.push_back(balancer.pick(for_client(address)));
    }
    return out;
}

} // namespace

TEST_CASE("the Maglev table size is the smallest prime at least 400 times the backends")
{
    CHECK(MaglevTable::table_size_for(0) == 101);
    CHECK(MaglevTable::table_size_for(1) == 401);
    CHECK(MaglevTable::table_size_for(3) == 1201);
    CHECK(MaglevTable::table_size_for(10) == 4001);
    CHECK(MaglevTable::table_size_for(100) == 40009);
    CHECK(MaglevTable::table_size_for(300) == 120011);
}

TEST_CASE("large pools cap the Maglev table at a million positions, then 100 per backend")
{
    CHECK(MaglevTable::table_size_for(2'500) == 1'000'003);
    CHECK(MaglevTable::table_size_for(5'000) == 1'000'003);
    CHECK(MaglevTable::table_size_for(10'000) == 1'000'003);
    CHECK(MaglevTable::table_size_for(20'000) == 2'000'003);
}

TEST_CASE("every pool of 3 to 100 equal backends gets shares within 10% of each other")
{
    for (std::size_t n = 3; n <= 100; ++n) {
        MaglevTable table(identities(n));
        table.populate(std::vector<std::uint16_t>(n, 1));
        auto owned = shares(table);
        auto [lo, hi] = std::minmax_element(owned.begin(), owned.end());
        double mean = static_cast<double>(table.size()) / static_cast<double>(n);
        INFO("backends: " << n << ", shares " << *lo << ".." << *hi);
        REQUIRE(static_cast<double>(*hi - *lo) <= 0.10 * mean);
        // Each turn claims one position, so equal members differ by one at most.
        REQUIRE(*hi - *lo <= 1);
    }
}

TEST_CASE("taking any one backend out of 3 to 100 keeps at least 97% of the others' keys in place")
{
    // Every pool size from 3 to 100 and every backend removed: 5,047 table
    // rebuilds, about a second in the plain build. Under a sanitizer every
    // table read is instrumented (ThreadSanitizer: ~40x slower), so there only
    // the first, a middle and the last backend of each pool are removed: every
    // pool size is still built and every code path runs under the sanitizer,
    // while the plain build, which CI runs too, checks every removal.
    const auto removals = [](std::size_t n) {
        std::vector<std::size_t> out(n);
        std::iota(out.begin(), out.end(), std::size_t{0});
        return kSanitized ? std::vector<std::size_t>{0, n / 2, n - 1} : out;
    };
    double sum = 0;
    int cases = 0;
    for (std::size_t n = 3; n <= 100; ++n) {
        MaglevTable table(identities(n));
        std::vector<std::uint16_t> weights(n, 1);
        table.populate(weights);
        auto before = snapshot(table);
        for (std::size_t removed : removals(n)) {
            weights.assign(n, 1);
            weights[removed] = 0;
            table.populate(weights);
            double kept = fraction_kept(before, table, removed);
            INFO("backends: " << n << ", removed: " << removed << ", kept " << kept);
            REQUIRE(kept >= 0.97);
            sum += kept;
            ++cases;
        }
    }
    CHECK(cases == (kSanitized ? 3 * 98 : 5047));  // 3 + 4 + ... + 100
    INFO("average kept " << sum / cases);
    CHECK(sum / cases >= 0.97);
}

TEST_CASE("ip_hash moves only the down backend's clients and keeps 97% of the rest, over many clients")
{
    constexpr int kClients = 20'000;
    auto backends = Backends::equal(10);
    auto ip_hash = backends.balancer(BalanceAlgorithm::IpHash);
    auto before = assignment(*ip_hash, kClients);

    double kept_sum = 0;
    for (BackendId down : backends.ids) {
        backends.table->set_health(down, Health::Down, HealthReason::Timeout);
        auto after = assignment(*ip_hash, kClients);
        int others = 0, kept = 0;
        for (int i = 0; i < kClients; ++i) {
            REQUIRE(after[i]);
            REQUIRE(*after[i] != down);
            if (*before[i] == down)
                continue;
            ++others;
            kept += after[i] == before[i] ? 1 : 0;
        }
        kept_sum += static_cast<double>(kept) / others;
        backends.table->set_health(down, Health::Up, HealthReason::None);
    }
    CHECK(kept_sum / 10 >= 0.97);
}

TEST_CASE("a backend that comes back gets exactly its clients back")
{
    constexpr int kClients = 5'000;
    auto backends = Backends::equal(7);
    auto ip_hash = backends.balancer(BalanceAlgorithm::IpHash);
    auto before = assignment(*ip_hash, kClients);
    backends.table->set_admin(backends.ids[3], AdminState::Maint);
    auto during = assignment(*ip_hash, kClients);
    CHECK(during != before);
    backends.table->set_admin(backends.ids[3], AdminState::Ready);
    CHECK(assignment(*ip_hash, kClients) == before);
}

TEST_CASE("a passively down backend gets its clients back when the mark expires")
{
    constexpr int kClients = 2'000;
    auto backends = Backends::equal(4);
    auto ip_hash = backends.balancer(BalanceAlgorithm::IpHash);
    auto before = assignment(*ip_hash, kClients);
    REQUIRE(backends.table->record_connect_failure(backends.ids[2], 0, 1, 1'000));

    // No version bump at expiry: the lookup's refresh notices the clock (in
    // sluice, Server's timer for next_expiry_ms calls it then).
    std::uint64_t version = backends.table->version();
    int moved = 0;
    for (int i = 0; i < kClients; ++i) {
        SocketAddress address = client(static_cast<std::uint32_t>(i));
        PickContext ctx = for_client(address);
        ctx.now_ms = 999;
        moved += ip_hash->pick(ctx) != before[i] ? 1 : 0;
    }
    CHECK(moved > 0);
    for (int i = 0; i < kClients; ++i) {
        SocketAddress address = client(static_cast<std::uint32_t>(i));
        PickContext ctx = for_client(address);
        ctx.now_ms = 1'000;
        REQUIRE(ip_hash->pick(ctx) == before[i]);
    }
    CHECK(backends.table->version() == version);
}

TEST_CASE("two ip_hash balancers over the same backends give identical lookups")
{
    auto backends = Backends::equal(25);
    auto worker_a = backends.balancer(BalanceAlgorithm::IpHash);
    auto worker_b = backends.balancer(BalanceAlgorithm::IpHash);
    CHECK(assignment(*worker_a, 10'000) == assignment(*worker_b, 10'000));

    // Also after the same change, reached by different histories.
    backends.table->set_health(backends.ids[4], Health::Down, HealthReason::Timeout);
    assignment(*worker_a, 10);
    backends.table->set_health(backends.ids[9], Health::Down, HealthReason::Timeout);
    CHECK(assignment(*worker_a, 10'000) == assignment(*worker_b, 10'000));
}

TEST_CASE("a client keeps its backend whatever its source port")
{
    auto backends = Backends::equal(9);
    auto ip_hash = backends.balancer(BalanceAlgorithm::IpHash);
    for (std::uint32_t n = 0; n < 200; ++n) {
        SocketAddress first = client(n, 1024);
        auto expected = ip_hash->pick(for_client(first));
        for (std::uint16_t port : {2000, 40000, 65535}) {
            SocketAddress other = client(n, port);
            REQUIRE(ip_hash->pick(for_client(other)) == expected);
        }
    }
}

TEST_CASE("ip_hash spreads clients over equal backends evenly")
{
    constexpr int kClients = 60'000;
    auto backends = Backends::equal(6);
    auto ip_hash = backends.balancer(BalanceAlgorithm::IpHash);
    std::map<BackendId, int> counts;
    for (auto id : assignment(*ip_hash, kClients))
        ++counts[*id];
    REQUIRE(counts.size() == 6);
    for (auto [id, count] : counts)
        CHECK(count == Approx(kClients / 6).epsilon(0.05));
}

TEST_CASE("Maglev weights 2:1 give about 2:1 shares of the table")
{
    MaglevTable table(identities(6));
    table.populate(std::vector<std::uint16_t>{2, 1, 2, 1, 2, 1});
    auto owned = shares(table);
    double unit = static_cast<double>(table.size()) / 9.0;
    // w turns in every full round; the last, partial round is off by at most w.
    for (std::size_t i = 0; i < 6; ++i) {
        double weight = i % 2 == 0 ? 2 : 1;
        CHECK(static_cast<double>(owned[i]) == Approx(weight * unit).margin(weight));
    }
}

TEST_CASE("ip_hash honours weights and follows a live weight change")
{
    constexpr int kClients = 30'000;
    Backends backends{2, 1};
    auto ip_hash = backends.balancer(BalanceAlgorithm::IpHash);
    std::map<BackendId, int> counts;
    for (auto id : assignment(*ip_hash, kClients))
        ++counts[*id];
    CHECK(counts[backends.ids[0]] == Approx(20'000).epsilon(0.05));
    CHECK(counts[backends.ids[1]] == Approx(10'000).epsilon(0.05));

    backends.table->set_weight(backends.ids[1], 2);
    counts.clear();
    for (auto id : assignment(*ip_hash, kClients))
        ++counts[*id];
    CHECK(counts[backends.ids[0]] == Approx(15'000).epsilon(0.05));
    CHECK(counts[backends.ids[1]] == Approx(15'000).epsilon(0.05));
}

TEST_CASE("a retry moves to the next distinct usable backend in table order")
{
    auto backends = Backends::equal(5);
    auto ip_hash = backends.balancer(BalanceAlgorithm::IpHash);
    for (std::uint32_t n = 0; n < 300; ++n) {
        SocketAddress address = client(n);
        PickContext ctx = for_client(address);
        auto first = ip_hash->pick(ctx);
        REQUIRE(first);

        BackendId tried[] = {*first, 0};
        ctx.excluded = std::span<const BackendId>(tried, 1);
        auto second = ip_hash->pick(ctx);
        REQUIRE(second);
        REQUIRE(*second != *first);
        // Deterministic: the same client retries on the same backend.
        REQUIRE(ip_hash->pick(ctx) == second);

        tried[1] = *second;
        ctx.excluded = tried;
        auto third = ip_hash->pick(ctx);
        REQUIRE(third);
        REQUIRE(*third != *first);
        REQUIRE(*third != *second);
    }
}

TEST_CASE("ip_hash returns nothing when every backend is down or already tried")
{
    auto backends = Backends::equal(3);
    auto ip_hash = backends.balancer(BalanceAlgorithm::IpHash);
    SocketAddress address = client(42);
    PickContext ctx = for_client(address);
    ctx.excluded = backends.ids;
    CHECK_FALSE(ip_hash->pick(ctx));

    for (BackendId id : backends.ids)
        backends.table->set_health(id, Health::Down, HealthReason::Timeout);
    CHECK_FALSE(ip_hash->pick(for_client(address)));

    backends.table->set_health(backends.ids[1], Health::Up, HealthReason::None);
    CHECK(ip_hash->pick(for_client(address)) == backends.ids[1]);

    Backends empty;
    CHECK_FALSE(empty.balancer(BalanceAlgorithm::IpHash)->pick(for_client(address)));
}

TEST_CASE("ip_hash without a client address hashes key zero consistently")
{
    auto backends = Backends::equal(4);
    auto ip_hash = backends.balancer(BalanceAlgorithm::IpHash);
    auto first = ip_hash->pick({});
    REQUIRE(first);
    for (int i = 0; i < 10; ++i)
        CHECK(ip_hash->pick({}) == first);
}

TEST_CASE("ip_hash skips a backend that went down before the table version moved")
{
    // The balancer re-checks usability at lookup time, not only at rebuild.
    auto backends = Backends::equal(3);
    auto ip_hash = backends.balancer(BalanceAlgorithm::IpHash);
    SocketAddress address = client(7);
    auto first = ip_hash->pick(for_client(address));
    REQUIRE(first);
    // Mark it down without a version bump, as a racing prober could look.
    backends.table->slot(*first).health.store(Health::Down);
    auto next = ip_hash->pick(for_client(address));
    REQUIRE(next);
    CHECK(*next != *first);
}

namespace {

// The name each client lands on, for balancers over differently laid out tables.
std::vector<std::string> names_by_client(Balancer& balancer, const std::map<BackendId, std::string>& names,
                                         int clients)
{
    std::vector<std::string> out;
    for (const auto& id : assignment(balancer, clients))
        out.push_back(id ? names.at(*id) : "(none)");
    return out;
}

} // namespace

TEST_CASE("ip_hash sends each client to the same backend name whatever the file order and table slots")
{
    std::vector<std::string> names;
    for (int i = 0; i < 40; ++i)
        names.push_back(fmt::format("10.0.0.{}:5432", i + 1));

    // Instance A: the file order, slots from 0.
    Backends a;
    std::map<BackendId, std::string> a_names;
    for (const auto& name : names)
        a_names[a.add(name, 1 + static_cast<int>(name.size() % 3))] = name;

    // Instance B: other pools took slots first, and the file lists the same
    // backends (same weights) in another order.
    Backends b;
    for (int i = 0; i < 17; ++i)
        b.add(fmt::format("other-pool-{}", i), 1);
    std::vector<BackendId> b_members;
    std::vector<std::uint64_t> b_identities;
    std::map<BackendId, std::string> b_names;
    std::vector<std::string> shuffled = names;
    std::reverse(shuffled.begin(), shuffled.end());
    std::rotate(shuffled.begin(), shuffled.begin() + 11, shuffled.end());
    for (const auto& name : shuffled) {
        BackendId id = b.add(name, 1 + static_cast<int>(name.size() % 3));
        b_members.push_back(id);
        b_identities.push_back(backend_identity(name));
        b_names[id] = name;
    }
    REQUIRE(a.ids.front() != b_members.front());

    auto on_a = a.balancer(BalanceAlgorithm::IpHash);
    auto on_b = std::make_unique<sluice::test::PromptlyRefreshedIpHash>(
        std::make_shared<IpHashLookup>(b_members, b_identities, *b.table), *b.table);
    CHECK(names_by_client(*on_a, a_names, 10'000) == names_by_client(*on_b, b_names, 10'000));

    // The same backend down on both: still identical, and only its clients moved.
    a.table->set_health(a.ids[5], Health::Down, HealthReason::Timeout);
    for (const auto& [id, name] : b_names)
        if (name == names[5])
            b.table->set_health(id, Health::Down, HealthReason::Timeout);
    CHECK(names_by_client(*on_a, a_names, 10'000) == names_by_client(*on_b, b_names, 10'000));
}

TEST_CASE("renaming one backend changes its identity and so moves only about its share of clients")
{
    Backends before, after;
    std::map<BackendId, std::string> before_names, after_names;
    for (int i = 0; i < 20; ++i) {
        std::string name = fmt::format("db-{}", i);
        before_names[before.add(name, 1)] = name;
        std::string renamed = i == 7 ? std::string("db-7-renamed") : name;
        after_names[after.add(renamed, 1)] = name;  // reported under its old name
    }
    auto a = names_by_client(*before.balancer(BalanceAlgorithm::IpHash), before_names, 10'000);
    auto b = names_by_client(*after.balancer(BalanceAlgorithm::IpHash), after_names, 10'000);
    std::size_t moved = 0;
    for (std::size_t i = 0; i < a.size(); ++i)
        moved += a[i] != b[i] ? 1 : 0;
    // A new identity takes a new permutation: its own clients move, and a
    // little churn beyond (Maglev's ~1/N); nowhere near a reshuffle.
    CHECK(moved > 0);
    CHECK(moved < 2 * 10'000 / 20 + 300);
}

TEST_CASE("backend identity is a fixed hash of the name")
{
    // Pinned: changing the hash would move every client at the next upgrade.
    CHECK(backend_identity("") == 0xcbf29ce484222325ULL);
    CHECK(backend_identity("a") == 0xaf63dc4c8601ec8cULL);
    CHECK(backend_identity("10.0.1.10:5432") != backend_identity("10.0.1.11:5432"));
}
