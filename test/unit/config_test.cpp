// Tests of config parsing and validation (src/config.cpp).
//
// Most cases are rows of tables: an ErrorCase is a config and the exact
// errors it must give, in order; a ValidCase is a config that must parse and
// the parsed values it must give. Each row runs as its own DYNAMIC_SECTION,
// so a failure is reported under the row's name. Cases with generated input
// or whole-config checks stay ordinary TEST_CASEs.
#include "sluice/config.h"

#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <string>
#include <unistd.h>
#include <vector>

using namespace std::chrono_literals;
using sluice::BalanceAlgorithm;
using sluice::Config;
using sluice::CpuAffinity;
using sluice::ConfigResult;
using sluice::Duration;
using sluice::HealthCheckConfig;
using sluice::PoolConfig;
using sluice::Protocol;
using Kind = HealthCheckConfig::Kind;
using Role = HealthCheckConfig::Role;

namespace {

// Config text in these tests starts on the line after R"( so that line numbers
// in expected messages match what a reader counts: the leading newline is
// dropped before parsing.
std::string_view body(std::string_view text)
{
    if (!text.empty() && text.front() == '\n')
        text.remove_prefix(1);
    return text;
}

ConfigResult parse(std::string_view text)
{
    return sluice::parse_config(body(text), "x.toml");
}

std::vector<std::string> errors_in(std::string_view text)
{
    std::vector<std::string> lines;
    for (const auto& error : parse(text).errors)
        lines.push_back(error.to_string());
    return lines;
}

Config valid(std::string_view text)
{
    auto result = parse(text);
    for (const auto& error : result.errors)
        FAIL_CHECK(error.to_string());
    REQUIRE(result.ok());
    return *result.config;
}

// A valid listener and pool to append to a section under test, starting at
// the line after it.
constexpr std::string_view kListenerAndPool = R"(
[[listeners]]
listen = "127.0.0.1:0"
pool = "p"

[pools.p]
backends = [{ address = "127.0.0.1:9" }]
)";

std::string with_listener_and_pool(std::string_view section)
{
    return std::string(body(section)) + std::string(kListenerAndPool);
}

// A listener of pool "p", to append to [pools] sections under test (which
// then must define pool "p"), starting at the line after them.
constexpr std::string_view kListener = R"(
[[listeners]]
listen = "127.0.0.1:0"
pool = "p"
)";

std::string with_listener(std::string_view pools)
{
    return std::string(body(pools)) + std::string(kListener);
}

// A config that must be refused with exactly `errors` (FILE:LINE:COL:
// message, in file order).
struct ErrorCase {
    std::string name;
    std::string toml;
    std::vector<std::string> errors;
};

// A config that must parse; `check` asserts the parsed values.
struct ValidCase {
    std::string name;
    std::string toml;
    std::function<void(const Config&)> check;
};

// Catch2 treats two sections of one name as one and would skip the second.
template <typename Case>
void require_unique_names(const std::vector<Case>& cases)
{
    std::set<std::string> names;
    for (const Case& c : cases)
        if (!names.insert(c.name).second)
            FAIL("two cases are named \"" << c.name << '"');
}

void run(const std::vector<ErrorCase>& cases)
{
    require_unique_names(cases);
    for (const ErrorCase& c : cases) {
        DYNAMIC_SECTION(c.name)
        {
            auto result = parse(c.toml);
            std::vector<std::string> errors;
            for (const auto& error : result.errors)
                errors.push_back(error.to_string());
            CHECK(errors == c.errors);
            CHECK_FALSE(result.config);  // no half-valid config ever comes out
        }
    }
}

void run(const std::vector<ValidCase>& cases)
{
    require_unique_names(cases);
    for (const ValidCase& c : cases) {
        DYNAMIC_SECTION(c.name)
        {
            c.check(valid(c.toml));
        }
    }
}

const sluice::HealthCheckConfig& health_of(const Config& config, std::string_view pool)
{
    const auto* found = config.find_pool(pool);
    REQUIRE(found);
    REQUIRE(found->health);
    return *found->health;
}

// A directory under /tmp removed with its files at the end of the test.
class TempDir {
public:
    TempDir()
    {
        char pattern[] = "/tmp/sluice_config_test_XXXXXX";
        REQUIRE(::mkdtemp(pattern));
        path_ = pattern;
    }
    ~TempDir() { std::filesystem::remove_all(path_); }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    const std::string& path() const { return path_; }

    std::string write(const std::string& name, const std::string& content) const
    {
        std::string file = path_ + "/" + name;
        std::ofstream(file, std::ios::binary) << content;
        return file;
    }

private:
    std::string path_;
};

} // namespace

// --- valid configs -----------------------------------------------------------

TEST_CASE("a full config round-trips into the struct with every key")
{
    Config config = valid(R"(
[global]
workers = 4
max_connections = 10000
drain_timeout = "1m"
pipe_size = 65536
backlog = 128
splice = false
cpu_affinity = [1, 0]

[admin]
socket = "/run/sluice/admin.sock"
metrics = "127.0.0.1:9100"

[[listeners]]
name = "pg"
listen = "127.0.0.1:5432"
protocol = "tcp"
pool = "postgres"
idle_timeout = "1h"
access_log = "/var/log/sluice/pg.log"

[[listeners]]
name = "dns"
listen = "[::1]:53"
protocol = "udp"
pool = "dns"
idle_timeout = "5s"
responses = 1
access_log = "-"

[pools.postgres]
balance = "least_conn"
connect_timeout = "250ms"
retries = 5
max_fails = 10
fail_timeout = "30s"
health = { interval = "5s", timeout = "2s", rise = 4, fall = 6, protocol = "tcp" }
on_down = "close"
on_up = "close_backup"
backends = [
    { address = "10.0.1.10:5432", weight = 3, name = "pg-a" },
    { address = "10.0.1.11:5432", weight = 256, name = "pg-b", backup = true },
]

[pools.dns]
balance = "ip_hash"
health = { protocol = "udp", send = "ping", expect = "pong" }
backends = [{ address = "[2001:db8::53]:53" }]
)");

    CHECK(config.path.empty());
    CHECK(config.global.workers == 4);
    CHECK(config.global.max_connections == 10000);
    CHECK(config.global.drain_timeout == 60s);
    CHECK(config.global.pipe_size == 65536u);
    CHECK_FALSE(config.global.splice);
    CHECK(config.global.backlog == 128);
    CHECK(config.global.cpu_affinity.mode == CpuAffinity::Mode::List);
    CHECK(config.global.cpu_affinity.cpus == std::vector<int>{1, 0});
    CHECK(config.admin.socket == "/run/sluice/admin.sock");
    REQUIRE(config.admin.metrics);
    CHECK(config.admin.metrics->to_string() == "127.0.0.1:9100");

    REQUIRE(config.listeners.size() == 2);
    const auto& pg = config.listeners[0];
    CHECK(pg.name == "pg");
    CHECK(pg.listen.to_string() == "127.0.0.1:5432");
    CHECK(pg.protocol == Protocol::Tcp);
    CHECK(pg.pool == "postgres");
    CHECK(pg.idle_timeout == 1h);
    CHECK(pg.responses == 0);
    CHECK(pg.access_log == "/var/log/sluice/pg.log");
    const auto& dns = config.listeners[1];
    CHECK(dns.name == "dns");
    CHECK(dns.listen.to_string() == "[::1]:53");
    CHECK(dns.protocol == Protocol::Udp);
    CHECK(dns.idle_timeout == 5s);
    CHECK(dns.responses == 1);
    CHECK(dns.access_log == "-");

    REQUIRE(config.pools.size() == 2);
    const auto& postgres = config.pools[0];  // file order, not name order
    CHECK(postgres.name == "postgres");
    CHECK(postgres.balance == BalanceAlgorithm::LeastConn);
    CHECK(postgres.connect_timeout == 250ms);
    CHECK(postgres.retries == 5);
    CHECK(postgres.max_fails == 10);
    CHECK(postgres.fail_timeout == 30s);
    CHECK(postgres.on_down == PoolConfig::OnDown::Close);
    CHECK(postgres.on_up == PoolConfig::OnUp::CloseBackup);
    REQUIRE(postgres.health);
    CHECK(postgres.health->kind == Kind::TcpConnect);
    CHECK(postgres.health->interval == 5s);
    CHECK(postgres.health->timeout == 2s);
    CHECK(postgres.health->rise == 4);
    CHECK(postgres.health->fall == 6);
    REQUIRE(postgres.backends.size() == 2);
    CHECK(postgres.backends[0].address.to_string() == "10.0.1.10:5432");
    CHECK(postgres.backends[0].name == "pg-a");
    CHECK(postgres.backends[0].weight == 3);
    CHECK_FALSE(postgres.backends[0].backup);
    CHECK(postgres.backends[1].name == "pg-b");
    CHECK(postgres.backends[1].weight == 256);
    CHECK(postgres.backends[1].backup);

    const auto& dns_pool = config.pools[1];
    CHECK(dns_pool.name == "dns");
    CHECK(dns_pool.balance == BalanceAlgorithm::IpHash);
    REQUIRE(dns_pool.health);
    CHECK(dns_pool.health->kind == Kind::Udp);
    CHECK(dns_pool.health->send == "ping");
    CHECK(dns_pool.health->expect == "pong");
    REQUIRE(dns_pool.backends.size() == 1);
    CHECK(dns_pool.backends[0].name == "[2001:db8::53]:53");
}

TEST_CASE("omitted keys take their documented defaults")
{
    Config config = valid(R"(
[[listeners]]
listen = "*:8080"
pool = "web"

[pools.web]
health = {}
backends = [{ address = "localhost:80" }]
)");

    CHECK(config.global.workers == 0);
    CHECK(config.global.max_connections == 0);
    CHECK(config.global.drain_timeout == 30s);
    CHECK(config.global.pipe_size == 1u << 20);
    CHECK(config.global.backlog == 4096);
    CHECK(config.global.splice);
    CHECK(config.admin.socket.empty());
    CHECK_FALSE(config.admin.metrics);

    REQUIRE(config.listeners.size() == 1);
    const auto& listener = config.listeners[0];
    CHECK(listener.name == "0.0.0.0:8080");  // the address as printed after parsing
    CHECK(listener.protocol == Protocol::Tcp);
    CHECK(listener.idle_timeout == 0ms);
    CHECK(listener.responses == 0);
    CHECK(listener.access_log.empty());

    REQUIRE(config.pools.size() == 1);
    const auto& pool = config.pools[0];
    CHECK(pool.balance == BalanceAlgorithm::RoundRobin);
    CHECK(pool.connect_timeout == 3s);
    CHECK(pool.retries == 2);
    CHECK(pool.max_fails == 3);
    CHECK(pool.fail_timeout == 10s);
    CHECK(pool.on_down == PoolConfig::OnDown::Keep);
    CHECK(pool.on_up == PoolConfig::OnUp::Keep);
    REQUIRE(pool.health);
    CHECK(pool.health->kind == Kind::TcpConnect);
    CHECK(pool.health->interval == 2s);
    CHECK(pool.health->timeout == 1s);
    CHECK(pool.health->rise == 2);
    CHECK(pool.health->fall == 3);
    CHECK(pool.health->port == 0);
    CHECK(pool.health->send.empty());
    CHECK(pool.health->expect.empty());
    CHECK(pool.health->role == Role::Any);
    REQUIRE(pool.backends.size() == 1);
    CHECK(pool.backends[0].name == "127.0.0.1:80");
    CHECK(pool.backends[0].weight == 1);
    CHECK_FALSE(pool.backends[0].backup);
}

