#include "sluice/backend_table.h"

#include <catch2/catch.hpp>

#include <memory>
#include <thread>
#include <vector>

using namespace sluice;

namespace {

std::unique_ptr<BackendTable> fresh_table()
{
    return std::make_unique<BackendTable>();
}

constexpr std::int64_t kNow = 1'000'000;

} // namespace

TEST_CASE("a freshly allocated backend is up, ready, unloaded and usable")
{
    auto table = fresh_table();
    auto id = table->allocate(3);
    REQUIRE(id);
    const BackendSlot& s = table->slot(*id);
    CHECK(s.in_use.load());
    CHECK(s.health.load() == Health::Up);
    CHECK(s.admin.load() == AdminState::Ready);
    CHECK(table->weight(*id) == 3);
    CHECK(table->active(*id) == 0);
    CHECK(table->usable(*id, kNow));
}

TEST_CASE("allocate hands out distinct slots until the table is full")
{
    auto table = fresh_table();
    std::vector<bool> seen(BackendTable::kCapacity, false);
    for (std::size_t i = 0; i < BackendTable::kCapacity; ++i) {
        auto id = table->allocate(1);
        REQUIRE(id);
        REQUIRE(*id < BackendTable::kCapacity);
        REQUIRE_FALSE(seen[*id]);
        seen[*id] = true;
    }
    CHECK_FALSE(table->allocate(1));
}

TEST_CASE("a freed slot is reused and comes back with every field reset")
{
    auto table = fresh_table();
    BackendId id = *table->allocate(5);
    BackendCounters counters;
    table->acquire(id);
    counters.count_session(id, table->epoch(id));
    counters.count_bytes(id, table->epoch(id), 10, 20);
    table->set_health(id, Health::Down, HealthReason::Timeout);
    table->set_admin(id, AdminState::Drain);
    table->record_connect_failure(id, kNow, 1, 1000);
    table->release(id);

    table->free(id);
    CHECK_FALSE(table->slot(id).in_use.load());
    auto again = table->allocate(2);
    REQUIRE(again);
    CHECK(*again == id);
    const BackendSlot& s = table->slot(id);
    CHECK(s.health.load() == Health::Up);
    CHECK(s.health_reason.load() == HealthReason::None);
    CHECK(s.admin.load() == AdminState::Ready);
    CHECK(s.weight.load() == 2);
    CHECK(s.active.load() == 0);
    CHECK(s.connect_failures.load() == 0);
    // A worker's counts of the slot's previous backend are not the new one's.
    BackendCounters::Totals t = counters.read(id, table->epoch(id));
    CHECK(t.sessions == 0);
    CHECK(t.bytes_in == 0);
    CHECK(t.bytes_out == 0);
    counters.count_bytes(id, table->epoch(id), 7, 0);
    CHECK(counters.read(id, table->epoch(id)).bytes_in == 7);
    CHECK(s.window_failures.load() == 0);
    CHECK(s.passive_down_until_ms.load() == 0);
    CHECK(table->usable(id, kNow));
}

TEST_CASE("a freed backend is never usable for a balancer still holding its id")
{
    auto table = fresh_table();
    BackendId id = *table->allocate(1);
    table->free(id);
    CHECK_FALSE(table->usable(id, kNow));
}

TEST_CASE("a backend is unusable while down, draining, in maintenance or passively down")
{
    auto table = fresh_table();
    BackendId id = *table->allocate(1);

    table->set_health(id, Health::Down, HealthReason::ConnectionRefused);
    CHECK_FALSE(table->usable(id, kNow));
    CHECK(table->slot(id).health_reason.load() == HealthReason::ConnectionRefused);
    table->set_health(id, Health::Up, HealthReason::None);
    CHECK(table->usable(id, kNow));

    table->set_admin(id, AdminState::Drain);
    CHECK_FALSE(table->usable(id, kNow));
    table->set_admin(id, AdminState::Maint);
    CHECK_FALSE(table->usable(id, kNow));
    table->set_admin(id, AdminState::Ready);
    CHECK(table->usable(id, kNow));

    table->slot(id).passive_down_until_ms.store(kNow + 1);
    CHECK_FALSE(table->usable(id, kNow));
    CHECK(table->usable(id, kNow + 1));
}

TEST_CASE("acquire and release count active sessions")
{
    auto table = fresh_table();
    BackendId id = *table->allocate(1);
    table->acquire(id);
    table->acquire(id);
    table->release(id);
    table->acquire(id);
    CHECK(table->active(id) == 2);
    table->release(id);
    table->release(id);
    CHECK(table->active(id) == 0);
}

