#include "sluice/dashboard.h"

#include <catch2/catch.hpp>

#include <string>

using namespace sluice;

namespace {

BackendSnapshot backend(const std::string& name, std::uint64_t total, std::uint64_t in, std::uint64_t out)
{
    BackendSnapshot b;
    b.pool = "p";
    b.name = name;
    b.address = "127.0.0.1:9";
    b.total = total;
    b.bytes_in = in;
    b.bytes_out = out;
    return b;
}

StatsSnapshot snapshot_of(std::vector<BackendSnapshot> backends, std::uint64_t generation = 1)
{
    StatsSnapshot s;
    s.generation = generation;
    s.backends = std::move(backends);
    ListenerSnapshot l;
    l.name = "front";
    l.protocol = "tcp";
    l.address = "127.0.0.1:80";
    for (const BackendSnapshot& b : s.backends)
        l.totals.accepted += b.total;
    s.listeners.push_back(l);
    PoolSnapshot pool;
    pool.name = "p";
    s.pools.push_back(pool);
    return s;
}

} // namespace

TEST_CASE("rate ring keeps the last five minutes, oldest first")
{
    RateRing ring;
    CHECK(ring.last() == 0);
    for (int i = 0; i < 310; ++i)
        ring.push(i);
    const std::vector<double> values = ring.values();
    REQUIRE(values.size() == RateRing::kCapacity);
    CHECK(values.front() == 10);
    CHECK(values.back() == 309);
    CHECK(ring.last() == 309);
}

TEST_CASE("dashboard history turns counters into per-second rates, per backend, listener and in total")
{
    DashboardHistory history;
    history.sample(snapshot_of({backend("a", 10, 1000, 2000), backend("b", 0, 0, 0)}), 100.0, 0);
    history.sample(snapshot_of({backend("a", 30, 5000, 2000), backend("b", 4, 0, 400)}), 102.0, 2.0);
    REQUIRE(history.backend("p/a"));
    CHECK(history.backend("p/a")->sessions.values() == std::vector<double>{0, 10});
    CHECK(history.backend("p/a")->bytes_in.last() == 2000);
    CHECK(history.backend("p/a")->bytes_out.last() == 0);
    CHECK(history.backend("p/b")->sessions.last() == 2);
    CHECK(history.listener("front")->sessions.last() == 12);
    CHECK(history.total().sessions.last() == 12);
    CHECK(history.total().bytes_out.last() == 200);
    CHECK(history.events().empty());  // nothing changed state
}

TEST_CASE("dashboard history logs down, up, admin state, weight, reloads and membership")
{
    DashboardHistory history;
    BackendSnapshot a = backend("a", 0, 0, 0);
    history.sample(snapshot_of({a}), 1.0, 0);
    a.health = Health::Down;
    a.why = "connection refused";
    history.sample(snapshot_of({a}), 2.0, 1);
    a.health = Health::Up;
    a.admin = AdminState::Drain;
    a.weight = 4;
    history.sample(snapshot_of({a, backend("b", 0, 0, 0)}, 2), 3.0, 1);
    StatsSnapshot failed = snapshot_of({a}, 2);
    failed.reloads_failed = 1;
    history.sample(failed, 4.0, 1);

    std::vector<std::string> messages;
    for (const DashboardEvent& e : history.events())
        messages.push_back(e.kind + ": " + e.message);
    CHECK(messages == std::vector<std::string>{
                          "down: p/a is DOWN: connection refused",
                          "reload: configuration reloaded (generation 2)",
                          "up: p/a is UP",
                          "state: p/a admin state ready -> drain",
                          "weight: p/a weight 1 -> 4",
                          "added: p/b added (127.0.0.1:9)",
                          "reload_failed: reload rejected, generation 2 keeps running",
                          "removed: p/b removed",
                      });
    CHECK(history.events().front().time == 2.0);
    CHECK_FALSE(history.backend("p/b"));  // a removed backend takes its history along
}