TEST_CASE("valid configs give these parsed values")
{
    static const std::vector<ValidCase> cases{
        {"a pool without a health key has no active health check", std::string(kListenerAndPool),
         [](const Config& config) {
             REQUIRE(config.pools.size() == 1);
             CHECK_FALSE(config.pools[0].health);
         }},

        {"PROXY protocol keys: accept_proxy with its trusted list and timeout, send_proxy per pool and backend", R"(
[[listeners]]
listen = "127.0.0.1:0"
pool = "p"
accept_proxy = true
accept_proxy_from = ["10.0.0.0/8", "2001:db8::/32"]
proxy_timeout = "500ms"

[[listeners]]
listen = "127.0.0.1:0"
pool = "p"

[pools.p]
send_proxy = "v2"
backends = [{ address = "127.0.0.1:9" }, { address = "127.0.0.1:10", send_proxy = "v1" },
            { address = "127.0.0.1:11", send_proxy = "off" }]
)",
         [](const Config& config) {
             REQUIRE(config.listeners.size() == 2);
             const auto& with = config.listeners[0];
             CHECK(with.accept_proxy);
             CHECK(with.proxy_timeout == 500ms);
             CHECK(with.accept_proxy_from.size() == 2);
             CHECK(with.accept_proxy_from.contains(*sluice::SocketAddress::parse("10.1.2.3:1")));
             CHECK_FALSE(with.accept_proxy_from.contains(*sluice::SocketAddress::parse("11.1.2.3:1")));
             const auto& without = config.listeners[1];
             CHECK_FALSE(without.accept_proxy);
             CHECK(without.accept_proxy_from.empty());
             CHECK(without.proxy_timeout == 3s);
             REQUIRE(config.pools.size() == 1);
             CHECK(config.pools[0].send_proxy == sluice::ProxyVersion::V2);
             REQUIRE(config.pools[0].backends.size() == 3);
             CHECK(config.pools[0].backends[0].send_proxy == sluice::ProxyVersion::V2);
             CHECK(config.pools[0].backends[1].send_proxy == sluice::ProxyVersion::V1);
             CHECK(config.pools[0].backends[2].send_proxy == sluice::ProxyVersion::Off);
         }},

        {"a udp listener defaults to a 30 second idle timeout, a tcp one to none", R"(
[[listeners]]
listen = "127.0.0.1:0"
protocol = "udp"
pool = "p"

[[listeners]]
listen = "127.0.0.1:0"
idle_timeout = "0"
protocol = "udp"
pool = "p"

[pools.p]
backends = [{ address = "127.0.0.1:9" }]
)",
         [](const Config& config) {
             REQUIRE(config.listeners.size() == 2);
             CHECK(config.listeners[0].idle_timeout == 30s);
             CHECK(config.listeners[1].idle_timeout == 0ms);
         }},

        {"health and backends may be written as sub-tables", R"(
[[listeners]]
listen = "127.0.0.1:0"
pool = "p"

[pools.p.health]
protocol = "udp"
send = "\u0000ping"

[[pools.p.backends]]
address = "127.0.0.1:9"
name = "one"

[[pools.p.backends]]
address = "127.0.0.1:10"
)",
         [](const Config& config) {
             const auto* pool = config.find_pool("p");
             REQUIRE(pool);
             REQUIRE(pool->health);
             CHECK(pool->health->send == std::string("\0ping", 5));
             REQUIRE(pool->backends.size() == 2);
             CHECK(pool->backends[0].name == "one");
             CHECK(pool->backends[1].name == "127.0.0.1:10");
         }},

        {"an empty metrics address turns metrics off", with_listener_and_pool(R"(
[admin]
socket = ""
metrics = ""
)"),
         [](const Config& config) {
             CHECK(config.admin.socket.empty());
             CHECK_FALSE(config.admin.metrics);
         }},

        {"an admin socket path of 107 bytes fits a unix socket address",
         with_listener_and_pool("\n[admin]\nsocket = \"/" + std::string(106, 's') + "\"\n"),
         [](const Config& config) { CHECK(config.admin.socket == "/" + std::string(106, 's')); }},

        {"tcp and udp listeners may share an address, and port-0 listeners never collide", R"(
[[listeners]]
listen = "0.0.0.0:53"
pool = "p"

[[listeners]]
listen = "0.0.0.0:53"
protocol = "udp"
pool = "p"

[[listeners]]
listen = "127.0.0.1:0"
pool = "p"

[[listeners]]
listen = "127.0.0.1:0"
pool = "p"

[pools.p]
backends = [{ address = "127.0.0.1:9" }]
)",
         [](const Config& config) { CHECK(config.listeners.size() == 4); }},

        {"the same backend address may appear in two pools", R"(
[[listeners]]
listen = "127.0.0.1:0"
pool = "a"

[pools.a]
backends = [{ address = "127.0.0.1:9", name = "x" }]

[pools.b]
backends = [{ address = "127.0.0.1:9", name = "x" }]
)",
         [](const Config& config) { CHECK(config.pools.size() == 2); }},

        {"the edges of each integer range are accepted", R"(
[global]
workers = 1024
pipe_size = 67108864
backlog = 65535

[[listeners]]
listen = "127.0.0.1:0"
pool = "p"

[pools.p]
retries = 32
max_fails = 0
health = { rise = 100, fall = 1 }
backends = [{ address = "127.0.0.1:9", weight = 256 }]
)",
         [](const Config& config) {
             CHECK(config.global.workers == 1024);
             CHECK(config.global.pipe_size == 67108864u);
             CHECK(config.pools[0].max_fails == 0);
         }},

        {"cpu_affinity is none by default", std::string(kListenerAndPool),
         [](const Config& config) { CHECK(config.global.cpu_affinity == CpuAffinity{}); }},
        {"cpu_affinity \"none\"", with_listener_and_pool("\n[global]\ncpu_affinity = \"none\"\n"),
         [](const Config& config) { CHECK(config.global.cpu_affinity == CpuAffinity{}); }},
        {"cpu_affinity \"auto\"", with_listener_and_pool("\n[global]\ncpu_affinity = \"auto\"\n"),
         [](const Config& config) {
             CHECK(config.global.cpu_affinity == CpuAffinity{CpuAffinity::Mode::Auto, {}});
         }},
        {"cpu_affinity [3]", with_listener_and_pool("\n[global]\ncpu_affinity = [3]\n"),
         [](const Config& config) {
             CHECK(config.global.cpu_affinity == CpuAffinity{CpuAffinity::Mode::List, {3}});
         }},

        {"max_connections, queue_timeout, max_queue and slow_start are read", with_listener(R"(
[pools.p]
queue_timeout = "5s"
max_queue = 100
slow_start = "30s"
backends = [{ address = "127.0.0.1:9", max_connections = 20 }, { address = "127.0.0.1:10" }]
)"),
         [](const Config& config) {
             const PoolConfig& pool = config.pools[0];
             CHECK(pool.queue_timeout == Duration{5000});
             CHECK(pool.max_queue == 100);
             CHECK(pool.slow_start == Duration{30000});
             CHECK(pool.backends[0].max_connections == 20);
             CHECK(pool.backends[1].max_connections == 0);
         }},

        {"without the keys there is no cap, no queue and no slow start", with_listener_and_pool(""),
         [](const Config& config) {
             const PoolConfig& pool = config.pools[0];
             CHECK(pool.queue_timeout == Duration{0});
             CHECK(pool.max_queue == 0);
             CHECK(pool.slow_start == Duration{0});
             CHECK(pool.backends[0].max_connections == 0);
         }},

        {"on_down and on_up take keep, close and close_backup", with_listener(R"(
[pools.p]
on_down = "close"
on_up = "close_backup"
backends = [{ address = "127.0.0.1:9" }]

[pools.q]
on_down = "keep"
on_up = "keep"
backends = [{ address = "127.0.0.1:9" }]
)"),
         [](const Config& config) {
             REQUIRE(config.pools.size() == 2);
             CHECK(config.pools[0].on_down == PoolConfig::OnDown::Close);
             CHECK(config.pools[0].on_up == PoolConfig::OnUp::CloseBackup);
             CHECK(config.pools[1].on_down == PoolConfig::OnDown::Keep);
             CHECK(config.pools[1].on_up == PoolConfig::OnUp::Keep);
         }},

        {"log_level, log_format and access_log_format take their words", R"(
[global]
log_level = "warning"
log_format = "json"

[[listeners]]
listen = "127.0.0.1:0"
pool = "p"
access_log = "-"
access_log_format = "json"

[[listeners]]
listen = "127.0.0.1:0"
pool = "p"

[pools.p]
backends = [{ address = "127.0.0.1:9" }]
)",
         [](const Config& config) {
             CHECK(config.global.log_level == sluice::log::Level::Warning);
             CHECK(config.global.log_format == sluice::log::Format::Json);
             REQUIRE(config.listeners.size() == 2);
             CHECK(config.listeners[0].access_log_format == sluice::AccessLogFormat::Json);
             CHECK(config.listeners[1].access_log_format == sluice::AccessLogFormat::Text);
         }},
        {"log_level and log_format default to info and text", with_listener_and_pool(""),
         [](const Config& config) {
             CHECK(config.global.log_level == sluice::log::Level::Info);
             CHECK(config.global.log_format == sluice::log::Format::Text);
         }},
    };
    run(cases);
}

