#include "sluice/service_health.h"

#include "sluice/config.h"

#include <catch2/catch.hpp>

#include <memory>

using namespace sluice;

namespace {

constexpr std::string_view kTwoPools = R"(
[[listeners]]
name = "pg"
listen = "127.0.0.1:5432"
pool = "pg"

[pools.pg]
backends = [{ address = "10.0.0.1:5432" }, { address = "10.0.0.2:5432", backup = true }]

[pools.cache]
backends = [{ address = "10.0.0.3:6379", name = "redis-a" }]
)";

struct Generation {
    std::unique_ptr<BackendTable> table = std::make_unique<BackendTable>();
    std::shared_ptr<Runtime> runtime;

    Generation()
    {
        ConfigResult parsed = parse_config(kTwoPools, "t.toml");
        REQUIRE(parsed.ok());
        std::string error;
        runtime = build_runtime(std::move(*parsed.config), *table, nullptr, &error);
        REQUIRE(runtime);
        runtime->listeners.resize(runtime->config.listeners.size());
        runtime->listeners[0].bound = *SocketAddress::parse("127.0.0.1:5432");
    }
    BackendId id(std::string_view pool, std::size_t index) const
    {
        return runtime->find_pool(pool)->backend_ids.at(index);
    }
    ServiceHealth check(bool draining = false) const
    {
        return check_service_health(*runtime, *table, 1'000, draining);
    }
};

} // namespace

TEST_CASE("health is ok while every listener is bound and every pool has a backend")
{
    Generation g;
    ServiceHealth health = g.check();
    CHECK(health.healthy);
    CHECK(health.body == "ok\n");
}

TEST_CASE("health names the pool that has no usable backend")
{
    Generation g;
    g.table->set_health(g.id("cache", 0), Health::Down, HealthReason::Timeout);
    ServiceHealth health = g.check();
    CHECK_FALSE(health.healthy);
    CHECK(health.body == "pool \"cache\": no usable backend\n");
}

TEST_CASE("a backup keeps its pool healthy; a weight of 0, maintenance or a passive mark-down do not")
{
    Generation g;
    g.table->set_health(g.id("pg", 0), Health::Down, HealthReason::Timeout);
    CHECK(g.check().healthy);  // the backup can take sessions

    g.table->set_weight(g.id("pg", 1), 0);
    CHECK(g.check().body == "pool \"pg\": no usable backend\n");
    g.table->set_weight(g.id("pg", 1), 1);
    g.table->set_admin(g.id("pg", 1), AdminState::Maint);
    CHECK(g.check().body == "pool \"pg\": no usable backend\n");

    g.table->set_admin(g.id("cache", 0), AdminState::Ready);
    REQUIRE(g.table->record_connect_failure(g.id("cache", 0), 900, 1, 10'000));
    CHECK(g.check().body == "pool \"pg\": no usable backend\npool \"cache\": no usable backend\n");
}

TEST_CASE("health fails while draining and while a listener is not bound")
{
    Generation g;
    CHECK(g.check(true).body == "draining: listeners closed, no new sessions\n");
    g.runtime->listeners[0].bound = SocketAddress{};
    ServiceHealth health = g.check();
    CHECK_FALSE(health.healthy);
    CHECK(health.body == "listener \"pg\": not bound\n");
}