TEST_CASE("per-worker counters add up sessions and bytes per backend, each worker on its own lines")
{
    auto table = fresh_table();
    BackendId a = *table->allocate(1);
    BackendId b = *table->allocate(1);
    BackendCounters worker0;
    BackendCounters worker1;
    for (int i = 0; i < 3; ++i)
        worker0.count_session(a, table->epoch(a));
    worker1.count_session(a, table->epoch(a));
    worker0.count_bytes(a, table->epoch(a), 100, 5);
    worker1.count_bytes(a, table->epoch(a), 1, 2000);
    worker1.count_bytes(b, table->epoch(b), 9, 9);
    BackendCounters::Totals a0 = worker0.read(a, table->epoch(a));
    BackendCounters::Totals a1 = worker1.read(a, table->epoch(a));
    CHECK(a0.sessions + a1.sessions == 4);
    CHECK(a0.bytes_in + a1.bytes_in == 101);
    CHECK(a0.bytes_out + a1.bytes_out == 2005);
    CHECK(worker0.read(b, table->epoch(b)).bytes_in == 0);
    CHECK(worker1.read(b, table->epoch(b)).bytes_out == 9);
}

TEST_CASE("bytes in each direction accumulate separately")
{
    auto table = fresh_table();
    BackendId id = *table->allocate(1);
    BackendCounters counters;
    counters.count_bytes(id, table->epoch(id), 100, 7);
    counters.count_bytes(id, table->epoch(id), 0, 3);
    CHECK(counters.read(id, table->epoch(id)).bytes_in == 100);
    CHECK(counters.read(id, table->epoch(id)).bytes_out == 10);
}

TEST_CASE("concurrent acquire and release from several threads balance out exactly")
{
    auto table = fresh_table();
    BackendId id = *table->allocate(1);
    constexpr int kThreads = 4;
    constexpr int kRounds = 100'000;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&] {
            for (int i = 0; i < kRounds; ++i) {
                table->acquire(id);
                table->release(id);
            }
        });
    for (auto& t : threads)
        t.join();
    CHECK(table->active(id) == 0);
}