TEST_CASE("valid health checks give these parsed values, each kind with its defaults")
{
    static const std::vector<ValidCase> cases{
        {"an http check defaults to GET / expecting 200", with_listener(R"(
[pools.p]
health = { protocol = "http" }
backends = [{ address = "127.0.0.1:9" }]
)"),
         [](const Config& config) {
             const auto& health = health_of(config, "p");
             CHECK(health.kind == Kind::Http);
             CHECK(health.path == "/");
             CHECK(health.expect_status == 200);
             CHECK(health.host.empty());
             CHECK(health.expect.empty());
             CHECK(health.port == 0);
             CHECK(health.interval == 2s);
             CHECK(health.timeout == 1s);
         }},

        {"an http check with every key of its own", with_listener(R"(
[pools.p]
backends = [{ address = "127.0.0.1:9" }]

[pools.p.health]
protocol = "http"
port = 8008
path = "/health?verbose=1"
expect_status = 204
host = "db.example"
expect = "\"role\": \"master\""
)"),
         [](const Config& config) {
             const auto& health = health_of(config, "p");
             CHECK(health.kind == Kind::Http);
             CHECK(health.port == 8008);
             CHECK(health.path == "/health?verbose=1");
             CHECK(health.expect_status == 204);
             CHECK(health.host == "db.example");
             CHECK(health.expect == R"("role": "master")");
         }},

        {"expect_status accepts 100 and 599, port 1 and 65535", with_listener(R"(
[pools.p]
health = { protocol = "http", expect_status = 100, port = 1 }
backends = [{ address = "127.0.0.1:9" }]

[pools.q]
health = { protocol = "http", expect_status = 599, port = 65535 }
backends = [{ address = "127.0.0.1:9" }]
)"),
         [](const Config& config) {
             CHECK(health_of(config, "p").expect_status == 100);
             CHECK(health_of(config, "p").port == 1);
             CHECK(health_of(config, "q").expect_status == 599);
             CHECK(health_of(config, "q").port == 65535);
         }},

        {"a redis check needs no user and defaults to any role, no password, no lag limit", with_listener(R"(
[pools.p]
health = { protocol = "redis" }
backends = [{ address = "127.0.0.1:9" }]
)"),
         [](const Config& config) {
             const auto& health = health_of(config, "p");
             CHECK(health.kind == Kind::Redis);
             CHECK(health.role == Role::Any);
             CHECK(health.user.empty());
             CHECK(health.password_file.empty());
             CHECK(health.password.empty());
             CHECK(health.database.empty());
             CHECK(health.sslmode.empty());
             CHECK(health.max_lag == 0ms);
             CHECK(health.port == 0);
         }},

        {"a redis replica check with a user and a lag limit", with_listener(R"(
[pools.p]
health = { protocol = "redis", role = "replica", user = "monitor", max_lag = "10s", port = 26379 }
backends = [{ address = "127.0.0.1:9" }]
)"),
         [](const Config& config) {
             const auto& health = health_of(config, "p");
             CHECK(health.role == Role::Replica);
             CHECK(health.user == "monitor");
             CHECK(health.max_lag == 10s);
             CHECK(health.port == 26379);
         }},

        {"a postgres check defaults to database postgres, libpq's sslmode and any role", with_listener(R"(
[pools.p]
health = { protocol = "postgres", user = "monitor" }
backends = [{ address = "127.0.0.1:9" }]
)"),
         [](const Config& config) {
             const auto& health = health_of(config, "p");
             CHECK(health.kind == Kind::Postgres);
             CHECK(health.user == "monitor");
             CHECK(health.database == "postgres");
             CHECK(health.sslmode.empty());
             CHECK(health.role == Role::Any);
             CHECK(health.password.empty());
             CHECK(health.max_lag == 0ms);
         }},

        {"a postgres primary check with every key of its own", with_listener(R"(
[pools.p]
backends = [{ address = "127.0.0.1:9" }]

[pools.p.health]
protocol = "postgres"
role = "primary"
user = "monitor"
database = "app"
sslmode = "verify-full"
max_lag = "0s"
)"),
         [](const Config& config) {
             const auto& health = health_of(config, "p");
             CHECK(health.role == Role::Primary);
             CHECK(health.database == "app");
             CHECK(health.sslmode == "verify-full");
             CHECK(health.max_lag == 0ms);  // zero: no limit, so allowed with role = "primary"
         }},

        {"every libpq sslmode is accepted", with_listener(R"(
[pools.p]
health = { protocol = "postgres", user = "u", sslmode = "disable" }
backends = [{ address = "127.0.0.1:9" }]

[pools.q]
health = { protocol = "postgres", user = "u", sslmode = "allow" }
backends = [{ address = "127.0.0.1:9" }]

[pools.r]
health = { protocol = "postgres", user = "u", sslmode = "prefer" }
backends = [{ address = "127.0.0.1:9" }]

[pools.s]
health = { protocol = "postgres", user = "u", sslmode = "require" }
backends = [{ address = "127.0.0.1:9" }]

[pools.t]
health = { protocol = "postgres", user = "u", sslmode = "verify-ca" }
backends = [{ address = "127.0.0.1:9" }]
)"),
         [](const Config& config) {
             CHECK(health_of(config, "p").sslmode == "disable");
             CHECK(health_of(config, "q").sslmode == "allow");
             CHECK(health_of(config, "r").sslmode == "prefer");
             CHECK(health_of(config, "s").sslmode == "require");
             CHECK(health_of(config, "t").sslmode == "verify-ca");
         }},

        {"a mysql check has no default database", with_listener(R"(
[pools.p]
health = { protocol = "mysql", user = "monitor", role = "any", max_lag = "1m" }
backends = [{ address = "127.0.0.1:9" }]
)"),
         [](const Config& config) {
             const auto& health = health_of(config, "p");
             CHECK(health.kind == Kind::Mysql);
             CHECK(health.user == "monitor");
             CHECK(health.role == Role::Any);
             CHECK(health.database.empty());
             CHECK(health.max_lag == 1min);
         }},
    };
    run(cases);
}

TEST_CASE("find_pool finds a pool by name and returns null otherwise")
{
    Config config = valid(kListenerAndPool);
    REQUIRE(config.find_pool("p"));
    CHECK(config.find_pool("p")->name == "p");
    CHECK(config.find_pool("q") == nullptr);
    CHECK(config.find_pool("") == nullptr);
}

TEST_CASE("the shipped conf/sluice.toml validates cleanly")
{
    std::string path = std::string(SLUICE_SOURCE_DIR) + "/conf/sluice.toml";
    auto result = sluice::load_config_file(path);
    for (const auto& error : result.errors)
        FAIL_CHECK(error.to_string());
    REQUIRE(result.ok());
    CHECK(result.config->path == path);
    CHECK_FALSE(result.config->listeners.empty());
    CHECK_FALSE(result.config->pools.empty());
}

// --- errors ------------------------------------------------------------------

TEST_CASE("a syntax error yields no config")
{
    auto result = parse("[[listeners]\n");
    CHECK_FALSE(result.ok());
    CHECK_FALSE(result.config);
    CHECK(result.errors.size() == 1);
}

TEST_CASE("errors in the syntax and the shape of the file")
{
    static const std::vector<ErrorCase> cases{
        {"a TOML syntax error is reported once with its position: key-value pair", R"(
[global]
workers = 4 4
)",
         {"x.toml:2:13: syntax error in key-value pair: expected a comment or whitespace, saw '4'"}},

        {"a TOML syntax error is reported once with its position: table header", R"(
[global
)",
         {"x.toml:1:8: syntax error in table header: expected ']', saw '\\n'"}},

        {"an unknown key in [global] lists the valid keys", R"(
[global]
workers = 2
wokers = 4
)" + std::string(kListenerAndPool),
         {R"(x.toml:3:1: unknown key "wokers" in [global], expected one of: workers, max_connections, drain_timeout, pipe_size, backlog, splice, cpu_affinity, log_level, log_format, resolvers, dns_min_ttl, dns_max_ttl)"}},

        {"an unknown key in [admin] lists the valid keys", with_listener_and_pool(R"(
[admin]
sock = "/tmp/a"
)"),
         {R"(x.toml:2:1: unknown key "sock" in [admin], expected one of: socket, metrics, token_file)"}},

        {"an unknown key in the top-level table lists the valid keys", with_listener_and_pool(R"(
globals = 1
)"),
         {R"(x.toml:1:1: unknown key "globals" in the top-level table, expected one of: global, admin, listeners, pools)"}},

        {"unknown keys in listeners, pools, health and backends list the valid keys", R"(
[[listeners]]
listen = "127.0.0.1:0"
pool = "p"
idle = "1s"

[pools.p]
balanse = "random"
health = { interval = "1s", intervall = "2s" }
backends = [{ address = "127.0.0.1:9", wieght = 2 }]
)",
         {R"(x.toml:4:1: unknown key "idle" in [[listeners]], expected one of: name, listen, protocol, pool, idle_timeout, responses, access_log, accept_proxy, accept_proxy_from, proxy_timeout, access_log_format, allow, deny, max_connections_per_source, tcp_keepalive, client_fin_timeout)",
          R"(x.toml:7:1: unknown key "balanse" in [pools.p], expected one of: balance, connect_timeout, retries, max_fails, fail_timeout, health, on_down, on_up, queue_timeout, max_queue, slow_start, backends, send_proxy, tcp_keepalive, server_fin_timeout, source, discover)",
          R"(x.toml:8:29: unknown key "intervall" in [pools.p.health], expected one of: protocol, interval, timeout, rise, fall, port, send, expect, path, expect_status, host, role, user, password_file, database, sslmode, max_lag)",
          R"(x.toml:9:40: unknown key "wieght" in [[pools.p.backends]], expected one of: address, weight, name, backup, max_connections, send_proxy)"}},

        {"sections of the wrong shape are reported", R"(
global = 1
pools = "p"

[listeners]
listen = "127.0.0.1:0"
)",
         {"x.toml:1:10: global is an integer, expected a table [global]",
          "x.toml:2:9: pools is a string, expected a table of pools such as [pools.postgres]",
          "x.toml:4:1: listeners is a table, expected an array of tables, written as [[listeners]]"}},

        {"missing required keys are reported at the table that lacks them", R"(
[[listeners]]
pool = "p"

  [[listeners]]
  listen = "127.0.0.1:0"

[pools.p]
backends = [
    { weight = 2 },
]
)",
         {R"(x.toml:1:1: [[listeners]] is missing the required key "listen", expected e.g. listen = "0.0.0.0:5432")",
          R"(x.toml:4:3: [[listeners]] is missing the required key "pool", expected e.g. pool = "postgres")",
          R"(x.toml:9:5: [[pools.p.backends]] is missing the required key "address", expected e.g. address = "10.0.0.1:5432")"}},

        {"a config with no listeners is an error", R"(
[pools.p]
backends = [{ address = "127.0.0.1:9" }]
)",
         {"x.toml:1:1: no listeners are defined, expected at least one [[listeners]] table"}},

        {"an empty config is an error", "",
         {"x.toml:1:1: no listeners are defined, expected at least one [[listeners]] table"}},

        {"an empty listeners array is an error", "listeners = []\n",
         {"x.toml:1:13: listeners is empty, expected at least one [[listeners]] table"}},

        // Sections are read in a fixed order (global, admin, pools, listeners),
        // not in file order; the errors must still come out in line order.
        {"all errors are reported at once, in file order", R"(
[pools.p]
retries = -1
backends = [{ address = "127.0.0.1:9", weight = 0 }]

[global]
workers = -1

[[listeners]]
listen = "127.0.0.1"
pool = "q"
)",
         {"x.toml:2:11: retries -1 is out of range, expected an integer from 0 to 32",
          "x.toml:3:49: weight 0 is out of range, expected an integer from 1 to 256",
          "x.toml:6:11: workers -1 is out of range, expected an integer from 0 to 1024",
          R"(x.toml:9:10: listen "127.0.0.1" has no port, expected "ip:port" such as "127.0.0.1:5432", "[::1]:5432", "*:5432" or "localhost:5432")",
          R"(x.toml:10:8: unknown pool "q", expected one of: p)"}},

        {"max_connections, queue_timeout, max_queue and slow_start are checked", with_listener(R"(
[pools.p]
max_queue = 5
slow_start = 30
queue_timeout = "soon"
backends = [{ address = "127.0.0.1:9", max_connections = -1 }]
[pools.q]
queue_timeout = "1s"
max_queue = 0
backends = [{ address = "127.0.0.1:9", max_connections = 1000001 }]
)"),
         {R"(x.toml:2:13: max_queue is set but the pool has no queue, expected queue_timeout too (e.g. "5s"))",
          R"(x.toml:3:14: slow_start is an integer, expected a duration string such as "30s")",
          R"(x.toml:4:17: queue_timeout "soon" is not a valid duration, expected a duration with a unit (ms, s, m, h) such as "250ms", "3s" or "1m30s")",
          "x.toml:5:58: max_connections -1 is out of range, expected an integer from 0 to 1000000",
          "x.toml:8:13: max_queue 0 is out of range, expected an integer from 1 to 1000000",
          "x.toml:9:58: max_connections 1000001 is out of range, expected an integer from 0 to 1000000"}},

        {"a value error and a missing section are both reported", "[global]\nworkers = -1\n",
         {"x.toml:1:1: no listeners are defined, expected at least one [[listeners]] table",
          "x.toml:2:11: workers -1 is out of range, expected an integer from 0 to 1024"}},
    };
    run(cases);
}

