// The configuration: an immutable value parsed from TOML and fully validated
// before anything is bound or started. Schema and contract: ARCHITECTURE.md.
//
// A reload parses a new Config; nothing running changes unless it is valid.
#pragma once

#include "sluice/addr.h"

#include <chrono>
#include <cstdint>
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

std::string_view to_string(Protocol protocol) noexcept;
std::string_view to_string(BalanceAlgorithm algorithm) noexcept;

struct HealthCheckConfig {
    enum class Kind : std::uint8_t { TcpConnect, Udp };
    Kind kind = Kind::TcpConnect;
    Duration interval{2000};
    Duration timeout{1000};
    int rise = 2;
    int fall = 3;
    // UDP probe only: the datagram sent, and the prefix the reply must start with
    // ("" = any reply counts).
    std::string send;
    std::string expect;
};

struct BackendConfig {
    SocketAddress address;
    std::string name;         // the configured name, or the address text when omitted
    int weight = 1;           // 1..256
    bool backup = false;      // used only while no primary backend is usable
};

struct PoolConfig {
    std::string name;
    BalanceAlgorithm balance = BalanceAlgorithm::RoundRobin;
    Duration connect_timeout{3000};
    int retries = 2;          // further backends tried when a connect fails
    int max_fails = 3;        // passive: connect failures within fail_timeout mark down; 0 = off
    Duration fail_timeout{10000};
    std::optional<HealthCheckConfig> health;  // nullopt = no active checks
    std::vector<BackendConfig> backends;
};

struct ListenerConfig {
    std::string name;         // the configured name, or the listen address text
    SocketAddress listen;
    Protocol protocol = Protocol::Tcp;
    std::string pool;
    Duration idle_timeout{0}; // 0 = none; UDP default 30s
    int responses = 0;        // UDP: end a flow at this many replies per datagram; 0 = unlimited
    std::string access_log;   // "" = off; "-" = stderr; else a file path
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
};

struct AdminConfig {
    std::string socket;                   // unix socket path; "" = off
    std::optional<SocketAddress> metrics; // HTTP /metrics; nullopt = off
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

// Reads and parses a file. A missing or unreadable file is one error.
ConfigResult load_config_file(const std::string& path);

} // namespace sluice
