#include "sluice/metrics.h"

#include <catch2/catch.hpp>

using namespace sluice;

TEST_CASE("prometheus text has HELP and TYPE once per family, then its samples")
{
    StatsSnapshot snap;
    snap.uptime_seconds = 12.5;
    snap.generation = 3;
    snap.reloads_ok = 2;
    snap.reloads_failed = 1;
    snap.log_lines_dropped = 5;
    ListenerSnapshot listener;
    listener.name = "front";
    listener.protocol = "tcp";
    listener.totals.accepted = 7;
    listener.totals.bytes_in = 100;
    listener.totals.denied = 3;
    listener.totals.source_limited = 2;
    snap.listeners.push_back(listener);
    PoolSnapshot pool;
    pool.name = "p";
    pool.retries = 4;
    snap.pools.push_back(pool);
    BackendSnapshot a;
    a.pool = "p";
    a.name = "a";
    a.address = "10.0.0.1:80";
    a.admin = AdminState::Drain;
    a.active = 1;
    a.total = 9;
    BackendSnapshot b = a;
    b.name = "b";
    b.passive_down = true;
    snap.backends = {a, b};
    snap.workers = {{0, 1.25, 3}, {1, 0.5, 0}};

    const std::string text = format_prometheus(snap);
    CHECK(text.rfind("# HELP sluice_uptime_seconds Seconds since sluice started.\n"
                     "# TYPE sluice_uptime_seconds gauge\n"
                     "sluice_uptime_seconds 12.500\n"
                     "# HELP sluice_config_generation ",
                     0)
          == 0);
    CHECK(text.find("\nsluice_config_generation 3\n") != std::string::npos);
    CHECK(text.find("\nsluice_reloads_total{result=\"ok\"} 2\nsluice_reloads_total{result=\"failed\"} 1\n")
          != std::string::npos);
    CHECK(text.find("\nsluice_listener_denied_total{listener=\"front\",protocol=\"tcp\"} 3\n") != std::string::npos);
    CHECK(text.find("\nsluice_listener_source_limited_total{listener=\"front\",protocol=\"tcp\"} 2\n")
          != std::string::npos);
    CHECK(text.find("\n# TYPE sluice_log_lines_dropped_total counter\nsluice_log_lines_dropped_total 5\n")
          != std::string::npos);
    CHECK(text.find("\nsluice_listener_accepted_total{listener=\"front\",protocol=\"tcp\"} 7\n") != std::string::npos);
    CHECK(text.find("\nsluice_listener_bytes_in_total{listener=\"front\",protocol=\"tcp\"} 100\n") != std::string::npos);
    CHECK(text.find("\nsluice_pool_retries_total{pool=\"p\"} 4\n") != std::string::npos);
    CHECK(text.find("\nsluice_backend_up{pool=\"p\",backend=\"a\",address=\"10.0.0.1:80\"} 1\n"
                    "sluice_backend_up{pool=\"p\",backend=\"b\",address=\"10.0.0.1:80\"} 0\n")
          != std::string::npos);
    CHECK(text.find("\nsluice_backend_state{pool=\"p\",backend=\"a\",address=\"10.0.0.1:80\",state=\"ready\"} 0\n"
                    "sluice_backend_state{pool=\"p\",backend=\"a\",address=\"10.0.0.1:80\",state=\"drain\"} 1\n"
                    "sluice_backend_state{pool=\"p\",backend=\"a\",address=\"10.0.0.1:80\",state=\"maint\"} 0\n")
          != std::string::npos);
    CHECK(text.find("\nsluice_backend_sessions_total{pool=\"p\",backend=\"a\",address=\"10.0.0.1:80\"} 9\n")
          != std::string::npos);
    CHECK(text.find("\nsluice_worker_cpu_seconds_total{worker=\"0\"} 1.250\n"
                    "sluice_worker_cpu_seconds_total{worker=\"1\"} 0.500\n")
          != std::string::npos);
    CHECK(text.find("\nsluice_worker_sessions{worker=\"0\"} 3\nsluice_worker_sessions{worker=\"1\"} 0\n")
          != std::string::npos);

    // Every family: exactly one HELP and one TYPE, and its samples follow them.
    std::size_t helps = 0, types = 0, at = 0;
    while ((at = text.find("# HELP ", at)) != std::string::npos) {
        ++helps;
        std::string name = text.substr(at + 7, text.find(' ', at + 7) - at - 7);
        CHECK(text.find("# HELP " + name + " ", at + 1) == std::string::npos);
        std::size_t type = text.find("\n# TYPE " + name + " ", at);
        CHECK(type == text.find('\n', at));
        ++at;
    }
    for (at = 0; (at = text.find("# TYPE ", at)) != std::string::npos; ++at)
        ++types;
    CHECK(helps == 39);
    CHECK(types == 39);
    CHECK(text.back() == '\n');
}

TEST_CASE("prometheus label values escape backslash, quote and newline")
{
    CHECK(escape_label("a\\b\"c\nd") == "a\\\\b\\\"c\\nd");
}