TEST_CASE("errors in values")
{
    static const std::vector<ErrorCase> cases{
        {"a value of the wrong type names what was expected and what was found", R"(
[global]
workers = "4"
max_connections = 1.5

[admin]
socket = 5

[[listeners]]
listen = 8080
pool = "p"
name = true

[pools.p]
balance = 1
health = true
backends = [{ address = "127.0.0.1:9", backup = "yes" }, "127.0.0.1:10"]
)",
         {"x.toml:2:11: workers is a string, expected an integer from 0 to 1024",
          "x.toml:3:19: max_connections is a floating-point number, expected an integer of at least 0",
          "x.toml:6:10: socket is an integer, expected a string",
          R"(x.toml:9:10: listen is an integer, expected an address string, "ip:port" such as "127.0.0.1:5432", "[::1]:5432", "*:5432" or "localhost:5432")",
          "x.toml:11:8: name is a boolean, expected a string",
          "x.toml:14:11: balance is an integer, expected one of: round_robin, least_conn, ip_hash, random",
          R"(x.toml:15:10: health is a boolean, expected a table such as health = { interval = "2s", timeout = "1s" })",
          "x.toml:16:49: backup is a string, expected true or false",
          R"(x.toml:16:58: a backend is a string, expected a table such as { address = "10.0.0.1:5432" })"}},

        {"a duration written as a bare integer suggests a unit", with_listener_and_pool(R"(
[global]
drain_timeout = 30
)"),
         {R"(x.toml:2:17: drain_timeout is an integer, expected a duration string such as "30s")"}},

        {"a weight of 300 is reported with its line and column", R"(
[[listeners]]
listen = "127.0.0.1:0"
pool = "p"

[pools.p]
backends = [
    { address = "10.0.1.10:5432", weight = 300 },
]
)",
         {"x.toml:7:44: weight 300 is out of range, expected an integer from 1 to 256"}},

        {"integers out of range are reported with the range allowed", R"(
[global]
workers = 1025
max_connections = -1
pipe_size = 4095
backlog = 0

[[listeners]]
listen = "127.0.0.1:0"
protocol = "udp"
pool = "p"
responses = -1

[pools.p]
retries = 33
max_fails = 1001
health = { rise = 0, fall = 101 }
backends = [{ address = "127.0.0.1:9", weight = 0 }]
)",
         {"x.toml:2:11: workers 1025 is out of range, expected an integer from 0 to 1024",
          "x.toml:3:19: max_connections -1 is out of range, expected an integer of at least 0",
          "x.toml:4:13: pipe_size 4095 is out of range, expected an integer from 4096 to 67108864",
          "x.toml:5:11: backlog 0 is out of range, expected an integer from 1 to 65535",
          "x.toml:11:13: responses -1 is out of range, expected an integer of at least 0",
          "x.toml:14:11: retries 33 is out of range, expected an integer from 0 to 32",
          "x.toml:15:13: max_fails 1001 is out of range, expected an integer from 0 to 1000",
          "x.toml:16:19: rise 0 is out of range, expected an integer from 1 to 100",
          "x.toml:16:29: fall 101 is out of range, expected an integer from 1 to 100",
          "x.toml:17:49: weight 0 is out of range, expected an integer from 1 to 256"}},

        {"bad addresses and ports say what is wrong and what was expected", R"(
[admin]
metrics = "127.0.0.1"

[[listeners]]
listen = "127.0.0.1:65536"
pool = "p"

[[listeners]]
listen = "db.example.com:5432"
pool = "p"

[[listeners]]
listen = "127.0.0.1:http"
pool = "p"

[pools.p]
backends = [{ address = "10.0.0.1:0" }]
)",
         {R"(x.toml:2:11: metrics "127.0.0.1" has no port, expected "ip:port" such as "127.0.0.1:5432", "[::1]:5432", "*:5432" or "localhost:5432")",
          R"(x.toml:5:10: listen "127.0.0.1:65536" has port 65536 which is out of range, expected a port from 0 to 65535)",
          R"(x.toml:9:10: listen "db.example.com:5432" is not a numeric IP address and port, expected "ip:port" such as "127.0.0.1:5432", "[::1]:5432", "*:5432" or "localhost:5432" (host names are not resolved))",
          R"(x.toml:13:10: listen "127.0.0.1:http" has an invalid port "http", expected a port from 0 to 65535)",
          R"(x.toml:17:25: address "10.0.0.1:0" has port 0, expected a port from 1 to 65535)"}},

        {"an unknown protocol or balance algorithm lists the choices", R"(
[[listeners]]
listen = "127.0.0.1:0"
protocol = "sctp"
pool = "p"

[pools.p]
balance = "weighted"
health = { protocol = "smtp" }
backends = [{ address = "127.0.0.1:9" }]
)",
         {R"(x.toml:3:12: unknown protocol "sctp", expected one of: tcp, udp)",
          R"(x.toml:7:11: unknown balance "weighted", expected one of: round_robin, least_conn, ip_hash, random)",
          R"(x.toml:8:23: unknown protocol "smtp", expected one of: tcp, udp, http, redis, postgres, mysql)"}},

        {"cpu_affinity \"all\" is unknown", with_listener_and_pool(R"(
[global]
cpu_affinity = "all"
)"),
         {R"(x.toml:2:16: unknown cpu_affinity "all", expected "none", "auto", or an array of CPU numbers such as [0, 1])"}},

        {"cpu_affinity of the wrong type", with_listener_and_pool(R"(
[global]
cpu_affinity = 2
)"),
         {R"(x.toml:2:16: cpu_affinity is an integer, expected "none", "auto", or an array of CPU numbers such as [0, 1])"}},

        {"cpu_affinity empty", with_listener_and_pool(R"(
[global]
cpu_affinity = []
)"),
         {R"(x.toml:2:16: cpu_affinity is empty, expected at least one CPU number, or "none")"}},

        {"cpu_affinity entry out of range", with_listener_and_pool(R"(
[global]
cpu_affinity = [0, -1]
)"),
         {R"(x.toml:2:20: cpu_affinity entry -1 is out of range, expected an integer from 0 to 1023)"}},

        {"cpu_affinity entry of the wrong type", with_listener_and_pool(R"(
[global]
cpu_affinity = [0, "1"]
)"),
         {R"(x.toml:2:20: a cpu_affinity entry is a string, expected an integer from 0 to 1023)"}},

        {"responses on a tcp listener is an error", R"(
[[listeners]]
listen = "127.0.0.1:0"
pool = "p"
responses = 1

[pools.p]
backends = [{ address = "127.0.0.1:9" }]
)",
         {R"(x.toml:4:13: responses is set on a tcp listener, expected it only with protocol = "udp")"}},

        {"bad durations in the config say what is wrong", R"(
[[listeners]]
listen = "127.0.0.1:0"
pool = "p"
idle_timeout = "10"

[pools.p]
connect_timeout = "-1s"
fail_timeout = "soon"
health = { interval = "0s", timeout = "1.5s" }
backends = [{ address = "127.0.0.1:9" }]
)",
         {R"(x.toml:4:16: idle_timeout "10" has no unit, expected a duration such as "10s" (units: ms, s, m, h))",
          R"(x.toml:7:19: connect_timeout "-1s" is negative, expected a duration with a unit (ms, s, m, h) such as "250ms", "3s" or "1m30s")",
          R"(x.toml:8:16: fail_timeout "soon" is not a valid duration, expected a duration with a unit (ms, s, m, h) such as "250ms", "3s" or "1m30s")",
          R"(x.toml:9:23: interval "0s" is zero, expected a duration greater than zero such as "1s")",
          R"(x.toml:9:39: timeout "1.5s" is not a valid duration, expected a duration with a unit (ms, s, m, h) such as "250ms", "3s" or "1m30s")"}},

        {"an admin socket path too long for a unix socket address is an error",
         with_listener_and_pool("\n[admin]\nsocket = \"/" + std::string(107, 's') + "\"\n"),
         {"x.toml:2:10: socket path is 108 bytes long, expected at most 107 bytes (the limit of a unix socket address)"}},

        {"an unknown on_down or on_up lists the choices", with_listener(R"(
[pools.p]
on_down = "drop"
on_up = "close"
backends = [{ address = "127.0.0.1:9" }]

[pools.q]
on_down = true
backends = [{ address = "127.0.0.1:9" }]
)"),
         {R"(x.toml:2:11: unknown on_down "drop", expected one of: keep, close)",
          R"(x.toml:3:9: unknown on_up "close", expected one of: keep, close_backup)",
          "x.toml:7:11: on_down is a boolean, expected one of: keep, close"}},

        {"accept_proxy needs accept_proxy_from, whose entries must be CIDRs", R"(
[[listeners]]
listen = "127.0.0.1:0"
pool = "p"
accept_proxy = true

[[listeners]]
listen = "127.0.0.1:0"
pool = "p"
accept_proxy = true
accept_proxy_from = ["10.0.0.1/8", "nonsense", 7, "::1"]
proxy_timeout = "0s"

[[listeners]]
listen = "127.0.0.1:0"
pool = "p"
accept_proxy_from = []

[[listeners]]
listen = "127.0.0.1:0"
protocol = "udp"
pool = "p"
accept_proxy = true

[pools.p]
backends = [{ address = "127.0.0.1:9" }]
)",
         {R"(x.toml:4:16: accept_proxy is true but accept_proxy_from is missing, expected e.g. accept_proxy_from = ["10.0.0.0/8"] (the proxies trusted to announce client addresses))",
          R"(x.toml:10:22: accept_proxy_from entry "10.0.0.1/8" has address bits set past /8 (write the network address, e.g. the first address of the range))",
          R"(x.toml:10:36: accept_proxy_from entry "nonsense" is not an IPv4 or IPv6 address or CIDR (e.g. 10.0.0.0/8, 2001:db8::/32))",
          R"(x.toml:10:48: an entry of accept_proxy_from is an integer, expected a CIDR string such as "10.0.0.0/8")",
          R"(x.toml:11:17: proxy_timeout "0s" is zero, expected a duration greater than zero such as "1s")",
          R"(x.toml:16:21: accept_proxy_from is empty, expected an array of CIDR strings such as ["10.0.0.0/8", "2001:db8::/32"])",
          R"(x.toml:16:21: accept_proxy_from is set but accept_proxy is not, expected accept_proxy = true with it)",
          R"(x.toml:22:16: accept_proxy is set on a udp listener, expected it only with protocol = "tcp" (the PROXY protocol header starts a TCP stream))"}},

        {"an unknown send_proxy lists the choices, in a pool and a backend", with_listener(R"(
[pools.p]
send_proxy = "v3"
backends = [{ address = "127.0.0.1:9", send_proxy = true }]
)"),
         {R"(x.toml:2:14: unknown send_proxy "v3", expected one of: off, v1, v2)",
          "x.toml:3:53: send_proxy is a boolean, expected one of: off, v1, v2"}},

        {"an unknown log_level, log_format or access_log_format lists the choices", R"(
[global]
log_level = "verbose"
log_format = 1

[[listeners]]
listen = "127.0.0.1:0"
pool = "p"
access_log_format = "xml"

[pools.p]
backends = [{ address = "127.0.0.1:9" }]
)",
         {R"(x.toml:2:13: unknown log_level "verbose", expected one of: debug, info, notice, warning, error)",
          "x.toml:3:14: log_format is an integer, expected one of: text, json",
          R"(x.toml:8:21: unknown access_log_format "xml", expected one of: text, json)"}},
    };
    run(cases);
}

