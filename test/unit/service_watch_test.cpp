// ServiceWatch: the edges of "in service" that on_down = "close" and
// on_up = "close_backup" act on, from every cause (a check, a passive mark,
// maint), and none from drain or from a backend that was never in service.
#include "sluice/service_watch.h"

#include "sluice/config.h"

#include <catch2/catch.hpp>

#include <memory>

using namespace sluice;

namespace {

constexpr std::int64_t kNow = 1'000'000;

std::shared_ptr<Runtime> runtime_from(const char* toml, BackendTable& table)
{
    ConfigResult parsed = parse_config(toml, "watch.toml");
    REQUIRE(parsed.ok());
    std::string error;
    auto runtime = build_runtime(std::move(*parsed.config), table, nullptr, &error);
    REQUIRE(runtime);
    return runtime;
}

constexpr const char* kFailover = R"(
[[listeners]]
listen = "127.0.0.1:0"
pool = "db"

[pools.db]
on_down = "close"
on_up = "close_backup"
backends = [
  { address = "127.0.0.1:5432", name = "pg1" },
  { address = "127.0.0.1:5433", name = "pg2" },
  { address = "127.0.0.1:5434", name = "spare", backup = true },
]

[pools.plain]
backends = [{ address = "127.0.0.1:6379" }]
)";

} // namespace

TEST_CASE("a backend leaving service by check, passive mark or maint ends its sessions; drain does not")
{
    auto table = std::make_unique<BackendTable>();
    auto runtime = runtime_from(kFailover, *table);
    ServiceWatch watch(*table);
    watch.adopt(*runtime, kNow);
    REQUIRE(watch.needed());
    const BackendId pg1 = runtime->pools[0].backend_ids[0];
    const BackendId pg2 = runtime->pools[0].backend_ids[1];
    CHECK(watch.scan(kNow).empty());

    table->set_admin(pg1, AdminState::Drain);
    CHECK(watch.scan(kNow).empty());  // drain lets sessions finish

    table->set_health(pg1, Health::Down, HealthReason::WrongRole);
    auto actions = watch.scan(kNow);
    REQUIRE(actions.size() == 1);
    CHECK(actions[0].backends == std::vector<BackendId>{pg1});
    CHECK(actions[0].cause == EndCause::BackendDown);
    CHECK(actions[0].why == R"(db/pg1 left service (on_down = "close"))");
    CHECK(watch.scan(kNow).empty());  // an edge, once

    table->slot(pg2).passive_down_until_ms.store(kNow + 500);
    actions = watch.scan(kNow);
    REQUIRE(actions.size() == 1);
    CHECK(actions[0].backends == std::vector<BackendId>{pg2});

    // The passive mark expires: pg2 is back, and it is a primary, so the
    // backup's sessions go (the pool says close_backup).
    actions = watch.scan(kNow + 500);
    REQUIRE(actions.size() == 1);
    CHECK(actions[0].cause == EndCause::PrimaryUp);
    CHECK(actions[0].backends == runtime->pools[0].backups);
    CHECK(actions[0].why.starts_with("db/pg2 is back"));

    table->set_admin(pg2, AdminState::Maint);
    actions = watch.scan(kNow + 500);
    REQUIRE(actions.size() == 1);
    CHECK(actions[0].backends == std::vector<BackendId>{pg2});
}

TEST_CASE("a backup coming back closes nothing, and pools that keep sessions are not watched")
{
    auto table = std::make_unique<BackendTable>();
    auto runtime = runtime_from(kFailover, *table);
    ServiceWatch watch(*table);
    watch.adopt(*runtime, kNow);
    const BackendId spare = runtime->pools[0].backups.at(0);
    table->set_health(spare, Health::Down, HealthReason::Timeout);
    REQUIRE(watch.scan(kNow).size() == 1);  // on_down applies to backups too
    table->set_health(spare, Health::Up, HealthReason::None);
    CHECK(watch.scan(kNow).empty());

    // The plain pool (on_down/on_up keep) is not watched at all.
    const BackendId plain = runtime->pools[1].backend_ids[0];
    table->set_health(plain, Health::Down, HealthReason::Timeout);
    CHECK(watch.scan(kNow).empty());

    auto only_plain = runtime_from(R"(
[[listeners]]
listen = "127.0.0.1:0"
pool = "plain"
[pools.plain]
backends = [{ address = "127.0.0.1:6379" }]
)",
                                   *table);
    watch.adopt(*only_plain, kNow);
    CHECK_FALSE(watch.needed());
}

TEST_CASE("an edge across a reload still counts; a new backend starts without one")
{
    auto table = std::make_unique<BackendTable>();
    auto first = runtime_from(kFailover, *table);
    ServiceWatch watch(*table);
    watch.adopt(*first, kNow);
    const BackendId pg1 = first->pools[0].backend_ids[0];
    table->set_health(pg1, Health::Down, HealthReason::ConnectionRefused);

    // The reload keeps pg1 (same pool and address, same slot).
    std::string error;
    ConfigResult parsed = parse_config(kFailover, "watch.toml");
    REQUIRE(parsed.ok());
    auto second = build_runtime(std::move(*parsed.config), *table, first.get(), &error);
    REQUIRE(second);
    REQUIRE(second->pools[0].backend_ids[0] == pg1);
    watch.adopt(*second, kNow);
    auto actions = watch.scan(kNow);
    REQUIRE(actions.size() == 1);
    CHECK(actions[0].backends == std::vector<BackendId>{pg1});
}

TEST_CASE("a pool that checks roles allocates its new backends down until a check confirms them")
{
    auto table = std::make_unique<BackendTable>();
    auto runtime = runtime_from(R"(
[[listeners]]
listen = "127.0.0.1:0"
pool = "rw"
[pools.rw]
health = { protocol = "redis", role = "primary" }
backends = [{ address = "127.0.0.1:6379" }]
[pools.any]
health = { protocol = "redis" }
backends = [{ address = "127.0.0.1:6380" }]
)",
                                *table);
    const BackendSlot& rw = table->slot(runtime->pools[0].backend_ids[0]);
    CHECK(rw.health.load() == Health::Down);
    CHECK(rw.health_reason.load() == HealthReason::Unconfirmed);
    CHECK(table->slot(runtime->pools[1].backend_ids[0]).health.load() == Health::Up);
}