TEST_CASE("max_fails connect failures within fail_timeout mark a backend passively down")
{
    auto table = fresh_table();
    BackendId id = *table->allocate(1);
    CHECK_FALSE(table->record_connect_failure(id, kNow, 3, 10'000));
    CHECK_FALSE(table->record_connect_failure(id, kNow + 4'000, 3, 10'000));
    CHECK(table->usable(id, kNow + 4'000));
    // The third, still inside the window that opened at kNow, crosses max_fails.
    CHECK(table->record_connect_failure(id, kNow + 9'999, 3, 10'000));
    CHECK_FALSE(table->usable(id, kNow + 9'999));
    CHECK(table->slot(id).passive_down_until_ms.load() == kNow + 9'999 + 10'000);
    CHECK(table->slot(id).connect_failures.load() == 3);
}

TEST_CASE("only the failure that crosses max_fails reports the mark-down")
{
    auto table = fresh_table();
    BackendId id = *table->allocate(1);
    int reported = 0;
    for (int i = 0; i < 10; ++i)
        reported += table->record_connect_failure(id, kNow + i, 2, 1'000) ? 1 : 0;
    CHECK(reported == 1);
    CHECK(table->slot(id).connect_failures.load() == 10);
}

TEST_CASE("failures spread wider than fail_timeout never mark a backend down")
{
    auto table = fresh_table();
    BackendId id = *table->allocate(1);
    // Two failures per window, each window opened by the first failure after
    // the previous one expired.
    for (int window = 0; window < 5; ++window) {
        std::int64_t start = kNow + window * 1'000;
        CHECK_FALSE(table->record_connect_failure(id, start, 3, 1'000));
        CHECK_FALSE(table->record_connect_failure(id, start + 999, 3, 1'000));
    }
    CHECK(table->usable(id, kNow + 5'000));
    CHECK(table->slot(id).connect_failures.load() == 10);
}

TEST_CASE("a passive mark-down expires after fail_timeout and needs max_fails fresh failures")
{
    auto table = fresh_table();
    BackendId id = *table->allocate(1);
    REQUIRE(table->record_connect_failure(id, kNow, 1, 500));
    CHECK_FALSE(table->usable(id, kNow + 499));
    CHECK(table->usable(id, kNow + 500));

    // Failures of connects started before the mark do not open a new window.
    auto table2 = fresh_table();
    BackendId other = *table2->allocate(1);
    REQUIRE_FALSE(table2->record_connect_failure(other, kNow, 2, 500));
    REQUIRE(table2->record_connect_failure(other, kNow + 1, 2, 500));
    CHECK_FALSE(table2->record_connect_failure(other, kNow + 2, 2, 500));
    CHECK_FALSE(table2->record_connect_failure(other, kNow + 3, 2, 500));
    CHECK(table2->usable(other, kNow + 501));
    CHECK_FALSE(table2->record_connect_failure(other, kNow + 501, 2, 500));
    CHECK(table2->usable(other, kNow + 501));
    CHECK(table2->record_connect_failure(other, kNow + 502, 2, 500));
    CHECK_FALSE(table2->usable(other, kNow + 502));
}

TEST_CASE("max_fails of zero disables passive marking but still counts failures")
{
    auto table = fresh_table();
    BackendId id = *table->allocate(1);
    for (int i = 0; i < 100; ++i)
        CHECK_FALSE(table->record_connect_failure(id, kNow, 0, 10'000));
    CHECK(table->usable(id, kNow));
    CHECK(table->slot(id).connect_failures.load() == 100);
}

TEST_CASE("clear_passive_down makes a passively down backend usable at once")
{
    auto table = fresh_table();
    BackendId id = *table->allocate(1);
    REQUIRE(table->record_connect_failure(id, kNow, 1, 60'000));
    std::uint64_t before = table->version();
    table->clear_passive_down(id);
    CHECK(table->usable(id, kNow));
    CHECK(table->version() != before);
    // Clearing what is not set changes nothing.
    before = table->version();
    table->clear_passive_down(id);
    CHECK(table->version() == before);
}

TEST_CASE("the table version moves on every real change of health, admin state, weight or passive mark")
{
    auto table = fresh_table();
    BackendId id = *table->allocate(1);
    std::uint64_t g = table->version();
    auto moved = [&] {
        std::uint64_t now = table->version();
        bool changed = now != g;
        g = now;
        return changed;
    };

    table->set_health(id, Health::Down, HealthReason::Timeout);
    CHECK(moved());
    table->set_health(id, Health::Down, HealthReason::Reset);  // same health, new reason
    CHECK_FALSE(moved());
    table->set_health(id, Health::Up, HealthReason::None);
    CHECK(moved());

    table->set_admin(id, AdminState::Ready);
    CHECK_FALSE(moved());
    table->set_admin(id, AdminState::Drain);
    CHECK(moved());

    table->set_weight(id, 1);
    CHECK_FALSE(moved());
    table->set_weight(id, 7);
    CHECK(moved());

    CHECK_FALSE(table->record_connect_failure(id, kNow, 2, 1'000));
    CHECK_FALSE(moved());
    CHECK(table->record_connect_failure(id, kNow, 2, 1'000));
    CHECK(moved());
}

TEST_CASE("health, reason and admin state print as the words the admin socket shows")
{
    CHECK(to_string(Health::Up) == "up");
    CHECK(to_string(Health::Down) == "down");
    CHECK(to_string(HealthReason::None) == "none");
    CHECK(to_string(HealthReason::ConnectionRefused) == "connection refused");
    CHECK(to_string(HealthReason::Timeout) == "timeout");
    CHECK(to_string(HealthReason::PassiveFailures) == "passive failures");
    CHECK(to_string(AdminState::Ready) == "ready");
    CHECK(to_string(AdminState::Drain) == "drain");
    CHECK(to_string(AdminState::Maint) == "maint");
}

TEST_CASE("admin states parse back from their names and nothing else")
{
    for (AdminState state : {AdminState::Ready, AdminState::Drain, AdminState::Maint})
        CHECK(parse_admin_state(to_string(state)) == state);
    CHECK(parse_admin_state("maintenance") == AdminState::Maint);
    CHECK_FALSE(parse_admin_state(""));
    CHECK_FALSE(parse_admin_state("Ready"));
    CHECK_FALSE(parse_admin_state("up"));
}

TEST_CASE("a connect error maps to the health reason that names it")
{
    CHECK(reason_from(SysError::None) == HealthReason::None);
    CHECK(reason_from(SysError::ConnectionRefused) == HealthReason::ConnectionRefused);
    CHECK(reason_from(SysError::TimedOut) == HealthReason::Timeout);
    CHECK(reason_from(SysError::Unreachable) == HealthReason::Unreachable);
    CHECK(reason_from(SysError::ConnectionReset) == HealthReason::Reset);
    CHECK(reason_from(SysError::BrokenPipe) == HealthReason::Reset);
    CHECK(reason_from(SysError::TooManyFiles) == HealthReason::Other);
}

TEST_CASE("the monotonic clock never goes backwards")
{
    std::int64_t previous = monotonic_ms();
    CHECK(previous > 0);
    for (int i = 0; i < 1000; ++i) {
        std::int64_t now = monotonic_ms();
        REQUIRE(now >= previous);
        previous = now;
    }
}

TEST_CASE("every slot has a cache line to itself")
{
    STATIC_REQUIRE(alignof(BackendSlot) == 64);
    STATIC_REQUIRE(sizeof(BackendSlot) == 64);
}

TEST_CASE("try_acquire never lets more than max_connections sessions in, across threads")
{
    auto table = fresh_table();
    BackendId id = *table->allocate(1);
    table->set_limits(id, 5, 0);
    std::atomic<int> granted{0};
    std::atomic<std::uint32_t> highest{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&] {
            for (int i = 0; i < 20000; ++i) {
                if (!table->try_acquire(id))
                    continue;
                granted.fetch_add(1);
                std::uint32_t now = table->active(id);
                std::uint32_t seen = highest.load();
                while (now > seen && !highest.compare_exchange_weak(seen, now)) {}
                table->release(id);
            }
        });
    for (auto& t : threads)
        t.join();
    CHECK(granted.load() > 0);
    CHECK(highest.load() <= 5);
    CHECK(table->active(id) == 0);
}

TEST_CASE("try_acquire fails exactly at the cap and succeeds again after a release")
{
    auto table = fresh_table();
    BackendId id = *table->allocate(1);
    table->set_limits(id, 2, 0);
    CHECK(table->try_acquire(id));
    CHECK(table->has_room(id));
    CHECK(table->try_acquire(id));
    CHECK_FALSE(table->has_room(id));
    CHECK_FALSE(table->try_acquire(id));
    CHECK(table->active(id) == 2);
    table->release(id);
    CHECK(table->try_acquire(id));
    CHECK(table->active(id) == 2);
}

TEST_CASE("a backend without max_connections is never full")
{
    auto table = fresh_table();
    BackendId id = *table->allocate(1);
    for (int i = 0; i < 1000; ++i)
        REQUIRE(table->try_acquire(id));
    CHECK(table->has_room(id));
    CHECK(table->max_connections(id) == 0);
}

TEST_CASE("slow start ramps the weight linearly from when the backend came up")
{
    auto table = fresh_table();
    BackendId id = *table->allocate(4);
    table->set_limits(id, 0, 1000);
    constexpr auto full = 4 * BackendTable::kWeightScale;
    // In service since start: full weight at once.
    CHECK(table->ramped_weight(id, 4, kNow) == full);
    table->mark_came_up(id, kNow);
    CHECK(table->ramped_weight(id, 4, kNow) == 1);  // the smallest share, never 0
    CHECK(table->ramped_weight(id, 4, kNow + 250) == full / 4);
    CHECK(table->ramped_weight(id, 4, kNow + 500) == full / 2);
    CHECK(table->ramped_weight(id, 4, kNow + 1000) == full);
    CHECK(table->ramped_weight(id, 4, kNow + 5000) == full);
}

TEST_CASE("coming back from down or from maint starts the ramp; drain to ready does not")
{
    auto table = fresh_table();
    BackendId id = *table->allocate(1);
    table->set_limits(id, 0, 60'000);
    const std::int64_t now = monotonic_ms();
    constexpr auto full = BackendTable::kWeightScale;
    table->set_admin(id, AdminState::Drain);
    table->set_admin(id, AdminState::Ready);
    CHECK(table->ramped_weight(id, 1, now) == full);
    table->set_admin(id, AdminState::Maint);
    table->set_admin(id, AdminState::Ready);
    CHECK(table->ramped_weight(id, 1, monotonic_ms()) < full / 2);

    BackendId other = *table->allocate(1);
    table->set_limits(other, 0, 60'000);
    table->set_health(other, Health::Down, HealthReason::Timeout);
    CHECK(table->ramped_weight(other, 1, monotonic_ms()) == full);
    table->set_health(other, Health::Up, HealthReason::None);
    CHECK(table->ramped_weight(other, 1, monotonic_ms()) < full / 2);
}