TEST_CASE("errors in names and references")
{
    static const std::vector<ErrorCase> cases{
        {"a listener naming an unknown pool lists the pools that exist", R"(
[[listeners]]
name = "db"
listen = "127.0.0.1:5432"
pool = "pg"

[pools.redis]
backends = [{ address = "127.0.0.1:6379" }]

[pools.postgres]
backends = [{ address = "127.0.0.1:5433" }]
)",
         {R"(x.toml:4:8: unknown pool "pg", expected one of: postgres, redis)"}},

        {"a listener naming a pool when there are none", R"(
[[listeners]]
listen = "127.0.0.1:5432"
pool = "pg"
)",
         {R"(x.toml:3:8: unknown pool "pg", expected a [pools.pg] table, but no pools are defined)"}},

        {"two listeners on the same protocol and address are an error", R"(
[[listeners]]
name = "a"
listen = "127.0.0.1:5432"
pool = "p"

[[listeners]]
name = "b"
listen = "localhost:5432"
pool = "p"

[pools.p]
backends = [{ address = "127.0.0.1:9" }]
)",
         {R"(x.toml:8:10: listen address 127.0.0.1:5432 (tcp) is already used by listener "a" on line 3, expected each listener to have its own address)"}},

        {"duplicate listener names are an error", R"(
[[listeners]]
name = "db"
listen = "127.0.0.1:5432"
pool = "p"

[[listeners]]
listen = "127.0.0.1:5433"
name = "db"
pool = "p"

[pools.p]
backends = [{ address = "127.0.0.1:9" }]
)",
         {R"(x.toml:8:8: listener name "db" is already used on line 2, expected a unique name)"}},

        {"duplicate backend addresses and names within a pool are errors", R"(
[[listeners]]
listen = "127.0.0.1:0"
pool = "p"

[pools.p]
backends = [
    { address = "10.0.0.1:80", name = "a" },
    { address = "10.0.0.1:80", name = "b" },
    { address = "10.0.0.2:80", name = "a" },
    { address = "10.0.0.3:80", name = "10.0.0.4:80" },
    { address = "10.0.0.4:80" },
]
)",
         {R"(x.toml:8:17: backend address 10.0.0.1:80 is already used in pool "p" on line 7, expected each backend address once per pool)",
          R"(x.toml:9:39: backend name "a" is already used in pool "p" on line 7, expected a unique name (admin commands address a backend as POOL/NAME))",
          R"(x.toml:11:17: backend name "10.0.0.4:80" is already used in pool "p" on line 10, expected a unique name (admin commands address a backend as POOL/NAME))"}},

        {"a pool without backends or with an empty list is an error", R"(
[[listeners]]
listen = "127.0.0.1:0"
pool = "a"

[pools.a]
balance = "random"

[pools.b]
backends = []

[pools.c]
backends = "127.0.0.1:9"
)",
         {R"(x.toml:5:1: [pools.a] is missing the required key "backends", expected e.g. backends = [{ address = "10.0.0.1:5432" }])",
          R"(x.toml:9:12: backends is empty, expected at least one backend such as { address = "10.0.0.1:5432" })",
          R"(x.toml:12:12: backends is a string, expected an array of backends such as [{ address = "10.0.0.1:5432" }])"}},

        {"empty names and names containing a slash are rejected", R"(
[[listeners]]
name = ""
listen = "127.0.0.1:0"
pool = "a/b"

[pools."a/b"]
backends = [{ address = "127.0.0.1:9", name = "x/y" }]
)",
         {R"(x.toml:2:8: name "" is empty, expected a non-empty name (or no name key, to use the default))",
          R"(x.toml:6:8: pool name "a/b" contains "/", expected a name without "/" (admin commands use POOL/NAME))",
          R"(x.toml:7:47: name "x/y" contains "/", expected a name without "/" (admin commands use POOL/NAME))"}},

        // Found by fuzz/config.cpp: a backend named "y<TAB>" loaded, but the admin
        // command `set server POOL/y<TAB> ...` splits into words at the tab and
        // addresses "y"; a newline in a name would end an admin reply early.
        {"names with a space or a control character are rejected: admin commands could not address them", R"(
[[listeners]]
name = "pg main"
listen = "127.0.0.1:0"
pool = "a b"

[pools."a b"]
backends = [{ address = "127.0.0.1:9", name = "x\ty" }, { address = "127.0.0.1:10", name = "z\n" }]
)",
         {R"(x.toml:2:8: name "pg main" contains a space, expected a name without spaces or control characters )"
          "(admin commands split words at whitespace)",
          R"(x.toml:6:8: pool name "a b" contains a space, expected a name without spaces or control characters )"
          "(admin commands split words at whitespace)",
          "x.toml:7:47: name \"x\ty\" contains control character 0x09, expected a name without spaces or control characters "
          "(admin commands split words at whitespace)",
          "x.toml:7:92: name \"z\n\" contains control character 0x0a, expected a name without spaces or control characters "
          "(admin commands split words at whitespace)"}},
    };
    run(cases);
}