TEST_CASE("the start's generation is no reload, even when the first sample comes before it")
{
    DashboardHistory history;
    history.sample(snapshot_of({}, 0), 1.0, 0);
    history.sample(snapshot_of({}, 1), 2.0, 1);
    CHECK(history.events().empty());
    DashboardHistory early;  // a reload before the second sample
    early.sample(snapshot_of({}, 0), 1.0, 0);
    early.sample(snapshot_of({}, 2), 2.0, 1);
    REQUIRE(early.events().size() == 1);
    CHECK(early.events().front().message == "configuration reloaded (generation 2)");
}

TEST_CASE("dashboard history keeps a bounded number of events, dropping the oldest")
{
    DashboardHistory history;
    for (std::size_t i = 0; i < DashboardHistory::kMaxEvents + 5; ++i)
        history.add_event({static_cast<double>(i), "state", "p/a", "x"});
    REQUIRE(history.events().size() == DashboardHistory::kMaxEvents);
    CHECK(history.events().front().time == 5);
}

TEST_CASE("a counter that goes back (a backend re-added by a reload) is not a negative rate")
{
    DashboardHistory history;
    history.sample(snapshot_of({backend("a", 50, 0, 0)}), 1.0, 0);
    history.sample(snapshot_of({backend("a", 3, 0, 0)}), 2.0, 1);
    CHECK(history.backend("p/a")->sessions.last() == 0);
}

TEST_CASE("api state JSON has stable keys, rates and the history series")
{
    DashboardHistory history;
    BackendSnapshot a = backend("a", 0, 0, 0);
    a.check = "tcp";
    a.checked = true;
    a.check_passed = false;
    a.verdict = "connection \"refused\"";
    a.role = "unknown";
    a.health = Health::Down;
    a.why = "connection refused";
    history.sample(snapshot_of({a}), 10.0, 0);
    a.total = 3;
    a.bytes_out = 15;
    history.sample(snapshot_of({a}), 11.0, 1);
    const std::string json = render_dashboard_state(snapshot_of({a}), history, 11.5, true);
    CHECK(json.rfind(R"({"version":1,"time":11.500,"uptime_seconds":0.000,"generation":1,"reloads_ok":0,)"
                     R"("reloads_failed":0,"actions":true,"interval_seconds":1,"total":{"sessions_per_second":3,)",
                     0)
          == 0);
    CHECK(json.find(R"("listeners":[{"name":"front","protocol":"tcp","address":"127.0.0.1:80","sessions":3,)"
                    R"("refused":0,"dropped":0,"bytes_in":0,"bytes_out":0,"sessions_per_second":3,)")
          != std::string::npos);
    CHECK(json.find(R"("pools":[{"name":"p","sessions":0,"active":0,"bytes_in":0,"bytes_out":0,"failed_connects":0,)"
                    R"("retries":0,"rejected":0,"backends_up":0,"backends":1}])")
          != std::string::npos);
    CHECK(json.find(R"("backends":[{"pool":"p","name":"a","address":"127.0.0.1:9","backup":false,"state":"ready",)"
                    R"("health":"down","why":"connection refused","weight":1,"active":0,"total":3,)"
                    R"("connect_failures":0,"bytes_in":0,"bytes_out":15,"check":"tcp","check_passed":false,)"
                    R"("verdict":"connection \"refused\"","role":"unknown","check_seconds":0.000000,)"
                    R"("sessions_per_second":3,"bytes_in_per_second":0,"bytes_out_per_second":15,)"
                    R"("history":{"sessions_per_second":[0,3],"bytes_per_second":[0,15]}}])")
          != std::string::npos);
    // Down since the first sample: no change seen, so no event.
    CHECK(json.ends_with(R"("events":[]})"));
}

