// The configuration: an immutable value parsed from TOML and fully validated
// before anything is bound or started. Schema and contract: ARCHITECTURE.md.
//
// A reload parses a new Config; nothing running changes unless it is valid.
#pragma once

#include "sluice/addr.h"
#include "sluice/cidr.h"
#include "sluice/proxy_protocol.h"
#include "sluice/log.h"

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice {

using Duration = std::chrono::milliseconds;

// Parses "250ms", "3s", "5m", "1h", "0s", "0" (zero needs no unit), and
// compound "1m30s". Returns nullopt for a missing unit, a negative or
// non-numeric value, or an overflow.
std::optional<Duration> parse_duration(std::string_view text);

enum class Protocol : std::uint8_t { Tcp, Udp };
enum class BalanceAlgorithm : std::uint8_t { RoundRobin, LeastConn, IpHash, Random };
// The listener key access_log_format (access_log.h shows both).
enum class AccessLogFormat : std::uint8_t { Text, Json };

std::string_view to_string(Protocol protocol) noexcept;
std::string_view to_string(BalanceAlgorithm algorithm) noexcept;

struct HealthCheckConfig {
    // What a probe does; see health_check.h and README "Health checks".
    enum class Kind : std::uint8_t { TcpConnect, Udp, Http, Redis, Postgres, Mysql };
    // Which role a database backend must have to pass (redis, postgres, mysql).
    enum class Role : std::uint8_t { Any, Primary, Replica };

    Kind kind = Kind::TcpConnect;
    Duration interval{2000};
    Duration timeout{1000};
    int rise = 2;
    int fall = 3;
    // Probe this port of the backend's host instead of the backend's own
    // (e.g. Patroni's REST API on 8008); 0 = the backend's port.
    std::uint16_t port = 0;
    // tcp: sent after the connect (may be empty); udp: the datagram sent.
    std::string send;
    // tcp/udp: the prefix the reply must start with ("" = tcp: connect only,
    // udp: any reply). http: a substring the body must contain ("" = any).
    std::string expect;
    // http
    std::string path = "/";
    int expect_status = 200;
    std::string host;            // Host header; "" = the backend's address
    // redis, postgres, mysql
    Role role = Role::Any;
    std::string user;            // postgres/mysql login; redis ACL user ("" = default user)
    std::string password_file;   // as configured ("" = no password)
    std::string password;        // read from password_file when the config was read
    std::string database;        // postgres (default "postgres")
    std::string sslmode;         // postgres: libpq sslmode ("" = libpq's default, prefer)
    // Replicas only: the most replication lag that still passes; 0 = not
    // checked. postgres: replay delay; redis: master_last_io_seconds_ago;
    // mysql: Seconds_Behind_Master.
    Duration max_lag{0};
};

std::string_view to_string(HealthCheckConfig::Kind kind) noexcept;
std::string_view to_string(HealthCheckConfig::Role role) noexcept;

// Where a backend's DNS name stands (backends addressed as "host:port" and
// discovered ones; see name_resolver.h). Literal IP backends are Resolved.
enum class NameStatus : std::uint8_t {
    Resolved,   // `address` holds an answer
    Pending,    // not asked yet, or the first answer has not come
    NxDomain,   // the name does not exist
    NoAddress,  // the name exists but has no A/AAAA record
    Timeout,    // no resolver answered
    Failed,     // another resolver error (SERVFAIL, refused, malformed)
};

std::string_view to_string(NameStatus status) noexcept;

struct BackendConfig {
    SocketAddress address;    // for a name: the resolved IP and `port`; empty until resolved
    std::string name;         // the configured name, or the address text when omitted
    int weight = 1;           // 1..256
    bool backup = false;      // used only while no primary backend is usable
    // PROXY protocol header sent first on each connection to it: its own
    // send_proxy, or else the pool's.
    ProxyVersion send_proxy = ProxyVersion::Off;
    int max_connections = 0;  // sessions at once across all workers; 0 = no cap
    // A backend addressed by DNS name ("db.internal:5432") or discovered by SRV:
    // the name (resolved on the control thread, never by a worker) and port.
    std::string host;         // "" = `address` is a literal IP
    std::uint16_t port = 0;
    NameStatus status = NameStatus::Resolved;

    // What stays the same across generations while the backend is "the same
    // one": "host:port" for a name (its IP may change), else the address.
    std::string identity() const;
    bool usable_address() const noexcept { return status == NameStatus::Resolved && !address.empty(); }
};

// A pool's `discover` key: its backends follow DNS without a reload.
struct DiscoverConfig {
    std::string srv;          // one backend per SRV target (port, weight, priority from the record)
    std::string name;         // or one backend per A/AAAA record of this name ...
    std::uint16_t port = 0;   // ... on this port
    int weight = 1;           // the weight of name-discovered backends
};

// TCP keepalive probes on a socket (tcp_keepalive = { idle, interval, count }).
// A zero field leaves the kernel's default for it (net.ipv4.tcp_keepalive_*).
struct TcpKeepalive {
    Duration idle{0};      // silence before the first probe (TCP_KEEPIDLE), whole seconds
    Duration interval{0};  // between unanswered probes (TCP_KEEPINTVL), whole seconds
    int count = 0;         // unanswered probes before the connection is dropped (TCP_KEEPCNT)
};

struct PoolConfig {
    std::string name;
    BalanceAlgorithm balance = BalanceAlgorithm::RoundRobin;
    Duration connect_timeout{3000};
    int retries = 2;          // further backends tried when a connect fails
    int max_fails = 3;        // passive: connect failures within fail_timeout mark down; 0 = off
    Duration fail_timeout{10000};
    std::optional<HealthCheckConfig> health;  // nullopt = no active checks
    // A backend leaves service (down by a check or by passive failures, or
    // set to maint): Close ends its open sessions at once (end=backend-down).
    enum class OnDown : std::uint8_t { Keep, Close };
    OnDown on_down = OnDown::Keep;
    // A primary backend comes back: CloseBackup ends the sessions on this
    // pool's backups so their clients reconnect to it.
    enum class OnUp : std::uint8_t { Keep, CloseBackup };
    OnUp on_up = OnUp::Keep;
    // send_proxy: the default of the pool's backends (each may override it).
    ProxyVersion send_proxy = ProxyVersion::Off;
    // While every usable backend is at its max_connections a new client waits
    // this long for a slot (its bytes unread), first come first served; 0 =
    // no queue, the client is closed at once.
    Duration queue_timeout{0};
    int max_queue = 0;        // clients waiting at most; 0 = no bound but queue_timeout
    // A backend coming back into service ramps up to its weight over this
    // long (round_robin, least_conn, random); 0 = off.
    Duration slow_start{0};
    std::optional<TcpKeepalive> tcp_keepalive;  // backend sockets; nullopt = off
    // Once sluice has passed the client's FIN on to the backend, the session
    // ends if the backend stays silent this long without finishing (HAProxy's
    // timeout server-fin); 0 = off.
    Duration server_fin_timeout{0};
    std::optional<SocketAddress> source;  // local IP of backend sockets (port 0); nullopt = the kernel's choice
    std::vector<BackendConfig> backends;
    std::optional<DiscoverConfig> discover;  // its backends are added at run time, after `backends`
};

struct ListenerConfig {
    std::string name;         // the configured name, or the listen address text
    SocketAddress listen;
    Protocol protocol = Protocol::Tcp;
    std::string pool;
    Duration idle_timeout{0}; // 0 = none; UDP default 30s
    int responses = 0;        // UDP: end a flow at this many replies per datagram; 0 = unlimited
    std::string access_log;   // "" = off; "-" = stderr; else a file path
    // accept_proxy: every client must start with a PROXY protocol header
    // (v1 or v2) within proxy_timeout, and only from a peer inside
    // accept_proxy_from (never empty when accept_proxy is set).
    bool accept_proxy = false;
    CidrSet accept_proxy_from;
    Duration proxy_timeout{3000};
    AccessLogFormat access_log_format = AccessLogFormat::Text;
    // Who may connect: a client inside `deny` is refused; with `allow` set, so
    // is one outside it. Null = no such list. Shared, not copied: a list can
    // hold thousands of prefixes and a Config is copied whole.
    std::shared_ptr<const CidrSet> allow;
    std::shared_ptr<const CidrSet> deny;
    int max_connections_per_source = 0;         // per client IP, all workers; 0 = off
    std::optional<TcpKeepalive> tcp_keepalive;  // client sockets (TCP); nullopt = off
    // Once sluice has passed the backend's FIN on to the client, the session
    // ends if the client stays silent this long without finishing (HAProxy's
    // timeout client-fin); 0 = off. TCP only.
    Duration client_fin_timeout{0};
};

// Which CPU each worker thread is bound to ([global] cpu_affinity).
struct CpuAffinity {
    enum class Mode { None, Auto, List };
    Mode mode = Mode::None;  // None: the kernel moves threads freely
    std::vector<int> cpus;   // List: worker N runs on cpus[N % size]

    static constexpr int kMaxCpu = 1023;  // CPU_SETSIZE - 1

    bool operator==(const CpuAffinity&) const = default;
};

struct GlobalConfig {
    int workers = 0;              // 0 = one per CPU core
    int max_connections = 0;      // 0 = derived from RLIMIT_NOFILE
    Duration drain_timeout{30000};
    std::uint32_t pipe_size = 1u << 20;   // bytes per splice pipe (F_SETPIPE_SZ)
    int backlog = 4096;           // listen(2) backlog
    bool splice = true;           // false: copy through 64 KiB buffers instead (HAProxy's "nosplice")
    CpuAffinity cpu_affinity;
    log::Level log_level = log::Level::Info;    // sluice's own lines below it are dropped
    log::Format log_format = log::Format::Text;
    // DNS for backend names and discovery: resolvers (empty = resolv.conf) and
    // the clamp on a record's TTL that sets when it is asked again.
    std::vector<SocketAddress> resolvers;
    Duration dns_min_ttl{1000};
    Duration dns_max_ttl{300000};
};

struct AdminConfig {
    std::string socket;                   // unix socket path; "" = off
    std::optional<SocketAddress> metrics; // HTTP /metrics; nullopt = off
    std::string token_file;               // as configured ("" = no dashboard actions)
    std::string token;                    // read from token_file with the config; "" = actions refused
};

struct Config {
    std::string path;             // the file it came from ("" for a string)
    GlobalConfig global;
    AdminConfig admin;
    std::vector<ListenerConfig> listeners;
    std::vector<PoolConfig> pools;

    const PoolConfig* find_pool(std::string_view name) const noexcept;
};

// One problem found in a config file. line/column are 1-based; 0 when unknown.
struct ConfigError {
    std::string file;
    int line = 0;
    int column = 0;
    std::string message;

    // "FILE:LINE:COL: message"
    std::string to_string() const;
};

struct ConfigResult {
    std::optional<Config> config;     // set only when errors is empty
    std::vector<ConfigError> errors;  // every problem found, in file order
    bool ok() const noexcept { return errors.empty() && config.has_value(); }
};

// Parses and validates TOML text; `source_name` is used in error messages.
ConfigResult parse_config(std::string_view text, std::string_view source_name);

// Says what is wrong with a DNS name (RFC 1123 labels; '_' allowed for SRV
// owner names), or nullopt when its syntax is fine. Nothing is resolved.
std::optional<std::string> dns_name_problem(std::string_view name);

// ip_hash indexes a pool's primaries, and its backups, with 16 bits: at most
// 65,534 of each. The problem with `pool` (its current backends, listed or
// discovered), or nullopt. Checked by --check, at start and reload, and for
// every discovery answer (which is then not applied).
inline constexpr std::size_t kIpHashMaxBackends = 65'534;
std::optional<std::string> ip_hash_size_problem(const PoolConfig& pool);

// Reads and parses a file. A missing or unreadable file is one error.
ConfigResult load_config_file(const std::string& path);

} // namespace sluice