TEST_CASE("errors in health checks")
{
    static const std::vector<ErrorCase> cases{
        {"a udp health check needs a non-empty send; a tcp one with send needs expect; http has no send", R"(
[[listeners]]
listen = "127.0.0.1:0"
pool = "a"

[pools.a]
health = { protocol = "udp" }
backends = [{ address = "127.0.0.1:9" }]

[pools.b]
health = { protocol = "udp", send = "" }
backends = [{ address = "127.0.0.1:9" }]

[pools.c]
health = { send = "ping" }
backends = [{ address = "127.0.0.1:9" }]

[pools.d]
health = { protocol = "http", send = "GET /" }
backends = [{ address = "127.0.0.1:9" }]
)",
         {R"(x.toml:6:10: [pools.a.health] is missing the required key "send", expected e.g. send = "ping" (the datagram a udp health check sends))",
          R"(x.toml:10:37: send is empty, expected the datagram a udp health check sends)",
          R"(x.toml:14:10: [pools.c.health] is missing the required key "expect", expected e.g. expect = "+PONG" (the prefix the reply to send must start with))",
          R"(x.toml:18:38: send is set on an http health check, expected it only with protocol = "tcp" or "udp")"}},

        {"a key of another kind of check names the kinds that take it", with_listener(R"(
[pools.p]
health = { role = "primary" }
backends = [{ address = "127.0.0.1:9" }]

[pools.q]
health = { protocol = "http", user = "monitor", max_lag = "1s" }
backends = [{ address = "127.0.0.1:9" }]

[pools.r]
health = { protocol = "mysql", user = "monitor", database = "app", sslmode = "require" }
backends = [{ address = "127.0.0.1:9" }]

[pools.s]
health = { protocol = "redis", path = "/", expect = "PONG", send = "PING" }
backends = [{ address = "127.0.0.1:9" }]
)"),
         {R"(x.toml:2:19: role is set on a tcp health check, expected it only with protocol = "redis", "postgres" or "mysql")",
          R"(x.toml:6:38: user is set on an http health check, expected it only with protocol = "redis", "postgres" or "mysql")",
          R"(x.toml:6:59: max_lag is set on an http health check, expected it only with protocol = "redis", "postgres" or "mysql")",
          R"(x.toml:10:61: database is set on a mysql health check, expected it only with protocol = "postgres")",
          R"(x.toml:10:78: sslmode is set on a mysql health check, expected it only with protocol = "postgres")",
          R"(x.toml:14:39: path is set on a redis health check, expected it only with protocol = "http")",
          R"(x.toml:14:53: expect is set on a redis health check, expected it only with protocol = "tcp", "udp" or "http")",
          R"(x.toml:14:68: send is set on a redis health check, expected it only with protocol = "tcp" or "udp")"}},

        {"a key of another kind does not hide the other errors of the check", with_listener(R"(
[pools.p]
health = { protocol = "postgres", path = "/" }
backends = [{ address = "127.0.0.1:9" }]
)"),
         {R"(x.toml:2:10: [pools.p.health] is missing the required key "user", expected e.g. user = "monitor" (the login the check uses))",
          R"(x.toml:2:42: path is set on a postgres health check, expected it only with protocol = "http")"}},

        {"an http path must start with / and expect_status must be an HTTP status", with_listener(R"(
[pools.p]
health = { protocol = "http", path = "health", expect_status = 600 }
backends = [{ address = "127.0.0.1:9" }]

[pools.q]
health = { protocol = "http", path = "/a b", host = "db\r\n", expect_status = 99 }
backends = [{ address = "127.0.0.1:9" }]
)"),
         {R"(x.toml:2:38: path "health" does not start with "/", expected e.g. "/health")",
          "x.toml:2:64: expect_status 600 is out of range, expected an integer from 100 to 599",
          "x.toml:6:38: path contains a space or a line break, expected one word of an HTTP request line or header",
          "x.toml:6:53: host contains a space or a line break, expected one word of an HTTP request line or header",
          "x.toml:6:79: expect_status 99 is out of range, expected an integer from 100 to 599"}},

        {"a postgres or mysql check needs a non-empty user", with_listener(R"(
[pools.p]
health = { protocol = "postgres" }
backends = [{ address = "127.0.0.1:9" }]

[pools.q]
backends = [{ address = "127.0.0.1:9" }]

[pools.q.health]
protocol = "mysql"

[pools.r]
backends = [{ address = "127.0.0.1:9" }]

[pools.r.health]
protocol = "postgres"
user = ""
database = ""
)"),
         {R"(x.toml:2:10: [pools.p.health] is missing the required key "user", expected e.g. user = "monitor" (the login the check uses))",
          R"(x.toml:8:1: [pools.q.health] is missing the required key "user", expected e.g. user = "monitor" (the login the check uses))",
          "x.toml:16:8: user is empty, expected the login the check uses",
          R"(x.toml:17:12: database is empty, expected the database the check logs in to (default "postgres"))"}},

        {"max_lag with role primary, an unknown role or sslmode, a max_lag without a unit", with_listener(R"(
[pools.p]
backends = [{ address = "127.0.0.1:9" }]

[pools.p.health]
protocol = "postgres"
user = "monitor"
role = "primary"
max_lag = "10s"
sslmode = "verify"

[pools.q]
backends = [{ address = "127.0.0.1:9" }]

[pools.q.health]
protocol = "redis"
role = "master"
max_lag = 5
)"),
         {R"(x.toml:8:11: max_lag is set with role = "primary", expected it only with role = "replica" or "any" (it limits a replica's replication lag))",
          R"(x.toml:9:11: unknown sslmode "verify", expected one of: disable, allow, prefer, require, verify-ca, verify-full)",
          R"(x.toml:16:8: unknown role "master", expected one of: primary, replica, any)",
          R"(x.toml:17:11: max_lag is an integer, expected a duration string such as "5s")"}},

        {"a health check port must be 1 to 65535 (omit it for the backend's own)", with_listener(R"(
[pools.p]
health = { port = 0 }
backends = [{ address = "127.0.0.1:9" }]

[pools.q]
health = { protocol = "http", port = 65536 }
backends = [{ address = "127.0.0.1:9" }]
)"),
         {"x.toml:2:19: port 0 is out of range, expected an integer from 1 to 65535",
          "x.toml:6:38: port 65536 is out of range, expected an integer from 1 to 65535"}},

        {"an empty password_file is an error, not no password", with_listener(R"(
[pools.p]
backends = [{ address = "127.0.0.1:9" }]

[pools.p.health]
protocol = "redis"
password_file = ""
)"),
         {"x.toml:6:17: password_file is empty, expected the path of a file holding the password (or no password_file "
          "for none)"}},
    };
    run(cases);
}

TEST_CASE("a password_file that does not hold one password is an error naming the file")
{
    TempDir dir;
    // The health check under test is on line 7; the path's value starts in column 17.
    auto config_with = [](const std::string& path) {
        return with_listener(fmt::format(R"(
[pools.p]
backends = [{{ address = "127.0.0.1:9" }}]

[pools.p.health]
protocol = "postgres"
user = "monitor"
password_file = "{}"
)",
                                         path));
    };
    auto error_at = [](const std::string& message) { return "x.toml:7:17: " + message; };

    const std::string missing = dir.path() + "/missing";
    const std::string empty = dir.write("empty", "");
    const std::string newline = dir.write("newline", "\n");
    const std::string two_lines = dir.write("two_lines", "secret\nmore\n");
    const std::string two_breaks = dir.write("two_breaks", "secret\n\n");
    const std::string with_nul = dir.write("with_nul", std::string("sec\0ret\n", 8));
    const std::string huge = dir.write("huge", std::string(64 * 1024 + 1, 'x'));
    const std::string fifo = dir.path() + "/fifo";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    run(std::vector<ErrorCase>{
        {"a FIFO is refused without waiting for a writer", config_with(fifo),
         {error_at(fmt::format(R"(password_file "{}" is not a regular file, expected a file holding the password)",
                               fifo))}},
        {"a missing file cannot be opened", config_with(missing),
         {error_at(fmt::format(R"(password_file "{}" cannot be opened: No such file or directory)", missing))}},
        {"a directory cannot be read", config_with(dir.path()),
         {error_at(fmt::format(R"(password_file "{}" cannot be read: Is a directory)", dir.path()))}},
        {"an empty file", config_with(empty),
         {error_at(fmt::format(R"(password_file "{}" is empty, expected a file holding the password)", empty))}},
        {"a file of one line break is empty", config_with(newline),
         {error_at(fmt::format(R"(password_file "{}" is empty, expected a file holding the password)", newline))}},
        {"a file of two lines", config_with(two_lines),
         {error_at(
             fmt::format(R"(password_file "{}" holds more than one line, expected one password)", two_lines))}},
        {"only one trailing line break is stripped", config_with(two_breaks),
         {error_at(
             fmt::format(R"(password_file "{}" holds more than one line, expected one password)", two_breaks))}},
        {"a NUL byte cannot be sent in a password", config_with(with_nul),
         {error_at(
             fmt::format(R"(password_file "{}" holds a NUL byte, expected a file holding one password)", with_nul))}},
        {"a file over 64 KiB", config_with(huge),
         {error_at(
             fmt::format(R"(password_file "{}" is larger than 64 KiB, expected a file holding one password)", huge))}},
    });
}

TEST_CASE("password_file gives the password without one trailing line break")
{
    TempDir dir;
    auto password_from = [&](const std::string& name, const std::string& content) {
        std::string path = dir.write(name, content);
        Config config = valid(with_listener(fmt::format(R"(
[pools.p]
health = {{ protocol = "mysql", user = "monitor", password_file = "{}" }}
backends = [{{ address = "127.0.0.1:9" }}]
)",
                                                        path)));
        CHECK(health_of(config, "p").password_file == path);
        return health_of(config, "p").password;
    };
    CHECK(password_from("lf", "s3cret\n") == "s3cret");
    CHECK(password_from("crlf", "s3cret\r\n") == "s3cret");
    CHECK(password_from("bare", "s3cret") == "s3cret");
    CHECK(password_from("spaces", " s3 cret ") == " s3 cret ");  // spaces are part of a password
    CHECK(password_from("at_limit", std::string(64 * 1024, 'x')).size() == 64 * 1024);
}

TEST_CASE("token_file gives the dashboard token; without it actions stay off")
{
    TempDir dir;
    const std::string path = dir.write("token", "t0ken-value\n");
    Config config = valid(with_listener_and_pool(fmt::format(R"(
[admin]
metrics = "127.0.0.1:9100"
token_file = "{}"
)",
                                                             path)));
    CHECK(config.admin.token_file == path);
    CHECK(config.admin.token == "t0ken-value");
    CHECK(valid(with_listener_and_pool("[admin]\nmetrics = \"127.0.0.1:9100\"\n")).admin.token.empty());
}

TEST_CASE("a token_file that does not hold one token is an error naming the file")
{
    TempDir dir;
    auto config_with = [](const std::string& path) {
        return with_listener_and_pool(fmt::format("[admin]\ntoken_file = \"{}\"\n", path));
    };
    const std::string missing = dir.path() + "/missing";
    const std::string two_lines = dir.write("two_lines", "a\nb\n");
    const std::string empty = dir.write("empty", "\n");
    run(std::vector<ErrorCase>{
        {"an empty path", config_with(""),
         {"x.toml:2:14: token_file is empty, expected the path of a file holding the token (or no token_file for "
          "none)"}},
        {"a missing file", config_with(missing),
         {fmt::format(R"(x.toml:2:14: token_file "{}" cannot be opened: No such file or directory)", missing)}},
        {"a file of two lines", config_with(two_lines),
         {fmt::format(R"(x.toml:2:14: token_file "{}" holds more than one line, expected one token)", two_lines)}},
        {"an empty file", config_with(empty),
         {fmt::format(R"(x.toml:2:14: token_file "{}" is empty, expected a file holding the token)", empty)}},
        {"a directory", config_with(dir.path()),
         {fmt::format(R"(x.toml:2:14: token_file "{}" cannot be read: Is a directory)", dir.path())}},
    });
}

// --- durations ---------------------------------------------------------------

TEST_CASE("valid durations parse to milliseconds")
{
    struct Case {
        const char* text;
        Duration expected;
    };
    for (const auto& c : std::vector<Case>{
             {"0", 0ms},
             {"0s", 0ms},
             {"0ms", 0ms},
             {"250ms", 250ms},
             {"3s", 3s},
             {"5m", 5min},
             {"1h", 1h},
             {"1m30s", 90s},
             {"1h2m3s4ms", 1h + 2min + 3s + 4ms},
             {"1500ms", 1500ms},
             {"90s", 90s},
         }) {
        INFO(c.text);
        auto parsed = sluice::parse_duration(c.text);
        REQUIRE(parsed);
        CHECK(*parsed == c.expected);
    }
}

TEST_CASE("invalid durations are rejected")
{
    for (const char* text : {"", "3", "00", "-1s", "+1s", "1.5s", "s", "ms", "3 s", " 3s", "3s ", "3sec", "3S",
                             "1d", "1us", "3s5", "abc", "1m-30s", "99999999999999999999s",
                             "9223372036854775807s", "2562047788016h"}) {
        INFO('"' << text << '"');
        CHECK_FALSE(sluice::parse_duration(text));
    }
}

TEST_CASE("the largest duration that fits is accepted")
{
    // 2562047788015 hours is the last whole hour below 2^63 milliseconds.
    auto parsed = sluice::parse_duration("2562047788015h");
    REQUIRE(parsed);
    CHECK(parsed->count() == 2562047788015LL * 3600 * 1000);
}