TEST_CASE("checked backends report their last check's status, duration and role; unchecked ones none")
{
    StatsSnapshot snap;
    BackendSnapshot primary;
    primary.pool = "rw";
    primary.name = "pg1";
    primary.address = "10.0.0.1:5432";
    primary.check = "postgres";
    primary.checked = true;
    primary.check_passed = true;
    primary.role = "primary";
    primary.check_seconds = 0.0042;
    BackendSnapshot replica = primary;
    replica.name = "pg2";
    replica.check_passed = false;
    replica.role = "replica";
    BackendSnapshot plain = primary;
    plain.name = "plain";
    plain.check.clear();
    plain.checked = false;
    snap.backends = {primary, replica, plain};
    const std::string text = format_prometheus(snap);
    const std::string pg1 = R"(pool="rw",backend="pg1",address="10.0.0.1:5432")";
    const std::string pg2 = R"(pool="rw",backend="pg2",address="10.0.0.1:5432")";
    CHECK(text.find("\nsluice_backend_check_status{" + pg1 + ",check=\"postgres\"} 1\n"
                    "sluice_backend_check_status{" + pg2 + ",check=\"postgres\"} 0\n# HELP")
          != std::string::npos);
    CHECK(text.find("\nsluice_backend_check_duration_seconds{" + pg1 + "} 0.004200\n") != std::string::npos);
    CHECK(text.find("\nsluice_backend_role{" + pg1 + ",role=\"primary\"} 1\n"
                    "sluice_backend_role{" + pg1 + ",role=\"replica\"} 0\n"
                    "sluice_backend_role{" + pg1 + ",role=\"unknown\"} 0\n"
                    "sluice_backend_role{" + pg2 + ",role=\"primary\"} 0\n"
                    "sluice_backend_role{" + pg2 + ",role=\"replica\"} 1\n")
          != std::string::npos);
    CHECK(text.find("backend=\"plain\",address=\"10.0.0.1:5432\",check=") == std::string::npos);
    CHECK(text.find("sluice_backend_role{pool=\"rw\",backend=\"plain\"") == std::string::npos);
}

TEST_CASE("histograms are exposed with cumulative buckets, +Inf, _sum and _count per backend and per pool")
{
    StatsSnapshot snap;
    PoolSnapshot pool;
    pool.name = "p";
    pool.histograms.session_duration.record(kSessionLadder, 0.05);
    pool.histograms.session_duration.record(kSessionLadder, 2);
    snap.pools.push_back(pool);
    BackendSnapshot a;
    a.pool = "p";
    a.name = "a";
    a.address = "10.0.0.1:80";
    a.connect_times.record(kConnectLadder, 0.0007);
    a.connect_times.record(kConnectLadder, 0.0007);
    a.connect_times.record(kConnectLadder, 20);
    BackendSnapshot checked = a;
    checked.name = "c";
    checked.check = "tcp";
    checked.check_durations.record(kConnectLadder, 0.003);
    snap.backends = {a, checked};

    const std::string text = format_prometheus(snap);
    INFO(text);
    const std::string labels = R"(pool="p",backend="a",address="10.0.0.1:80")";
    CHECK(text.find("# TYPE sluice_backend_connect_duration_seconds histogram\n"
                    "sluice_backend_connect_duration_seconds_bucket{"
                    + labels + ",le=\"0.0005\"} 0\n"
                    "sluice_backend_connect_duration_seconds_bucket{"
                    + labels + ",le=\"0.001\"} 2\n"
                    "sluice_backend_connect_duration_seconds_bucket{"
                    + labels + ",le=\"0.0025\"} 2\n")
          != std::string::npos);
    CHECK(text.find("sluice_backend_connect_duration_seconds_bucket{" + labels + ",le=\"10\"} 2\n"
                    "sluice_backend_connect_duration_seconds_bucket{" + labels + ",le=\"+Inf\"} 3\n"
                    "sluice_backend_connect_duration_seconds_sum{" + labels + "} 20.001400\n"
                    "sluice_backend_connect_duration_seconds_count{" + labels + "} 3\n")
          != std::string::npos);
    // Check durations only for backends with a check.
    CHECK(text.find("sluice_backend_health_check_duration_seconds_bucket{" + labels) == std::string::npos);
    CHECK(text.find("sluice_backend_health_check_duration_seconds_count{pool=\"p\",backend=\"c\",address=\"10.0.0.1:"
                    "80\",check=\"tcp\"} 1\n")
          != std::string::npos);
    CHECK(text.find("sluice_pool_session_duration_seconds_bucket{pool=\"p\",le=\"0.01\"} 0\n"
                    "sluice_pool_session_duration_seconds_bucket{pool=\"p\",le=\"0.1\"} 1\n")
          != std::string::npos);
    CHECK(text.find("sluice_pool_session_duration_seconds_bucket{pool=\"p\",le=\"86400\"} 2\n"
                    "sluice_pool_session_duration_seconds_bucket{pool=\"p\",le=\"+Inf\"} 2\n"
                    "sluice_pool_session_duration_seconds_sum{pool=\"p\"} 2.050000\n"
                    "sluice_pool_session_duration_seconds_count{pool=\"p\"} 2\n")
          != std::string::npos);
    // The queue wait family is there (zero until the queue records into it).
    CHECK(text.find("# TYPE sluice_pool_queue_wait_seconds histogram\n"
                    "sluice_pool_queue_wait_seconds_bucket{pool=\"p\",le=\"0.001\"} 0\n")
          != std::string::npos);
    CHECK(text.find("sluice_pool_queue_wait_seconds_count{pool=\"p\"} 0\n") != std::string::npos);
}