TEST_CASE("server actions parse state and weight bodies and percent-encoded names")
{
    ServerAction drain = parse_server_action("/api/servers/p/a/state", "state=drain");
    REQUIRE(drain.command);
    CHECK(drain.command->kind == AdminCommand::Kind::SetState);
    CHECK(drain.command->pool == "p");
    CHECK(drain.command->backend == "a");
    CHECK(drain.command->state == AdminState::Drain);
    CHECK(parse_server_action("/api/servers/p/a/state", "state=maint\r\n").command->state == AdminState::Maint);
    CHECK(parse_server_action("/api/servers/p/a/state", "state=ready").command->state == AdminState::Ready);

    ServerAction weight = parse_server_action("/api/servers/p/%5B%3A%3A1%5D%3A80/state?x=1", "weight=256");
    REQUIRE(weight.command);
    CHECK(weight.command->kind == AdminCommand::Kind::SetWeight);
    CHECK(weight.command->backend == "[::1]:80");
    CHECK(weight.command->weight == 256);
    CHECK(parse_server_action("/api/servers/p/a/state", "weight=0").command->weight == 0);

    const std::vector<std::pair<std::string, std::string>> bad_bodies{
        {"state=bogus", "unknown state \"bogus\", expected ready, drain or maint"},
        {"weight=257", "weight \"257\" is not an integer from 0 to 256"},
        {"weight=-1", "weight \"-1\" is not an integer from 0 to 256"},
        {"weight=3x", "weight \"3x\" is not an integer from 0 to 256"},
        {"colour=red", "unknown field \"colour\", expected state or weight"},
        {"weight=", "expected a body state=ready|drain|maint or weight=N"},
        {"state=ready now", "expected a body state=ready|drain|maint or weight=N"},
        {"", "expected a body state=ready|drain|maint or weight=N"},
        {"drain", "expected a body state=ready|drain|maint or weight=N"},
    };
    for (const auto& [body, error] : bad_bodies) {
        INFO(body);
        ServerAction action = parse_server_action("/api/servers/p/a/state", body);
        CHECK_FALSE(action.command);
        CHECK_FALSE(action.not_found);
        CHECK(action.error == error);
    }
    for (const char* target : {"/api/servers/p/state", "/api/servers//a/state", "/api/servers/p/a/b/state",
                               "/api/servers/p/a", "/api/servers/state", "/api/servers/p/%zz/state",
                               "/api/servers/p/a%2Fb/state", "/api/servers/p/a%2/state",
                               "/api/servers/p/a%20b/state"}) {
        INFO(target);
        ServerAction action = parse_server_action(target, "state=drain");
        CHECK_FALSE(action.command);
        CHECK(action.not_found);
    }
}

TEST_CASE("the bearer token must match exactly, and no token configured matches nothing")
{
    CHECK(bearer_token_matches("Authorization: Bearer s3cret\r\n", "s3cret"));
    CHECK(bearer_token_matches("host: x\r\nauthorization: bearer s3cret\r\n", "s3cret"));
    CHECK_FALSE(bearer_token_matches("Authorization: Bearer s3cre\r\n", "s3cret"));
    CHECK_FALSE(bearer_token_matches("Authorization: Bearer s3crett\r\n", "s3cret"));
    CHECK_FALSE(bearer_token_matches("Authorization: Bearer s3creT\r\n", "s3cret"));
    CHECK_FALSE(bearer_token_matches("Authorization: Basic s3cret\r\n", "s3cret"));
    CHECK_FALSE(bearer_token_matches("Authorization: s3cret\r\n", "s3cret"));
    CHECK_FALSE(bearer_token_matches("Authorization: Bearer \r\n", "s3cret"));
    CHECK_FALSE(bearer_token_matches("Host: x\r\n", "s3cret"));
    CHECK_FALSE(bearer_token_matches("Authorization: Bearer \r\n", ""));
    CHECK_FALSE(bearer_token_matches("Authorization: Bearer x\r\n", ""));
}

TEST_CASE("the page is compiled in, self-contained and polls /api/state")
{
    const std::string_view page = dashboard_page();
    CHECK(page.starts_with("<!doctype html>"));
    CHECK(page.find("fetch(\"/api/state\"") != std::string_view::npos);
    CHECK(page.find("<script src") == std::string_view::npos);
    CHECK(page.find("<link rel=\"stylesheet\"") == std::string_view::npos);
    CHECK(page.find("https://") == std::string_view::npos);
    CHECK(page.ends_with("</html>\n"));
}