// --- names and output --------------------------------------------------------

TEST_CASE("to_string spells protocols, algorithms, check kinds and roles as the config does")
{
    CHECK(sluice::to_string(Protocol::Tcp) == "tcp");
    CHECK(sluice::to_string(Protocol::Udp) == "udp");
    CHECK(sluice::to_string(BalanceAlgorithm::RoundRobin) == "round_robin");
    CHECK(sluice::to_string(BalanceAlgorithm::LeastConn) == "least_conn");
    CHECK(sluice::to_string(BalanceAlgorithm::IpHash) == "ip_hash");
    CHECK(sluice::to_string(BalanceAlgorithm::Random) == "random");
    CHECK(sluice::to_string(Kind::TcpConnect) == "tcp");
    CHECK(sluice::to_string(Kind::Udp) == "udp");
    CHECK(sluice::to_string(Kind::Http) == "http");
    CHECK(sluice::to_string(Kind::Redis) == "redis");
    CHECK(sluice::to_string(Kind::Postgres) == "postgres");
    CHECK(sluice::to_string(Kind::Mysql) == "mysql");
    CHECK(sluice::to_string(Role::Any) == "any");
    CHECK(sluice::to_string(Role::Primary) == "primary");
    CHECK(sluice::to_string(Role::Replica) == "replica");

    for (auto algorithm : {BalanceAlgorithm::RoundRobin, BalanceAlgorithm::LeastConn, BalanceAlgorithm::IpHash,
                           BalanceAlgorithm::Random}) {
        std::string text = "\n[[listeners]]\nlisten = \"127.0.0.1:0\"\npool = \"p\"\n[pools.p]\nbalance = \""
            + std::string(sluice::to_string(algorithm)) + "\"\nbackends = [{ address = \"127.0.0.1:9\" }]\n";
        CHECK(valid(text).pools[0].balance == algorithm);
    }
}

TEST_CASE("a config error prints as FILE:LINE:COL: message")
{
    CHECK(sluice::ConfigError{"demo.toml", 12, 11, "weight 300 is out of range"}.to_string()
          == "demo.toml:12:11: weight 300 is out of range");
    CHECK(sluice::ConfigError{"demo.toml", 0, 0, "cannot read"}.to_string() == "demo.toml: cannot read");
}

// --- files -------------------------------------------------------------------

TEST_CASE("load_config_file reports a missing file as one error naming the path")
{
    auto result = sluice::load_config_file("/nonexistent/sluice.toml");
    CHECK_FALSE(result.ok());
    CHECK_FALSE(result.config);
    REQUIRE(result.errors.size() == 1);
    CHECK(result.errors[0].to_string()
          == "/nonexistent/sluice.toml: cannot read the config file: No such file or directory");
}

TEST_CASE("load_config_file reports errors under the file's path and records it in the config")
{
    char path[] = "/tmp/sluice_config_test_XXXXXX";
    int fd = ::mkstemp(path);
    REQUIRE(fd >= 0);
    ::close(fd);

    std::ofstream(path) << "[global]\nworkers = -1\n" << body(kListenerAndPool);
    auto bad = sluice::load_config_file(path);
    REQUIRE(bad.errors.size() == 1);
    CHECK(bad.errors[0].to_string()
          == std::string(path) + ":2:11: workers -1 is out of range, expected an integer from 0 to 1024");

    std::ofstream(path) << body(kListenerAndPool);
    auto good = sluice::load_config_file(path);
    REQUIRE(good.ok());
    CHECK(good.config->path == path);

    std::remove(path);
}

namespace {

// A pool named `pool` with `count` backends on distinct loopback addresses.
std::string pool_of(const std::string& pool, int count, int first_port)
{
    std::string text = fmt::format("[pools.{}]\nbackends = [\n", pool);
    for (int i = 0; i < count; ++i)
        text += fmt::format("  {{ address = \"127.0.{}.{}:{}\" }},\n", (i / 250) % 250, 1 + i % 250, first_port + i / 62500);
    return text + "]\n";
}

} // namespace

TEST_CASE("--check refuses more backends than the backend table holds, as the start would")
{
    const std::string listener = "[[listeners]]\nlisten = \"127.0.0.1:0\"\npool = \"a\"\n";
    const std::string at_limit = listener + pool_of("a", 50000, 1000) + pool_of("b", 50000, 2000);
    CHECK(parse(at_limit).ok());
    const std::string over = listener + pool_of("a", 50000, 1000) + pool_of("b", 50001, 2000);
    std::vector<std::string> errors = errors_in(over);
    REQUIRE(errors.size() == 1);
    CHECK(errors[0]
          == "x.toml:4:1: 100001 backends in all pools, expected at most 100000 (the size of sluice's backend table)");
}

TEST_CASE("an ip_hash pool takes at most 65,534 primaries and as many backups")
{
    const std::string listener = "[[listeners]]\nlisten = \"127.0.0.1:0\"\npool = \"a\"\n";
    auto ip_hash_pool = [](int count) {
        std::string pool = pool_of("a", count, 1000);
        return pool.insert(pool.find('\n') + 1, "balance = \"ip_hash\"\n");
    };
    CHECK(parse(listener + ip_hash_pool(65534)).ok());
    std::vector<std::string> errors = errors_in(listener + ip_hash_pool(65535));
    REQUIRE(errors.size() == 1);
    CHECK(errors[0] == "x.toml:4:1: pool \"a\": 65535 primary backends, expected at most 65534 with balance = \"ip_hash\"");
    // Other algorithms have no such limit.
    CHECK(parse(listener + pool_of("a", 65535, 1000)).ok());
}

TEST_CASE("duplicate backends are found among thousands, reported against the first")
{
    std::string text = "[[listeners]]\nlisten = \"127.0.0.1:0\"\npool = \"a\"\n" + pool_of("a", 4000, 1000);
    // Line 6 holds the first backend (127.0.0.1:1000), line 7 the second,
    // named 127.0.0.2:1000 by default; repeat both at the end.
    text.insert(text.rfind(']'), "  { address = \"127.0.0.1:1000\" },\n  { address = \"127.0.0.9:9\", name = \"127.0.0.2:1000\" },\n");
    std::vector<std::string> errors = errors_in(text);
    REQUIRE(errors.size() == 2);
    CHECK(errors[0] == "x.toml:4006:15: backend address 127.0.0.1:1000 is already used in pool \"a\" on line 6, expected each backend address once per pool");
    CHECK(errors[1] == "x.toml:4007:37: backend name \"127.0.0.2:1000\" is already used in pool \"a\" on line 7, expected a unique name (admin commands address a backend as POOL/NAME)");
}

TEST_CASE("client address and connection hygiene keys give these parsed values")
{
    static const std::vector<ValidCase> cases{
        {"allow, deny, per-source limit, keepalive and fin timeouts", R"(
[[listeners]]
listen = "127.0.0.1:0"
pool = "p"
allow = ["10.0.0.0/8", "2001:db8::/32"]
deny = ["10.0.0.5"]
max_connections_per_source = 20
tcp_keepalive = { idle = "60s", interval = "10s", count = 5 }
client_fin_timeout = "30s"

[pools.p]
tcp_keepalive = { idle = "2m" }
server_fin_timeout = "1m"
source = "10.0.0.9"
backends = [{ address = "10.0.1.1:5432" }]
)",
         [](const Config& c) {
             const auto& l = c.listeners.at(0);
             REQUIRE(l.allow);
             REQUIRE(l.deny);
             CHECK(l.allow->size() == 2);
             CHECK(l.deny->contains(*sluice::SocketAddress::parse("10.0.0.5:1")));
             CHECK_FALSE(l.deny->contains(*sluice::SocketAddress::parse("10.0.0.6:1")));
             CHECK(l.max_connections_per_source == 20);
             REQUIRE(l.tcp_keepalive);
             CHECK(l.tcp_keepalive->idle == 60s);
             CHECK(l.tcp_keepalive->interval == 10s);
             CHECK(l.tcp_keepalive->count == 5);
             CHECK(l.client_fin_timeout == 30s);
             const PoolConfig& p = c.pools.at(0);
             REQUIRE(p.tcp_keepalive);
             CHECK(p.tcp_keepalive->idle == 120s);
             CHECK(p.tcp_keepalive->interval == 0s);  // the kernel's default
             CHECK(p.tcp_keepalive->count == 0);
             CHECK(p.server_fin_timeout == 60s);
             REQUIRE(p.source);
             CHECK(p.source->to_string() == "10.0.0.9:0");
         }},
        {"none of them set: all off", std::string(kListenerAndPool),
         [](const Config& c) {
             const auto& l = c.listeners.at(0);
             CHECK_FALSE(l.allow);
             CHECK_FALSE(l.deny);
             CHECK(l.max_connections_per_source == 0);
             CHECK_FALSE(l.tcp_keepalive);
             CHECK(l.client_fin_timeout == 0s);
             CHECK_FALSE(c.pools.at(0).tcp_keepalive);
             CHECK(c.pools.at(0).server_fin_timeout == 0s);
             CHECK_FALSE(c.pools.at(0).source);
         }},
    };
    run(cases);
}

TEST_CASE("errors in client address and connection hygiene keys name the bad entry")
{
    static const std::vector<ErrorCase> cases{
        {"a bad allow or deny entry is named where it stands", R"(
[[listeners]]
listen = "127.0.0.1:0"
pool = "p"
allow = ["10.0.0.0/8", "10.0.0.1/8", "bogus", 5]
deny = "10.0.0.5"

[pools.p]
backends = [{ address = "127.0.0.1:9" }]
)",
         {R"(x.toml:4:24: allow entry "10.0.0.1/8" has address bits set past /8 (write the network address, e.g. the first address of the range))",
          R"(x.toml:4:38: allow entry "bogus" is not an IPv4 or IPv6 address or CIDR (e.g. 10.0.0.0/8, 2001:db8::/32))",
          R"(x.toml:4:47: an allow entry is an integer, expected a string such as "10.0.0.0/8")",
          R"(x.toml:5:8: deny is a string, expected an array of addresses or prefixes such as ["10.0.0.0/8", "::1"])"}},

        {"an empty allow would refuse everyone", R"(
[[listeners]]
listen = "127.0.0.1:0"
pool = "p"
allow = []
deny = []

[pools.p]
backends = [{ address = "127.0.0.1:9" }]
)",
         {"x.toml:4:9: allow is empty, which would refuse every client, expected at least one address or prefix (or no "
          "allow key to admit everyone)"}},

        {"per-source limit, keepalive and fin timeouts out of range", R"(
[[listeners]]
listen = "127.0.0.1:0"
pool = "p"
max_connections_per_source = -1
tcp_keepalive = { idle = "1500ms", interval = "0s", count = 200, probes = 3 }
client_fin_timeout = "soon"

[pools.p]
tcp_keepalive = "on"
server_fin_timeout = 5
backends = [{ address = "127.0.0.1:9" }]
)",
         {"x.toml:4:30: max_connections_per_source -1 is out of range, expected an integer from 0 to 1000000",
          R"(x.toml:5:26: idle "1500ms" is not a whole number of seconds from 1s to 32767s, expected e.g. "60s" (the kernel counts keepalive times in seconds))",
          R"(x.toml:5:47: interval "0s" is zero, expected a duration greater than zero such as "1s")",
          "x.toml:5:61: count 200 is out of range, expected an integer from 1 to 127",
          R"(x.toml:5:66: unknown key "probes" in [[listeners]] tcp_keepalive, expected one of: idle, interval, count)",
          R"(x.toml:6:22: client_fin_timeout "soon" is not a valid duration, expected a duration with a unit (ms, s, m, h) such as "250ms", "3s" or "1m30s")",
          R"(x.toml:9:17: tcp_keepalive is a string, expected a table such as tcp_keepalive = { idle = "60s", interval = "10s", count = 5 })",
          R"(x.toml:10:22: server_fin_timeout is an integer, expected a duration string such as "5s")"}},

        {"keepalive and client_fin_timeout on a udp listener", R"(
[[listeners]]
listen = "127.0.0.1:0"
protocol = "udp"
pool = "p"
tcp_keepalive = { idle = "60s" }
client_fin_timeout = "5s"

[pools.p]
backends = [{ address = "127.0.0.1:9" }]
)",
         {R"(x.toml:5:17: tcp_keepalive is set on a udp listener, expected it only with protocol = "tcp")",
          R"(x.toml:6:22: client_fin_timeout is set on a udp listener, expected it only with protocol = "tcp")"}},

        {"source must be an IP literal of the backends' family", R"(
[[listeners]]
listen = "127.0.0.1:0"
pool = "p"

[pools.p]
source = "127.0.0.9:5000"
backends = [{ address = "127.0.0.1:9" }]

[pools.q]
source = "::1"
backends = [{ address = "127.0.0.1:9" }]

[pools.r]
source = 7
backends = [{ address = "127.0.0.1:9" }]
)",
         {R"(x.toml:6:10: source "127.0.0.9:5000" is not an IP address, expected an IPv4 or IPv6 literal without a port such as "10.0.0.5" or "2001:db8::5")",
          R"(x.toml:10:10: source "::1" is IPv6 but backend 127.0.0.1:9 is IPv4, expected a source address of the backends' family)",
          R"(x.toml:14:10: source is an integer, expected an IP address string such as "10.0.0.5")"}},
    };
    run(cases);
}

TEST_CASE("an allow list of 10,000 prefixes parses quickly and works")
{
    std::string list;
    for (int i = 0; i < 10'000; ++i)
        list += fmt::format("{}\"10.{}.{}.0/24\"", i ? ", " : "", i / 256, i % 256);
    std::string toml = fmt::format("[[listeners]]\nlisten = \"127.0.0.1:0\"\npool = \"p\"\nallow = [{}]\n"
                                   "[pools.p]\nbackends = [{{ address = \"127.0.0.1:9\" }}]\n",
                                   list);
    const auto started = std::chrono::steady_clock::now();
    auto result = sluice::parse_config(toml, "x.toml");
    const auto took = std::chrono::steady_clock::now() - started;
    REQUIRE(result.ok());
    CHECK(took < 2s);  // a debug build on a loaded machine: about 50 ms
    const auto& allow = *result.config->listeners.at(0).allow;
    CHECK(allow.size() == 10'000);
    CHECK(allow.contains(*sluice::SocketAddress::parse("10.39.15.77:1")));   // entry 9999
    CHECK_FALSE(allow.contains(*sluice::SocketAddress::parse("10.39.16.1:1")));  // entry 10000 is not there
}

TEST_CASE("backend names, resolvers and discover parse to these values")
{
    static const std::vector<ValidCase> cases{
        {"a backend address may be a DNS name; its default name is host:port and it starts pending", R"(
[global]
resolvers = ["127.0.0.1:5353", "[::1]:53"]
dns_min_ttl = "200ms"
dns_max_ttl = "1m"

[[listeners]]
listen = "127.0.0.1:0"
pool = "p"

[pools.p]
backends = [{ address = "db-primary.internal:5432" }, { address = "_x.Example.COM.:1", name = "x" },
            { address = "10.0.0.1:5432" }]
)",
         [](const Config& config) {
             REQUIRE(config.global.resolvers.size() == 2);
             CHECK(config.global.resolvers[0].to_string() == "127.0.0.1:5353");
             CHECK(config.global.resolvers[1].to_string() == "[::1]:53");
             CHECK(config.global.dns_min_ttl == Duration(200));
             CHECK(config.global.dns_max_ttl == Duration(60000));
             const auto& backends = config.pools[0].backends;
             REQUIRE(backends.size() == 3);
             CHECK(backends[0].host == "db-primary.internal");
             CHECK(backends[0].port == 5432);
             CHECK(backends[0].name == "db-primary.internal:5432");
             CHECK(backends[0].status == sluice::NameStatus::Pending);
             CHECK_FALSE(backends[0].usable_address());
             CHECK(backends[1].host == "_x.Example.COM.");
             CHECK(backends[1].name == "x");
             CHECK(backends[2].host.empty());
             CHECK(backends[2].usable_address());
             CHECK(backends[2].identity() == "10.0.0.1:5432");
         }},
        {"dns ttl clamp defaults to 1s and 5m, resolvers to resolv.conf (empty)", std::string(kListenerAndPool),
         [](const Config& config) {
             CHECK(config.global.resolvers.empty());
             CHECK(config.global.dns_min_ttl == Duration(1000));
             CHECK(config.global.dns_max_ttl == Duration(300000));
             CHECK_FALSE(config.pools[0].discover);
         }},
        {"a pool may discover its backends by SRV or by name, with or without listed backends", R"(
[[listeners]]
listen = "127.0.0.1:0"
pool = "srv"

[pools.srv]
discover = { srv = "_pg._tcp.db.service.consul" }

[pools.byname]
discover = { name = "db.internal", port = 5432, weight = 3 }
backends = [{ address = "10.0.0.1:5432" }]
)",
         [](const Config& config) {
             REQUIRE(config.pools.size() == 2);
             REQUIRE(config.pools[0].discover);
             CHECK(config.pools[0].discover->srv == "_pg._tcp.db.service.consul");
             CHECK(config.pools[0].backends.empty());
             REQUIRE(config.pools[1].discover);
             CHECK(config.pools[1].discover->name == "db.internal");
             CHECK(config.pools[1].discover->port == 5432);
             CHECK(config.pools[1].discover->weight == 3);
             CHECK(config.pools[1].backends.size() == 1);
         }},
    };
    run(cases);
}

TEST_CASE("errors in backend names, resolvers and discover")
{
    static const std::vector<ErrorCase> cases{
        {"a bad host name says what is wrong with it; --check resolves nothing", R"(
[[listeners]]
listen = "127.0.0.1:0"
pool = "p"

[pools.p]
backends = [{ address = "db..internal:5432" }, { address = "-db.internal:5432" }, { address = "db_1.internal:0" },
            { address = "db$.internal:5432" }, { address = "10.0.0.256:5432" }, { address = "nowhere.invalid:5432" },
            { address = "db.internal:5432" }, { address = "db.internal:5432" }]
)",
         {R"(x.toml:6:25: address "db..internal:5432": host "db..internal" has an empty label (two dots in a row, or a leading dot), expected labels such as "db.internal")",
          R"(x.toml:6:60: address "-db.internal:5432": host "-db.internal" has the label "-db" that starts or ends with '-', expected a DNS label)",
          R"(x.toml:6:95: address "db_1.internal:0" has port 0, expected a port from 1 to 65535)",
          R"(x.toml:7:25: address "db$.internal:5432": host "db$.internal" contains '$', expected letters, digits, '-' and '_' in dot-separated labels)",
          R"(x.toml:7:60: address "10.0.0.256:5432": host "10.0.0.256" looks like an IP address but is not a valid one, expected an IP address or a DNS name)",
          R"(x.toml:8:59: backend address db.internal:5432 is already used in pool "p" on line 8, expected each backend address once per pool)"}},
        {"resolvers must be ip:port, and the ttl clamp must be ordered", R"(
[global]
resolvers = ["dns.internal:53", "10.0.0.2", 53]
dns_min_ttl = "10s"
dns_max_ttl = "1s"

[[listeners]]
listen = "127.0.0.1:0"
pool = "p"

[pools.p]
backends = [{ address = "10.0.0.1:5432" }]
)",
         {R"(x.toml:2:14: resolver "dns.internal:53" is not an IP address and port, expected an array of "ip:port" strings such as ["10.0.0.2:53"])",
          R"(x.toml:2:33: resolver "10.0.0.2" is not an IP address and port, expected an array of "ip:port" strings such as ["10.0.0.2:53"])",
          R"(x.toml:2:45: a resolver is an integer, expected an array of "ip:port" strings such as ["10.0.0.2:53"])",
          "x.toml:4:15: dns_max_ttl (1000 ms) is below dns_min_ttl (10000 ms), expected dns_min_ttl <= dns_max_ttl"}},
        {"discover needs srv or name with a port, not both", R"(
[[listeners]]
listen = "127.0.0.1:0"
pool = "a"

[pools.a]
discover = { srv = "_pg._tcp.x", name = "x" }

[pools.b]
discover = { name = "db.internal" }

[pools.c]
discover = { srv = "_pg..x", port = 5 }

[pools.d]
discover = "db.internal"

[pools.e]
backends = []
)",
         {R"(x.toml:6:12: discover needs exactly one of "srv" or "name", expected a table such as discover = { srv = "_pg._tcp.db.service.consul" } or discover = { name = "db.internal", port = 5432 })",
          R"(x.toml:9:12: discover of pool "b" is missing the required key "port", expected e.g. discover = { name = "db.internal", port = 5432 })",
          R"(x.toml:12:20: srv "_pg..x" has an empty label (two dots in a row, or a leading dot), expected labels such as "db.internal")",
          R"(x.toml:12:37: port is taken from the SRV records, expected discover = { srv = "..." } without it)",
          R"(x.toml:15:12: discover is a string, expected a table such as discover = { srv = "_pg._tcp.db.service.consul" } or discover = { name = "db.internal", port = 5432 })",
          R"(x.toml:18:12: backends is empty, expected at least one backend such as { address = "10.0.0.1:5432" })"}},
    };
    run(cases);
}
