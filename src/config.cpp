// Parsing and validation of the TOML configuration (schema: ARCHITECTURE.md).
//
// The whole file is read into a Config in one pass that never stops at the
// first problem: every section is read, every bad value is recorded with the
// position toml++ gives for it, and the caller gets all errors sorted in file
// order. A Config is returned only when there are none, so nothing downstream
// ever sees a half-valid value.
//
// toml++ reports syntax errors by throwing toml::parse_error (TOML_EXCEPTIONS
// is on by default, and Debian's build uses the default). That and any other
// exception is caught in parse_config / load_config_file: none escapes.
#include "sluice/config.h"

#include "sluice/backend_table.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <toml++/toml.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <climits>
#include <limits>
#include <span>
#include <system_error>
#include <tuple>
#include <unordered_map>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "sluice/fd.h"

#if !TOML_EXCEPTIONS
#error "config.cpp catches toml::parse_error; build toml++ with TOML_EXCEPTIONS=1"
#endif

namespace sluice {

namespace {

// ---------------------------------------------------------------------------
// Names: the valid keys of each table and the spelling of each enum value.
// These lists are the schema; the "expected one of" messages print them in
// this order, which is the order the documentation uses.

using KeyList = std::span<const std::string_view>;

constexpr std::array<std::string_view, 4> kTopKeys{"global", "admin", "listeners", "pools"};
constexpr std::array<std::string_view, 12> kGlobalKeys{"workers", "max_connections", "drain_timeout",
                                                       "pipe_size", "backlog", "splice",
                                                       "cpu_affinity", "log_level", "log_format",
                                                       "resolvers", "dns_min_ttl", "dns_max_ttl"};
constexpr std::array<std::string_view, 3> kAdminKeys{"socket", "metrics", "token_file"};
constexpr std::array<std::string_view, 16> kListenerKeys{
    "name", "listen", "protocol", "pool", "idle_timeout", "responses", "access_log",
    "accept_proxy", "accept_proxy_from", "proxy_timeout", "access_log_format",
    "allow", "deny", "max_connections_per_source", "tcp_keepalive", "client_fin_timeout"};
constexpr std::array<std::string_view, 17> kPoolKeys{"balance", "connect_timeout", "retries", "max_fails",
                                                     "fail_timeout", "health", "on_down", "on_up",
                                                     "queue_timeout", "max_queue", "slow_start", "backends",
                                                     "send_proxy", "tcp_keepalive", "server_fin_timeout", "source",
                                                     "discover"};
constexpr std::array<std::string_view, 3> kKeepaliveKeys{"idle", "interval", "count"};
constexpr std::array<std::string_view, 4> kDiscoverKeys{"srv", "name", "port", "weight"};
constexpr std::string_view kDiscoverExpected =
    R"(a table such as discover = { srv = "_pg._tcp.db.service.consul" } or discover = { name = "db.internal", port = 5432 })";
constexpr std::array<std::string_view, 17> kHealthKeys{
    "protocol", "interval", "timeout", "rise", "fall", "port", "send", "expect", "path", "expect_status", "host",
    "role", "user", "password_file", "database", "sslmode", "max_lag"};
constexpr std::array<std::string_view, 6> kBackendKeys{"address", "weight", "name", "backup", "max_connections",
                                                        "send_proxy"};

template <typename E>
struct Choice {
    std::string_view name;
    E value;
};

constexpr std::array<Choice<Protocol>, 2> kProtocols{{
    {"tcp", Protocol::Tcp},
    {"udp", Protocol::Udp},
}};
constexpr std::array<Choice<BalanceAlgorithm>, 4> kBalanceAlgorithms{{
    {"round_robin", BalanceAlgorithm::RoundRobin},
    {"least_conn", BalanceAlgorithm::LeastConn},
    {"ip_hash", BalanceAlgorithm::IpHash},
    {"random", BalanceAlgorithm::Random},
}};
constexpr std::array<Choice<HealthCheckConfig::Kind>, 6> kHealthKinds{{
    {"tcp", HealthCheckConfig::Kind::TcpConnect},
    {"udp", HealthCheckConfig::Kind::Udp},
    {"http", HealthCheckConfig::Kind::Http},
    {"redis", HealthCheckConfig::Kind::Redis},
    {"postgres", HealthCheckConfig::Kind::Postgres},
    {"mysql", HealthCheckConfig::Kind::Mysql},
}};
constexpr std::array<Choice<HealthCheckConfig::Role>, 3> kRoles{{
    {"primary", HealthCheckConfig::Role::Primary},
    {"replica", HealthCheckConfig::Role::Replica},
    {"any", HealthCheckConfig::Role::Any},
}};
constexpr std::array<Choice<PoolConfig::OnDown>, 2> kOnDown{{
    {"keep", PoolConfig::OnDown::Keep},
    {"close", PoolConfig::OnDown::Close},
}};
constexpr std::array<Choice<PoolConfig::OnUp>, 2> kOnUp{{
    {"keep", PoolConfig::OnUp::Keep},
    {"close_backup", PoolConfig::OnUp::CloseBackup},
}};
constexpr std::array<Choice<ProxyVersion>, 3> kSendProxy{{
    {"off", ProxyVersion::Off},
    {"v1", ProxyVersion::V1},
    {"v2", ProxyVersion::V2},
}};
constexpr std::array<Choice<AccessLogFormat>, 2> kAccessLogFormats{{
    {"text", AccessLogFormat::Text},
    {"json", AccessLogFormat::Json},
}};
constexpr std::array<Choice<log::Level>, 5> kLogLevels{{
    {"debug", log::Level::Debug},
    {"info", log::Level::Info},
    {"notice", log::Level::Notice},
    {"warning", log::Level::Warning},
    {"error", log::Level::Error},
}};
constexpr std::array<Choice<log::Format>, 2> kLogFormats{{
    {"text", log::Format::Text},
    {"json", log::Format::Json},
}};
// libpq's sslmode values.
constexpr std::array<Choice<std::string_view>, 6> kSslModes{{
    {"disable", "disable"},
    {"allow", "allow"},
    {"prefer", "prefer"},
    {"require", "require"},
    {"verify-ca", "verify-ca"},
    {"verify-full", "verify-full"},
}};

// Which check kinds take a key of the health table (keys not listed here,
// interval/timeout/rise/fall/protocol/port, apply to every kind).
using KindMask = unsigned;
constexpr KindMask kind_bit(HealthCheckConfig::Kind kind) { return 1u << static_cast<unsigned>(kind); }
constexpr KindMask kDatabaseKinds = kind_bit(HealthCheckConfig::Kind::Redis)
    | kind_bit(HealthCheckConfig::Kind::Postgres) | kind_bit(HealthCheckConfig::Kind::Mysql);
struct KindSpecificKey {
    std::string_view key;
    KindMask kinds;
};
constexpr std::array<KindSpecificKey, 11> kKindSpecificKeys{{
    {"send", kind_bit(HealthCheckConfig::Kind::TcpConnect) | kind_bit(HealthCheckConfig::Kind::Udp)},
    {"expect", kind_bit(HealthCheckConfig::Kind::TcpConnect) | kind_bit(HealthCheckConfig::Kind::Udp)
                   | kind_bit(HealthCheckConfig::Kind::Http)},
    {"path", kind_bit(HealthCheckConfig::Kind::Http)},
    {"expect_status", kind_bit(HealthCheckConfig::Kind::Http)},
    {"host", kind_bit(HealthCheckConfig::Kind::Http)},
    {"role", kDatabaseKinds},
    {"user", kDatabaseKinds},
    {"password_file", kDatabaseKinds},
    {"database", kind_bit(HealthCheckConfig::Kind::Postgres)},
    {"sslmode", kind_bit(HealthCheckConfig::Kind::Postgres)},
    {"max_lag", kDatabaseKinds},
}};

template <typename E, std::size_t N>
std::string_view name_of(const std::array<Choice<E>, N>& choices, E value) noexcept
{
    for (const auto& choice : choices)
        if (choice.value == value)
            return choice.name;
    return "?";
}

// ---------------------------------------------------------------------------
// Durations.

struct DurationUnit {
    std::string_view suffix;
    Duration::rep milliseconds;
};

// "ms" must come before "m": units are matched as prefixes in this order.
constexpr std::array<DurationUnit, 4> kDurationUnits{{
    {"ms", 1},
    {"s", 1000},
    {"m", 60 * 1000},
    {"h", 60 * 60 * 1000},
}};

// Consumes one "<digits><unit>" term from the front of `text` and adds it to
// `total`. False on a missing number or unit, or on overflow.
bool consume_duration_term(std::string_view& text, Duration::rep& total) noexcept
{
    std::uint64_t number = 0;  // unsigned: from_chars then rejects a sign
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), number);
    if (ec != std::errc{} || end == text.data())
        return false;
    text.remove_prefix(static_cast<std::size_t>(end - text.data()));

    for (const auto& unit : kDurationUnits) {
        if (!text.starts_with(unit.suffix))
            continue;
        text.remove_prefix(unit.suffix.size());
        constexpr auto max = std::numeric_limits<Duration::rep>::max();
        auto limit = static_cast<std::uint64_t>((max - total) / unit.milliseconds);
        if (number > limit)
            return false;
        total += static_cast<Duration::rep>(number) * unit.milliseconds;
        return true;
    }
    return false;
}

// ---------------------------------------------------------------------------
// Describing what was found and what was expected.

std::string_view describe_type(toml::node_type type) noexcept
{
    switch (type) {
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a floating-point number";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
    case toml::node_type::none: break;
    }
    return "nothing";
}

std::string join(KeyList names)
{
    return fmt::format("{}", fmt::join(names, ", "));
}

template <typename E, std::size_t N>
std::string join_choices(const std::array<Choice<E>, N>& choices)
{
    std::vector<std::string_view> names;
    for (const auto& choice : choices)
        names.push_back(choice.name);
    return join(names);
}

struct IntRange {
    std::int64_t min;
    std::int64_t max;

    bool contains(std::int64_t value) const noexcept { return value >= min && value <= max; }
    std::string expected() const
    {
        if (max == INT_MAX)
            return fmt::format("an integer of at least {}", min);
        return fmt::format("an integer from {} to {}", min, max);
    }
};

constexpr IntRange kNonNegative{0, INT_MAX};

enum class DurationRule : std::uint8_t { AllowZero, Positive };
enum class PortRule : std::uint8_t { AnyPort, NonZero };

constexpr std::string_view kDurationExpected =
    R"(a duration with a unit (ms, s, m, h) such as "250ms", "3s" or "1m30s")";
constexpr std::string_view kHealthExpected = R"(a table such as health = { interval = "2s", timeout = "1s" })";
constexpr std::string_view kBackendExpected = R"(a table such as { address = "10.0.0.1:5432" })";
constexpr std::string_view kKeepaliveExpected =
    R"(a table such as tcp_keepalive = { idle = "60s", interval = "10s", count = 5 })";
constexpr std::string_view kAddressExpected =
    R"("ip:port" such as "127.0.0.1:5432", "[::1]:5432", "*:5432" or "localhost:5432")";

// Says what is wrong with a duration string that parse_duration rejected.
std::string duration_problem(std::string_view text)
{
    bool digits_only = !text.empty()
        && std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (digits_only)
        return fmt::format(R"(has no unit, expected a duration such as "{}s" (units: ms, s, m, h))", text);
    if (text.starts_with('-'))
        return fmt::format("is negative, expected {}", kDurationExpected);
    return fmt::format("is not a valid duration, expected {}", kDurationExpected);
}

// Says what is wrong with an address string that SocketAddress::parse rejected.
std::string address_problem(std::string_view text)
{
    std::size_t colon = text.starts_with('[') ? text.find("]:") : text.rfind(':');
    if (colon == std::string_view::npos)
        return fmt::format("has no port, expected {}", kAddressExpected);
    std::string_view port = text.substr(colon + (text.starts_with('[') ? 2 : 1));
    bool numeric = !port.empty()
        && std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (!numeric)
        return fmt::format(R"(has an invalid port "{}", expected a port from 0 to 65535)", port);
    if (port.size() > 5 || std::stoul(std::string(port)) > 65535)
        return fmt::format("has port {} which is out of range, expected a port from 0 to 65535", port);
    return fmt::format("is not a numeric IP address and port, expected {} (host names are not resolved)",
                       kAddressExpected);
}

} // namespace

std::optional<std::string> ip_hash_size_problem(const PoolConfig& pool)
{
    if (pool.balance != BalanceAlgorithm::IpHash)
        return std::nullopt;
    const auto backups = static_cast<std::size_t>(
        std::count_if(pool.backends.begin(), pool.backends.end(), [](const BackendConfig& b) { return b.backup; }));
    const std::size_t primaries = pool.backends.size() - backups;
    if (primaries <= kIpHashMaxBackends && backups <= kIpHashMaxBackends)
        return std::nullopt;
    return fmt::format("pool \"{}\": {} {} backends, expected at most {} with balance = \"ip_hash\"", pool.name,
                       std::max(primaries, backups), primaries > kIpHashMaxBackends ? "primary" : "backup",
                       kIpHashMaxBackends);
}

std::optional<std::string> dns_name_problem(std::string_view name)
{
    if (name.ends_with('.'))
        name.remove_suffix(1);  // fully qualified
    if (name.empty())
        return "is empty, expected a DNS name such as \"db.internal\"";
    if (name.size() > 253)
        return fmt::format("is {} characters long, expected a DNS name of at most 253", name.size());
    std::size_t start = 0;
    while (start <= name.size()) {
        std::size_t dot = name.find('.', start);
        std::string_view label = name.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
        if (label.empty())
            return std::string("has an empty label (two dots in a row, or a leading dot), expected labels such as "
                               "\"db.internal\"");
        if (label.size() > 63)
            return fmt::format(R"(has the label "{}..." of {} characters, expected labels of at most 63)",
                               label.substr(0, 16), label.size());
        for (char c : label) {
            bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-'
                || c == '_';  // '_' for SRV owner names (_pg._tcp) and names some registries hand out
            if (!ok)
                return fmt::format("contains '{}', expected letters, digits, '-' and '_' in dot-separated labels",
                                   c < 0x20 || c == 0x7f ? '?' : c);
        }
        if (label.front() == '-' || label.back() == '-')
            return fmt::format(R"(has the label "{}" that starts or ends with '-', expected a DNS label)", label);
        if (dot == std::string_view::npos)
            break;
        start = dot + 1;
    }
    // All-numeric last label: a mistyped IP address, never a host name.
    std::string_view last = name.substr(name.rfind('.') == std::string_view::npos ? 0 : name.rfind('.') + 1);
    if (std::all_of(last.begin(), last.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return std::string("looks like an IP address but is not a valid one, expected an IP address or a DNS name");
    return std::nullopt;
}

namespace {

// Rewrites toml++'s "Error while parsing key-value pair: ..." as
// "syntax error in key-value pair: ...", keeping what toml++ says it expected.
std::string syntax_message(std::string_view description)
{
    constexpr std::string_view prefix = "Error while parsing ";
    if (description.starts_with(prefix))
        return fmt::format("syntax error in {}", description.substr(prefix.size()));
    return fmt::format("syntax error: {}", description);
}

// ---------------------------------------------------------------------------
// Collecting errors.

class Diagnostics {
public:
    explicit Diagnostics(std::string_view file) : file_(file) {}

    void report(toml::source_position where, std::string message)
    {
        errors_.push_back(ConfigError{file_, static_cast<int>(where.line), static_cast<int>(where.column),
                                      std::move(message)});
    }

    void report_type(const toml::node& node, std::string_view what, std::string_view expected)
    {
        report(node.source().begin, fmt::format("{} is {}, expected {}", what, describe_type(node.type()), expected));
    }

    bool empty() const noexcept { return errors_.empty(); }

    // All errors, in file order. Errors at the same position keep the order
    // they were found in.
    std::vector<ConfigError> take_sorted()
    {
        std::stable_sort(errors_.begin(), errors_.end(), [](const ConfigError& a, const ConfigError& b) {
            return std::tie(a.line, a.column) < std::tie(b.line, b.column);
        });
        return std::move(errors_);
    }

private:
    std::string file_;
    std::vector<ConfigError> errors_;
};

// ---------------------------------------------------------------------------
// Reading one table: each reader leaves `out` untouched when the key is absent
// (so the caller's default stands) or its value is invalid (an error is
// recorded), and returns true only when it stored a value.

class TableReader {
public:
    // `where` names the table in unknown-key messages, e.g. "[global]".
    TableReader(Diagnostics& diag, const toml::table& table, std::string where)
        : diag_(diag), table_(table), where_(std::move(where))
    {
    }

    bool has(std::string_view key) const { return table_.contains(key); }
    const toml::table& table() const noexcept { return table_; }
    const toml::node* node(std::string_view key) const { return table_.get(key); }

    void reject_unknown_keys(KeyList valid) const
    {
        for (const auto& [key, value] : table_) {
            if (std::find(valid.begin(), valid.end(), key.str()) != valid.end())
                continue;
            diag_.report(key.source().begin, fmt::format(R"(unknown key "{}" in {}, expected one of: {})",
                                                         key.str(), where_, join(valid)));
        }
    }

    // Reports a missing required key at the table itself; `example` shows one.
    bool require(std::string_view key, std::string_view example) const
    {
        if (has(key))
            return true;
        diag_.report(table_.source().begin,
                     fmt::format(R"({} is missing the required key "{}", expected e.g. {})", where_, key, example));
        return false;
    }

    template <typename T>
    bool integer(std::string_view key, IntRange range, T& out) const
    {
        const toml::node* value = node(key);
        if (!value)
            return false;
        if (!value->is_integer()) {
            diag_.report_type(*value, key, range.expected());
            return false;
        }
        std::int64_t number = value->as_integer()->get();
        if (!range.contains(number)) {
            diag_.report(value->source().begin,
                         fmt::format("{} {} is out of range, expected {}", key, number, range.expected()));
            return false;
        }
        out = static_cast<T>(number);
        return true;
    }

    bool boolean(std::string_view key, bool& out) const
    {
        const toml::node* value = node(key);
        if (!value)
            return false;
        if (!value->is_boolean()) {
            diag_.report_type(*value, key, "true or false");
            return false;
        }
        out = value->as_boolean()->get();
        return true;
    }

    // Returns the string value, or nullptr when absent or not a string.
    const toml::value<std::string>* string_node(std::string_view key, std::string_view expected) const
    {
        const toml::node* value = node(key);
        if (!value)
            return nullptr;
        if (!value->is_string()) {
            diag_.report_type(*value, key, expected);
            return nullptr;
        }
        return value->as_string();
    }

    bool string(std::string_view key, std::string& out) const
    {
        const auto* value = string_node(key, "a string");
        if (!value)
            return false;
        out = value->get();
        return true;
    }

    // A name used to address something (pool/backend, listener): non-empty and
    // free of '/', the separator of POOL/NAME in admin commands.
    bool name(std::string_view key, std::string& out) const
    {
        const auto* value = string_node(key, "a string");
        if (!value)
            return false;
        if (auto problem = name_problem(value->get())) {
            diag_.report(value->source().begin, fmt::format(R"({} "{}" {})", key, value->get(), *problem));
            return false;
        }
        out = value->get();
        return true;
    }

    static std::optional<std::string> name_problem(std::string_view name)
    {
        if (name.empty())
            return "is empty, expected a non-empty name (or no name key, to use the default)";
        if (name.find('/') != std::string_view::npos)
            return R"(contains "/", expected a name without "/" (admin commands use POOL/NAME))";
        // An admin command line is split into words at spaces, tabs and CRs,
        // and replies are lines: such a name could not be addressed or printed.
        constexpr std::string_view expected =
            "expected a name without spaces or control characters (admin commands split words at whitespace)";
        for (char c : name) {
            const auto byte = static_cast<unsigned char>(c);
            if (byte == ' ')
                return fmt::format("contains a space, {}", expected);
            if (byte < 0x20 || byte == 0x7f)
                return fmt::format("contains control character {:#04x}, {}", byte, expected);
        }
        return std::nullopt;
    }

    bool duration(std::string_view key, DurationRule rule, Duration& out) const
    {
        const toml::node* value = node(key);
        if (!value)
            return false;
        if (!value->is_string()) {
            std::string example = value->is_integer() ? fmt::format("{}s", value->as_integer()->get()) : "3s";
            diag_.report_type(*value, key, fmt::format(R"(a duration string such as "{}")", example));
            return false;
        }
        const std::string& text = value->as_string()->get();
        auto parsed = parse_duration(text);
        if (!parsed) {
            diag_.report(value->source().begin, fmt::format(R"({} "{}" {})", key, text, duration_problem(text)));
            return false;
        }
        if (rule == DurationRule::Positive && parsed->count() == 0) {
            diag_.report(value->source().begin,
                         fmt::format(R"({} "{}" is zero, expected a duration greater than zero such as "1s")", key,
                                     text));
            return false;
        }
        out = *parsed;
        return true;
    }

    bool address(std::string_view key, PortRule rule, SocketAddress& out) const
    {
        const auto* value = string_node(key, fmt::format("an address string, {}", kAddressExpected));
        if (!value)
            return false;
        const std::string& text = value->get();
        auto parsed = SocketAddress::parse(text);
        if (!parsed) {
            diag_.report(value->source().begin, fmt::format(R"({} "{}" {})", key, text, address_problem(text)));
            return false;
        }
        if (rule == PortRule::NonZero && parsed->port() == 0) {
            diag_.report(value->source().begin,
                         fmt::format(R"({} "{}" has port 0, expected a port from 1 to 65535)", key, text));
            return false;
        }
        out = *parsed;
        return true;
    }

    // A backend's address: "ip:port", or "host:port" with a DNS name checked
    // for syntax only (it is resolved at run time, never by --check).
    bool backend_address(std::string_view key, BackendConfig& out) const
    {
        const auto* value = string_node(key, fmt::format("an address string, {}", kAddressExpected));
        if (!value)
            return false;
        const std::string& text = value->get();
        if (SocketAddress::parse(text) || text.starts_with('[') || text.rfind(':') == std::string::npos)
            return address(key, PortRule::NonZero, out.address);
        std::size_t colon = text.rfind(':');
        std::string_view host = std::string_view(text).substr(0, colon);
        std::string_view port = std::string_view(text).substr(colon + 1);
        bool numeric = !port.empty() && port.size() <= 5
            && std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
        if (numeric && std::stoul(std::string(port)) == 0) {
            diag_.report(value->source().begin,
                         fmt::format(R"({} "{}" has port 0, expected a port from 1 to 65535)", key, text));
            return false;
        }
        if (!numeric || std::stoul(std::string(port)) > 65535)
            return address(key, PortRule::NonZero, out.address);  // reports the port
        if (auto problem = dns_name_problem(host)) {
            diag_.report(value->source().begin,
                         fmt::format(R"({} "{}": host "{}" {})", key, text, host, *problem));
            return false;
        }
        out.host = std::string(host);
        out.port = static_cast<std::uint16_t>(std::stoul(std::string(port)));
        out.status = NameStatus::Pending;
        return true;
    }

    // A DNS name under `key` (syntax only).
    bool dns_name(std::string_view key, std::string& out) const
    {
        const auto* value = string_node(key, R"(a DNS name such as "db.internal")");
        if (!value)
            return false;
        if (auto problem = dns_name_problem(value->get())) {
            diag_.report(value->source().begin, fmt::format(R"({} "{}" {})", key, value->get(), *problem));
            return false;
        }
        out = value->get();
        return true;
    }

    template <typename E, std::size_t N>
    bool choice(std::string_view key, const std::array<Choice<E>, N>& choices, E& out) const
    {
        std::string expected = fmt::format("one of: {}", join_choices(choices));
        const auto* value = string_node(key, expected);
        if (!value)
            return false;
        for (const auto& c : choices) {
            if (c.name == value->get()) {
                out = c.value;
                return true;
            }
        }
        diag_.report(value->source().begin,
                     fmt::format(R"(unknown {} "{}", expected {})", key, value->get(), expected));
        return false;
    }

private:
    Diagnostics& diag_;
    const toml::table& table_;
    std::string where_;
};

// ---------------------------------------------------------------------------
// The sections.

class ConfigReader {
public:
    explicit ConfigReader(Diagnostics& diag) : diag_(diag) {}

    Config read(const toml::table& root)
    {
        Config config;
        TableReader top(diag_, root, "the top-level table");
        top.reject_unknown_keys(kTopKeys);
        if (const toml::table* global = table_at(root, "global", "a table [global]"))
            read_global(*global, config.global);
        if (const toml::table* admin = table_at(root, "admin", "a table [admin]"))
            read_admin(*admin, config.admin);
        config.pools = read_pools(root.get("pools"));
        config.listeners = read_listeners(root.get("listeners"), root.get("pools"));
        return config;
    }

private:
    // Where a backend's or listener's identifying values were written, for
    // the duplicate checks. `valid` is false when its address (or a listener's
    // protocol) was missing or bad, so it takes no part in them.
    struct Origin {
        bool valid = false;
        bool named = false;  // a valid name was configured
        toml::source_position address_at{};
        toml::source_position name_at{};  // the name value, or the address when defaulted
    };

    // Completes `origin` for a valid entry whose address is under `address_key`,
    // and gives an unnamed entry its default name: the address as printed.
    static void locate(const TableReader& in, std::string_view address_key, const SocketAddress& address,
                       Origin& origin, std::string& name)
    {
        origin.address_at = in.node(address_key)->source().begin;
        origin.name_at = origin.named ? in.node("name")->source().begin : origin.address_at;
        if (!in.has("name"))
            name = address.to_string();
    }

    // The table under `key`, or nullptr when absent or of another type (reported).
    const toml::table* table_at(const toml::table& parent, std::string_view key, std::string_view expected) const
    {
        const toml::node* node = parent.get(key);
        if (!node)
            return nullptr;
        if (!node->is_table())
            diag_.report_type(*node, key, expected);
        return node->as_table();
    }

    // The tables of an array of tables; any other element is reported.
    std::vector<const toml::table*> tables_in(const toml::array& array, std::string_view what,
                                              std::string_view expected) const
    {
        std::vector<const toml::table*> tables;
        for (const toml::node& element : array) {
            if (const toml::table* table = element.as_table())
                tables.push_back(table);
            else
                diag_.report_type(element, what, expected);
        }
        return tables;
    }

    void read_global(const toml::table& table, GlobalConfig& out) const
    {
        TableReader in(diag_, table, "[global]");
        in.reject_unknown_keys(kGlobalKeys);
        in.integer("workers", IntRange{0, 1024}, out.workers);
        in.integer("max_connections", kNonNegative, out.max_connections);
        in.duration("drain_timeout", DurationRule::AllowZero, out.drain_timeout);
        in.integer("pipe_size", IntRange{4096, 64 << 20}, out.pipe_size);
        in.integer("backlog", IntRange{1, 65535}, out.backlog);
        in.boolean("splice", out.splice);
        read_cpu_affinity(in, out.cpu_affinity);
        in.choice("log_level", kLogLevels, out.log_level);
        in.choice("log_format", kLogFormats, out.log_format);
        read_resolvers(in, out.resolvers);
        bool min_ok = in.duration("dns_min_ttl", DurationRule::Positive, out.dns_min_ttl);
        bool max_ok = in.duration("dns_max_ttl", DurationRule::Positive, out.dns_max_ttl);
        if ((min_ok || max_ok) && out.dns_max_ttl < out.dns_min_ttl)
            diag_.report(in.node(max_ok ? "dns_max_ttl" : "dns_min_ttl")->source().begin,
                         fmt::format("dns_max_ttl ({} ms) is below dns_min_ttl ({} ms), expected dns_min_ttl <= "
                                     "dns_max_ttl",
                                     out.dns_max_ttl.count(), out.dns_min_ttl.count()));
    }

    // resolvers = ["ip:port", ...]: the DNS servers asked instead of resolv.conf's.
    void read_resolvers(const TableReader& in, std::vector<SocketAddress>& out) const
    {
        const toml::node* node = in.node("resolvers");
        if (!node)
            return;
        constexpr std::string_view expected = R"(an array of "ip:port" strings such as ["10.0.0.2:53"])";
        const toml::array* array = node->as_array();
        if (!array) {
            diag_.report_type(*node, "resolvers", expected);
            return;
        }
        for (const toml::node& element : *array) {
            const auto* text = element.as_string();
            if (!text) {
                diag_.report_type(element, "a resolver", expected);
                continue;
            }
            auto parsed = SocketAddress::parse(text->get());
            if (!parsed || parsed->port() == 0 || parsed->is_wildcard()) {
                diag_.report(element.source().begin,
                             fmt::format(R"(resolver "{}" is not an IP address and port, expected {})", text->get(),
                                         expected));
                continue;
            }
            out.push_back(*parsed);
        }
    }

    // "none", "auto", or a list of CPU numbers. Whether the listed CPUs are
    // allowed to this process only the machine can tell: that is checked at
    // start, at reload and by --check (plan_worker_cpus), not here.
    void read_cpu_affinity(const TableReader& in, CpuAffinity& out) const
    {
        const toml::node* value = in.node("cpu_affinity");
        if (!value)
            return;
        constexpr std::string_view expected = R"("none", "auto", or an array of CPU numbers such as [0, 1])";
        if (const auto* text = value->as_string()) {
            if (text->get() == "none")
                out = CpuAffinity{};
            else if (text->get() == "auto")
                out = CpuAffinity{CpuAffinity::Mode::Auto, {}};
            else
                diag_.report(value->source().begin,
                             fmt::format(R"(unknown cpu_affinity "{}", expected {})", text->get(), expected));
            return;
        }
        const toml::array* array = value->as_array();
        if (!array) {
            diag_.report_type(*value, "cpu_affinity", expected);
            return;
        }
        if (array->empty()) {
            diag_.report(value->source().begin,
                         R"(cpu_affinity is empty, expected at least one CPU number, or "none")");
            return;
        }
        constexpr IntRange kCpuNumber{0, CpuAffinity::kMaxCpu};
        std::vector<int> cpus;
        for (const toml::node& element : *array) {
            if (!element.is_integer()) {
                diag_.report_type(element, "a cpu_affinity entry", kCpuNumber.expected());
                return;
            }
            std::int64_t cpu = element.as_integer()->get();
            if (!kCpuNumber.contains(cpu)) {
                diag_.report(element.source().begin, fmt::format("cpu_affinity entry {} is out of range, expected {}",
                                                                 cpu, kCpuNumber.expected()));
                return;
            }
            cpus.push_back(static_cast<int>(cpu));
        }
        out = CpuAffinity{CpuAffinity::Mode::List, std::move(cpus)};
    }

    void read_admin(const toml::table& table, AdminConfig& out) const
    {
        TableReader in(diag_, table, "[admin]");
        in.reject_unknown_keys(kAdminKeys);
        read_admin_socket(in, out.socket);
        if (const auto* metrics = in.string_node("metrics", "a string such as \"127.0.0.1:9100\", or \"\" for off");
            metrics && !metrics->get().empty()) {
            SocketAddress address;
            if (in.address("metrics", PortRule::AnyPort, address))
                out.metrics = address;
        }
        // The dashboard's actions are refused unless a token is configured;
        // it is read with the config, so a reload picks up a rotated one.
        if (in.string("token_file", out.token_file))
            if (auto token = read_secret_file(*in.node("token_file"), "token_file", "token", out.token_file))
                out.token = std::move(*token);
    }

    // The path must fit in sockaddr_un::sun_path with its terminating NUL, or
    // bind(2) would fail only once the admin server starts.
    void read_admin_socket(const TableReader& in, std::string& out) const
    {
        std::string path;
        if (!in.string("socket", path))
            return;
        constexpr std::size_t max_path = sizeof(sockaddr_un::sun_path) - 1;
        if (path.size() > max_path) {
            diag_.report(in.node("socket")->source().begin,
                         fmt::format("socket path is {} bytes long, expected at most {} bytes (the limit of a unix "
                                     "socket address)",
                                     path.size(), max_path));
            return;
        }
        out = std::move(path);
    }

    // --- pools ---

    std::vector<PoolConfig> read_pools(const toml::node* node) const
    {
        std::vector<PoolConfig> pools;
        if (!node)
            return pools;
        const toml::table* table = node->as_table();
        if (!table) {
            diag_.report_type(*node, "pools", "a table of pools such as [pools.postgres]");
            return pools;
        }
        // toml++ iterates keys in sorted order; the Config keeps file order.
        std::vector<std::pair<toml::source_position, PoolConfig>> found;
        for (const auto& [key, value] : *table) {
            std::string name(key.str());
            std::string written = fmt::format("[pools.{}]", name);
            if (auto problem = TableReader::name_problem(name))
                diag_.report(key.source().begin, fmt::format(R"(pool name "{}" {})", name, *problem));
            if (const toml::table* pool = value.as_table())
                found.emplace_back(pool->source().begin, read_pool(name, *pool));
            else
                diag_.report_type(value, fmt::format("pools.{}", name), fmt::format("a table {}", written));
        }
        std::stable_sort(found.begin(), found.end(), [](const auto& a, const auto& b) {
            return std::tie(a.first.line, a.first.column) < std::tie(b.first.line, b.first.column);
        });
        std::size_t backends = 0;
        for (auto& entry : found) {
            backends += entry.second.backends.size();
            if (auto problem = ip_hash_size_problem(entry.second))
                diag_.report(entry.first, *problem);
            pools.push_back(std::move(entry.second));
        }
        // The same limit the start applies (the backend table's size), so
        // --check never passes a file that then fails to start.
        if (backends > BackendTable::kCapacity)
            diag_.report(node->source().begin,
                         fmt::format("{} backends in all pools, expected at most {} (the size of sluice's backend "
                                     "table)",
                                     backends, BackendTable::kCapacity));
        return pools;
    }

    PoolConfig read_pool(const std::string& name, const toml::table& table) const
    {
        PoolConfig pool;
        pool.name = name;
        TableReader in(diag_, table, fmt::format("[pools.{}]", name));
        in.reject_unknown_keys(kPoolKeys);
        in.choice("balance", kBalanceAlgorithms, pool.balance);
        in.duration("connect_timeout", DurationRule::Positive, pool.connect_timeout);
        in.integer("retries", IntRange{0, 32}, pool.retries);
        in.integer("max_fails", IntRange{0, 1000}, pool.max_fails);
        in.duration("fail_timeout", DurationRule::Positive, pool.fail_timeout);
        if (const toml::table* health = table_at(table, "health", kHealthExpected))
            pool.health = read_health(name, *health);
        in.choice("on_down", kOnDown, pool.on_down);
        in.choice("on_up", kOnUp, pool.on_up);
        in.choice("send_proxy", kSendProxy, pool.send_proxy);
        in.duration("queue_timeout", DurationRule::AllowZero, pool.queue_timeout);
        if (in.integer("max_queue", IntRange{1, 1'000'000}, pool.max_queue) && pool.queue_timeout.count() == 0)
            diag_.report(in.node("max_queue")->source().begin,
                         R"(max_queue is set but the pool has no queue, expected queue_timeout too (e.g. "5s"))");
        in.duration("slow_start", DurationRule::AllowZero, pool.slow_start);
        pool.tcp_keepalive = read_keepalive(table, fmt::format("[pools.{}.tcp_keepalive]", name));
        in.duration("server_fin_timeout", DurationRule::AllowZero, pool.server_fin_timeout);
        pool.source = read_source(in);
        if (const toml::table* discover = table_at(table, "discover", kDiscoverExpected))
            pool.discover = read_discover(name, *discover);
        if (in.has("discover") && !in.has("backends"))
            return pool;  // discovered backends only
        if (in.require("backends", R"(backends = [{ address = "10.0.0.1:5432" }])"))
            pool.backends = read_backends(name, *in.node("backends"), pool.send_proxy);
        check_source_family(in, pool);
        return pool;
    }

    // --- client addresses and connection hygiene (listener and pool keys) ---

    // tcp_keepalive = { idle, interval, count }; each key optional (the
    // kernel's default stands for one left out). The socket options take
    // whole seconds, so a duration with a fraction would be silently cut.
    std::optional<TcpKeepalive> read_keepalive(const toml::table& parent, std::string where) const
    {
        const toml::table* table = table_at(parent, "tcp_keepalive", kKeepaliveExpected);
        if (!table)
            return std::nullopt;
        TcpKeepalive keepalive;
        TableReader in(diag_, *table, std::move(where));
        in.reject_unknown_keys(kKeepaliveKeys);
        for (auto [key, out] : {std::pair{"idle", &keepalive.idle}, std::pair{"interval", &keepalive.interval}}) {
            if (!in.duration(key, DurationRule::Positive, *out))
                continue;
            // TCP_KEEPIDLE / TCP_KEEPINTVL: whole seconds, at most MAX_TCP_KEEPIDLE.
            if (out->count() % 1000 != 0 || out->count() > 32767 * 1000) {
                diag_.report(in.node(key)->source().begin,
                             fmt::format(R"({} "{}" is not a whole number of seconds from 1s to 32767s, expected )"
                                         R"(e.g. "60s" (the kernel counts keepalive times in seconds))",
                                         key, in.node(key)->as_string()->get()));
                *out = Duration{0};
            }
        }
        in.integer("count", IntRange{1, 127}, keepalive.count);  // TCP_KEEPCNT's range
        return keepalive;
    }

    // source = "IP": an address literal without a port (the kernel picks the
    // port at connect, IP_BIND_ADDRESS_NO_PORT).
    std::optional<SocketAddress> read_source(const TableReader& in) const
    {
        const auto* value = in.string_node("source", R"(an IP address string such as "10.0.0.5")");
        if (!value)
            return std::nullopt;
        auto parsed = SocketAddress::from_ip(value->get(), 0);
        if (!parsed) {
            diag_.report(value->source().begin,
                         fmt::format(R"(source "{}" is not an IP address, expected an IPv4 or IPv6 literal without )"
                                     R"(a port such as "10.0.0.5" or "2001:db8::5")",
                                     value->get()));
            return std::nullopt;
        }
        return parsed;
    }

    // A socket of one family cannot bind an address of the other: every
    // connect to that backend would fail.
    void check_source_family(const TableReader& in, const PoolConfig& pool) const
    {
        if (!pool.source)
            return;
        for (const BackendConfig& backend : pool.backends) {
            if (backend.address.family() == pool.source->family())
                continue;
            diag_.report(in.node("source")->source().begin,
                         fmt::format(R"(source "{}" is {} but backend {} is {}, expected a source address of the )"
                                     "backends' family",
                                     pool.source->ip_string(), pool.source->is_ipv6() ? "IPv6" : "IPv4",
                                     backend.address.to_string(), backend.address.is_ipv6() ? "IPv6" : "IPv4"));
            return;
        }
    }

    // allow / deny = ["CIDR", ...]. Each bad entry is named where it stands.
    std::shared_ptr<const CidrSet> read_cidr_list(const TableReader& in, std::string_view key) const
    {
        const toml::node* node = in.node(key);
        if (!node)
            return nullptr;
        const toml::array* array = node->as_array();
        if (!array) {
            diag_.report_type(*node, key, R"(an array of addresses or prefixes such as ["10.0.0.0/8", "::1"])");
            return nullptr;
        }
        if (array->empty() && key == "allow") {
            diag_.report(node->source().begin,
                         "allow is empty, which would refuse every client, expected at least one address or prefix "
                         "(or no allow key to admit everyone)");
            return nullptr;
        }
        auto set = std::make_shared<CidrSet>();
        bool ok = true;
        for (const toml::node& element : *array) {
            const auto* text = element.as_string();
            if (!text) {
                diag_.report_type(element, fmt::format("an {} entry", key), R"(a string such as "10.0.0.0/8")");
                ok = false;
                continue;
            }
            if (auto problem = set->add(text->get())) {
                diag_.report(element.source().begin, fmt::format("{} entry {}", key, *problem));
                ok = false;
            }
        }
        return ok ? std::shared_ptr<const CidrSet>(std::move(set)) : nullptr;
    }

    void read_client_admission(const TableReader& in, const toml::table& table, ListenerConfig& listener,
                               bool protocol_valid) const
    {
        listener.allow = read_cidr_list(in, "allow");
        listener.deny = read_cidr_list(in, "deny");
        in.integer("max_connections_per_source", IntRange{0, 1'000'000}, listener.max_connections_per_source);
        // Keepalive and half-close concern TCP connections only.
        const bool udp = protocol_valid && listener.protocol == Protocol::Udp;
        for (std::string_view key : {"tcp_keepalive", "client_fin_timeout"}) {
            if (udp && in.has(key))
                diag_.report(in.node(key)->source().begin,
                             fmt::format(R"({} is set on a udp listener, expected it only with protocol = "tcp")", key));
        }
        if (udp)
            return;
        listener.tcp_keepalive = read_keepalive(table, "[[listeners]] tcp_keepalive");
        in.duration("client_fin_timeout", DurationRule::AllowZero, listener.client_fin_timeout);
    }

    // discover = { srv = "..." } or { name = "...", port = N [, weight = W] }.
    DiscoverConfig read_discover(const std::string& pool, const toml::table& table) const
    {
        DiscoverConfig discover;
        TableReader in(diag_, table, fmt::format("discover of pool \"{}\"", pool));
        in.reject_unknown_keys(kDiscoverKeys);
        if (in.has("srv") == in.has("name")) {
            diag_.report(table.source().begin,
                         fmt::format("discover needs exactly one of \"srv\" or \"name\", expected {}",
                                     kDiscoverExpected));
            return discover;
        }
        if (in.has("srv")) {
            in.dns_name("srv", discover.srv);
            for (std::string_view key : {"port", "weight"})
                if (const toml::node* extra = in.node(key))
                    diag_.report(extra->source().begin,
                                 fmt::format(R"({} is taken from the SRV records, expected discover = {{ srv = "..." }} )"
                                             "without it",
                                             key));
            return discover;
        }
        in.dns_name("name", discover.name);
        if (in.require("port", R"(discover = { name = "db.internal", port = 5432 })"))
            in.integer("port", IntRange{1, 65535}, discover.port);
        in.integer("weight", IntRange{1, 256}, discover.weight);
        return discover;
    }

    HealthCheckConfig read_health(const std::string& pool, const toml::table& table) const
    {
        using Kind = HealthCheckConfig::Kind;
        HealthCheckConfig health;
        TableReader in(diag_, table, fmt::format("[pools.{}.health]", pool));
        in.reject_unknown_keys(kHealthKeys);
        in.duration("interval", DurationRule::Positive, health.interval);
        in.duration("timeout", DurationRule::Positive, health.timeout);
        in.integer("rise", IntRange{1, 100}, health.rise);
        in.integer("fall", IntRange{1, 100}, health.fall);
        in.integer("port", IntRange{1, 65535}, health.port);
        if (in.has("protocol") && !in.choice("protocol", kHealthKinds, health.kind))
            return health;  // the other keys' meaning depends on the kind
        // A key of another kind is reported and then ignored: the kind's own
        // keys are still checked, so every error shows in one run.
        reject_keys_of_other_kinds(in, health.kind);
        in.string("send", health.send);
        in.string("expect", health.expect);
        switch (health.kind) {
        case Kind::TcpConnect:
            if (!health.send.empty() && health.expect.empty())
                in.require("expect", R"(expect = "+PONG" (the prefix the reply to send must start with))");
            break;
        case Kind::Udp: require_udp_payload(in, health); break;
        case Kind::Http: read_http_check(in, health); break;
        case Kind::Redis:
        case Kind::Postgres:
        case Kind::Mysql: read_database_check(in, health); break;
        }
        return health;
    }

    // Each kind takes the common keys and its own; another kind's key is a
    // mistake worth naming (role on a tcp check would silently check nothing).
    void reject_keys_of_other_kinds(const TableReader& in, HealthCheckConfig::Kind kind) const
    {
        for (const KindSpecificKey& spec : kKindSpecificKeys) {
            const toml::node* value = in.node(spec.key);
            if (!value || (spec.kinds & kind_bit(kind)))
                continue;
            std::vector<std::string> takers;
            for (const auto& choice : kHealthKinds)
                if (spec.kinds & kind_bit(choice.value))
                    takers.push_back(fmt::format(R"("{}")", choice.name));
            // "tcp" or "udp"; "redis", "postgres" or "mysql"
            std::string last = std::move(takers.back());
            takers.pop_back();
            std::string kinds = takers.empty() ? last : fmt::format("{} or {}", fmt::join(takers, ", "), last);
            diag_.report(value->source().begin,
                         fmt::format("{} is set on {} {} health check, expected it only with protocol = {}", spec.key,
                                     kind == HealthCheckConfig::Kind::Http ? "an" : "a", name_of(kHealthKinds, kind),
                                     kinds));
        }
    }

    void read_http_check(const TableReader& in, HealthCheckConfig& health) const
    {
        if (in.string("path", health.path) && !health.path.starts_with('/'))
            diag_.report(in.node("path")->source().begin,
                         fmt::format(R"(path "{}" does not start with "/", expected e.g. "/health")", health.path));
        in.integer("expect_status", IntRange{100, 599}, health.expect_status);
        in.string("host", health.host);
        for (std::string_view key : {"path", "host"}) {
            const std::string& text = key == "path" ? health.path : health.host;
            if (std::any_of(text.begin(), text.end(), [](char c) { return c == ' ' || c == '\r' || c == '\n'; }))
                diag_.report(in.node(key)->source().begin,
                             fmt::format("{} contains a space or a line break, expected one word of an HTTP request "
                                         "line or header",
                                         key));
        }
    }

    void read_database_check(const TableReader& in, HealthCheckConfig& health) const
    {
        using Kind = HealthCheckConfig::Kind;
        in.choice("role", kRoles, health.role);
        in.string("user", health.user);
        if (health.kind != Kind::Redis && health.user.empty()) {
            if (const toml::node* user = in.node("user"))
                diag_.report(user->source().begin, "user is empty, expected the login the check uses");
            else
                in.require("user", R"(user = "monitor" (the login the check uses))");
        }
        if (health.kind == Kind::Postgres) {
            health.database = "postgres";
            if (in.string("database", health.database) && health.database.empty())
                diag_.report(in.node("database")->source().begin,
                             "database is empty, expected the database the check logs in to (default \"postgres\")");
            std::string_view mode;
            if (in.choice("sslmode", kSslModes, mode))
                health.sslmode = mode;
        }
        if (in.duration("max_lag", DurationRule::AllowZero, health.max_lag)
            && health.role == HealthCheckConfig::Role::Primary && health.max_lag.count() > 0)
            diag_.report(in.node("max_lag")->source().begin,
                         R"(max_lag is set with role = "primary", expected it only with role = "replica" or "any" )"
                         "(it limits a replica's replication lag)");
        if (in.string("password_file", health.password_file))
            read_password_file(*in.node("password_file"), health);
    }

    // The password is read with the config, so --check reports a missing or
    // unreadable file and a reload picks up a changed one.
    void read_password_file(const toml::node& node, HealthCheckConfig& health) const
    {
        if (auto password = read_secret_file(node, "password_file", "password", health.password_file))
            health.password = std::move(*password);
    }

    // One secret (a password, a token) from the regular file at `path`,
    // named by the config key `key`; `noun` says what it holds in messages.
    // One trailing line break is not part of it (echo secret > file).
    std::optional<std::string> read_secret_file(const toml::node& node, std::string_view key, std::string_view noun,
                                                const std::string& path) const
    {
        if (path.empty()) {
            diag_.report(node.source().begin, fmt::format("{} is empty, expected the path of a file holding the {} "
                                                          "(or no {} for none)",
                                                          key, noun, key));
            return std::nullopt;
        }
        // O_NONBLOCK: a FIFO must not hang the config read (and with it a
        // reload on the control thread); only a regular file is accepted.
        UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
        if (!fd) {
            diag_.report(node.source().begin, fmt::format(R"({} "{}" cannot be opened: {})", key, path,
                                                          std::generic_category().message(errno)));
            return std::nullopt;
        }
        struct stat info {};
        if (::fstat(fd.get(), &info) == 0 && !S_ISREG(info.st_mode) && !S_ISDIR(info.st_mode)) {
            diag_.report(node.source().begin,
                         fmt::format(R"({} "{}" is not a regular file, expected a file holding the {})", key, path,
                                     noun));
            return std::nullopt;
        }
        std::string text;
        char buffer[4096];
        for (;;) {
            ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                diag_.report(node.source().begin, fmt::format(R"({} "{}" cannot be read: {})", key, path,
                                                              std::generic_category().message(errno)));
                return std::nullopt;
            }
            if (n == 0)
                break;
            text.append(buffer, static_cast<std::size_t>(n));
            if (text.size() > 64 * 1024) {
                diag_.report(node.source().begin,
                             fmt::format(R"({} "{}" is larger than 64 KiB, expected a file holding one {})", key,
                                         path, noun));
                return std::nullopt;
            }
        }
        if (text.ends_with('\n'))
            text.pop_back();
        if (text.ends_with('\r'))
            text.pop_back();
        if (text.empty()) {
            diag_.report(node.source().begin,
                         fmt::format(R"({} "{}" is empty, expected a file holding the {})", key, path, noun));
            return std::nullopt;
        }
        if (text.find('\0') != std::string::npos) {
            // postgres sends a password NUL-terminated, an HTTP header cannot
            // carry one: a NUL in the file is a mistake.
            diag_.report(node.source().begin,
                         fmt::format(R"({} "{}" holds a NUL byte, expected a file holding one {})", key, path, noun));
            return std::nullopt;
        }
        if (text.find_first_of("\r\n") != std::string::npos) {
            diag_.report(node.source().begin,
                         fmt::format(R"({} "{}" holds more than one line, expected one {})", key, path, noun));
            return std::nullopt;
        }
        return text;
    }

    // A UDP service answers only what it is asked, so a UDP probe needs a
    // datagram to send; an empty one would never be answered.
    void require_udp_payload(const TableReader& in, const HealthCheckConfig& health) const
    {
        const toml::node* send = in.node("send");
        if (!send)
            in.require("send", R"(send = "ping" (the datagram a udp health check sends))");
        else if (send->is_string() && health.send.empty())
            diag_.report(send->source().begin, "send is empty, expected the datagram a udp health check sends");
    }

    // `send_proxy`: the pool's, for backends that do not set their own.
    std::vector<BackendConfig> read_backends(const std::string& pool, const toml::node& node,
                                             ProxyVersion send_proxy) const
    {
        std::vector<BackendConfig> backends;
        const toml::array* array = node.as_array();
        if (!array) {
            diag_.report_type(node, "backends", R"(an array of backends such as [{ address = "10.0.0.1:5432" }])");
            return backends;
        }
        if (array->empty()) {
            diag_.report(node.source().begin,
                         R"(backends is empty, expected at least one backend such as { address = "10.0.0.1:5432" })");
            return backends;
        }
        std::string written = fmt::format("[[pools.{}.backends]]", pool);
        std::vector<Origin> origins;
        BackendIndex index;
        for (const toml::table* table : tables_in(*array, "a backend", kBackendExpected)) {
            TableReader in(diag_, *table, written);
            auto [backend, origin] = read_backend(in, send_proxy);
            if (!origin.valid)
                continue;
            check_unique_backend(pool, backend, origin, backends.size(), origins, index);
            backends.push_back(std::move(backend));
            origins.push_back(origin);
        }
        return backends;
    }

    std::pair<BackendConfig, Origin> read_backend(const TableReader& in, ProxyVersion send_proxy) const
    {
        BackendConfig backend;
        backend.send_proxy = send_proxy;
        Origin origin;
        in.reject_unknown_keys(kBackendKeys);
        if (in.require("address", R"(address = "10.0.0.1:5432")"))
            origin.valid = in.backend_address("address", backend);
        in.integer("weight", IntRange{1, 256}, backend.weight);
        in.boolean("backup", backend.backup);
        in.choice("send_proxy", kSendProxy, backend.send_proxy);
        in.integer("max_connections", IntRange{0, 1'000'000}, backend.max_connections);
        origin.named = in.name("name", backend.name);
        if (origin.valid) {
            locate(in, "address", backend.address, origin, backend.name);
            if (!in.has("name"))
                backend.name = backend.identity();
        }
        return {std::move(backend), origin};
    }

    // The first backend of a pool with each address and each name, so the
    // duplicate checks cost O(1) per backend (pools of thousands exist).
    struct BackendIndex {
        std::unordered_map<std::string, std::size_t> by_address;
        std::unordered_map<std::string, std::size_t> by_name;
    };

    // Admin commands address a backend as POOL/NAME or POOL/ADDRESS, so both
    // must be unique within the pool. Two defaulted names collide only when
    // the addresses do, which is reported once, as the address. `position` is
    // the backend's index in the pool; `index` and `origins` cover those
    // before it.
    void check_unique_backend(const std::string& pool, const BackendConfig& backend, const Origin& origin,
                              std::size_t position, const std::vector<Origin>& origins, BackendIndex& index) const
    {
        auto [same_address, new_address] = index.by_address.try_emplace(backend.identity(), position);
        if (!new_address) {
            diag_.report(origin.address_at,
                         fmt::format(R"(backend address {} is already used in pool "{}" on line {}, expected )"
                                     "each backend address once per pool",
                                     backend.identity(), pool, origins[same_address->second].address_at.line));
            return;
        }
        auto [same_name, new_name] = index.by_name.try_emplace(backend.name, position);
        if (!new_name && (origin.named || origins[same_name->second].named)) {
            diag_.report(origin.name_at,
                         fmt::format(R"(backend name "{}" is already used in pool "{}" on line {}, expected a )"
                                     "unique name (admin commands address a backend as POOL/NAME)",
                                     backend.name, pool, origins[same_name->second].name_at.line));
        }
    }

    // --- listeners ---

    std::vector<ListenerConfig> read_listeners(const toml::node* node, const toml::node* pools) const
    {
        std::vector<ListenerConfig> listeners;
        if (!node) {
            diag_.report({1, 1}, "no listeners are defined, expected at least one [[listeners]] table");
            return listeners;
        }
        const toml::array* array = node->as_array();
        if (!array) {
            diag_.report_type(*node, "listeners", "an array of tables, written as [[listeners]]");
            return listeners;
        }
        if (array->empty())
            diag_.report(node->source().begin, "listeners is empty, expected at least one [[listeners]] table");
        std::vector<std::string> pool_names = names_of(pools);
        std::vector<Origin> origins;
        for (const toml::table* table : tables_in(*array, "a listener", "a table [[listeners]]")) {
            TableReader in(diag_, *table, "[[listeners]]");
            auto [listener, origin] = read_listener(in, pool_names);
            if (!origin.valid)
                continue;
            check_unique_listener(listener, origin, listeners, origins);
            listeners.push_back(std::move(listener));
            origins.push_back(origin);
        }
        return listeners;
    }

    // Every key of [pools], valid or not, so a listener is not also blamed
    // for a pool that has errors of its own.
    static std::vector<std::string> names_of(const toml::node* pools)
    {
        std::vector<std::string> names;
        if (const toml::table* table = pools ? pools->as_table() : nullptr)
            for (const auto& [key, value] : *table)
                names.emplace_back(key.str());
        return names;
    }

    std::pair<ListenerConfig, Origin> read_listener(const TableReader& in, const std::vector<std::string>& pools) const
    {
        ListenerConfig listener;
        Origin origin;
        in.reject_unknown_keys(kListenerKeys);
        if (in.require("listen", R"(listen = "0.0.0.0:5432")"))
            origin.valid = in.address("listen", PortRule::AnyPort, listener.listen);
        bool protocol_valid = in.choice("protocol", kProtocols, listener.protocol) || !in.has("protocol");
        if (listener.protocol == Protocol::Udp)
            listener.idle_timeout = std::chrono::seconds(30);
        if (in.require("pool", R"(pool = "postgres")"))
            read_pool_reference(in, pools, listener.pool);
        in.duration("idle_timeout", DurationRule::AllowZero, listener.idle_timeout);
        if (protocol_valid && listener.protocol == Protocol::Tcp && in.has("responses"))
            diag_.report(in.node("responses")->source().begin,
                         R"(responses is set on a tcp listener, expected it only with protocol = "udp")");
        else
            in.integer("responses", kNonNegative, listener.responses);
        in.string("access_log", listener.access_log);
        if (protocol_valid)
            read_accept_proxy(in, listener);
        in.choice("access_log_format", kAccessLogFormats, listener.access_log_format);
        read_client_admission(in, in.table(), listener, protocol_valid);
        origin.named = in.name("name", listener.name);
        origin.valid = origin.valid && protocol_valid;
        if (origin.valid)
            locate(in, "listen", listener.listen, origin, listener.name);
        return {std::move(listener), origin};
    }

    // accept_proxy, accept_proxy_from, proxy_timeout. The trusted list is
    // required with accept_proxy: without it anyone could claim any address.
    void read_accept_proxy(const TableReader& in, ListenerConfig& listener) const
    {
        const bool any = in.has("accept_proxy") || in.has("accept_proxy_from") || in.has("proxy_timeout");
        if (any && listener.protocol == Protocol::Udp) {
            for (std::string_view key : {"accept_proxy", "accept_proxy_from", "proxy_timeout"})
                if (in.has(key))
                    diag_.report(in.node(key)->source().begin,
                                 fmt::format(R"({} is set on a udp listener, expected it only with protocol = "tcp" )"
                                             "(the PROXY protocol header starts a TCP stream)",
                                             key));
            return;
        }
        in.boolean("accept_proxy", listener.accept_proxy);
        in.duration("proxy_timeout", DurationRule::Positive, listener.proxy_timeout);
        if (in.has("accept_proxy_from")) {
            read_cidr_list(*in.node("accept_proxy_from"), "accept_proxy_from", listener.accept_proxy_from);
            if (!listener.accept_proxy && in.node("accept_proxy") == nullptr)
                diag_.report(in.node("accept_proxy_from")->source().begin,
                             "accept_proxy_from is set but accept_proxy is not, expected accept_proxy = true with it");
        } else if (listener.accept_proxy) {
            diag_.report(in.node("accept_proxy")->source().begin,
                         R"(accept_proxy is true but accept_proxy_from is missing, expected e.g. )"
                         R"(accept_proxy_from = ["10.0.0.0/8"] (the proxies trusted to announce client addresses))");
        }
    }

    // An array of "ADDRESS[/LEN]" strings into `out`; each bad entry is
    // reported at its own position.
    void read_cidr_list(const toml::node& node, std::string_view key, CidrSet& out) const
    {
        constexpr std::string_view expected = R"(an array of CIDR strings such as ["10.0.0.0/8", "2001:db8::/32"])";
        const toml::array* array = node.as_array();
        if (!array) {
            diag_.report_type(node, key, expected);
            return;
        }
        if (array->empty()) {
            diag_.report(node.source().begin, fmt::format("{} is empty, expected {}", key, expected));
            return;
        }
        for (const toml::node& entry : *array) {
            if (!entry.is_string()) {
                diag_.report_type(entry, fmt::format("an entry of {}", key), "a CIDR string such as \"10.0.0.0/8\"");
                continue;
            }
            if (std::optional<std::string> problem = out.add(entry.as_string()->get()))
                diag_.report(entry.source().begin, fmt::format("{} entry {}", key, *problem));
        }
    }

    void read_pool_reference(const TableReader& in, const std::vector<std::string>& pools, std::string& out) const
    {
        const auto* value = in.string_node("pool", "the name of a [pools.NAME] table");
        if (!value)
            return;
        const std::string& name = value->get();
        if (std::find(pools.begin(), pools.end(), name) != pools.end()) {
            out = name;
            return;
        }
        std::string expected = pools.empty()
            ? fmt::format("a [pools.{}] table, but no pools are defined", name)
            : fmt::format("one of: {}", fmt::join(pools, ", "));
        diag_.report(value->source().begin, fmt::format(R"(unknown pool "{}", expected {})", name, expected));
    }

    // Two listeners on one protocol and address would both bind (SO_REUSEPORT)
    // and silently split the traffic, so that is an error. Port 0 asks the
    // kernel for a fresh port each time and never collides. Only exact
    // duplicates are caught: a wildcard and a specific address on one port
    // coexist by design (the more specific bind wins its traffic).
    void check_unique_listener(const ListenerConfig& listener, const Origin& origin,
                               const std::vector<ListenerConfig>& earlier, const std::vector<Origin>& origins) const
    {
        for (std::size_t i = 0; i < earlier.size(); ++i) {
            const ListenerConfig& other = earlier[i];
            if (listener.listen.port() != 0 && other.protocol == listener.protocol && other.listen == listener.listen) {
                diag_.report(origin.address_at,
                             fmt::format(R"(listen address {} ({}) is already used by listener "{}" on line {}, )"
                                         "expected each listener to have its own address",
                                         listener.listen.to_string(), to_string(listener.protocol), other.name,
                                         origins[i].address_at.line));
                return;
            }
        }
        // Defaulted names repeat legitimately (tcp and udp on one address, or
        // port 0), so only a configured name must be unique.
        for (std::size_t i = 0; i < earlier.size(); ++i) {
            if (earlier[i].name == listener.name && (origin.named || origins[i].named)) {
                diag_.report(origin.name_at,
                             fmt::format(R"(listener name "{}" is already used on line {}, expected a unique name)",
                                         listener.name, origins[i].name_at.line));
                return;
            }
        }
    }

    Diagnostics& diag_;
};

ConfigResult finish(Diagnostics& diag, std::optional<Config> config)
{
    ConfigResult result;
    if (diag.empty())
        result.config = std::move(config);
    result.errors = diag.take_sorted();
    return result;
}

} // namespace

std::optional<Duration> parse_duration(std::string_view text)
{
    if (text == "0")
        return Duration{0};
    if (text.empty())
        return std::nullopt;
    Duration::rep total = 0;
    while (!text.empty())
        if (!consume_duration_term(text, total))
            return std::nullopt;
    return Duration{total};
}

std::string_view to_string(NameStatus status) noexcept
{
    switch (status) {
    case NameStatus::Resolved: return "resolved";
    case NameStatus::Pending: return "pending";
    case NameStatus::NxDomain: return "NXDOMAIN";
    case NameStatus::NoAddress: return "no address";
    case NameStatus::Timeout: return "resolver timeout";
    case NameStatus::Failed: return "resolver error";
    }
    return "?";
}

std::string BackendConfig::identity() const
{
    return host.empty() ? address.to_string() : host + ":" + std::to_string(port);
}

std::string_view to_string(Protocol protocol) noexcept
{
    return name_of(kProtocols, protocol);
}

std::string_view to_string(BalanceAlgorithm algorithm) noexcept
{
    return name_of(kBalanceAlgorithms, algorithm);
}

std::string_view to_string(HealthCheckConfig::Kind kind) noexcept
{
    return name_of(kHealthKinds, kind);
}

std::string_view to_string(HealthCheckConfig::Role role) noexcept
{
    return name_of(kRoles, role);
}

const PoolConfig* Config::find_pool(std::string_view name) const noexcept
{
    for (const PoolConfig& pool : pools)
        if (pool.name == name)
            return &pool;
    return nullptr;
}

std::string ConfigError::to_string() const
{
    if (line <= 0)
        return fmt::format("{}: {}", file, message);
    if (column <= 0)
        return fmt::format("{}:{}: {}", file, line, message);
    return fmt::format("{}:{}:{}: {}", file, line, column, message);
}

ConfigResult parse_config(std::string_view text, std::string_view source_name)
{
    Diagnostics diag(source_name);
    try {
        toml::table root = toml::parse(text, std::string_view(source_name));
        Config config = ConfigReader(diag).read(root);
        return finish(diag, std::move(config));
    } catch (const toml::parse_error& error) {
        diag.report(error.source().begin, syntax_message(error.description()));
    } catch (const std::exception& error) {
        // Allocation failure: report it rather than take down a running
        // sluice that is only reloading.
        diag.report({}, fmt::format("cannot parse the configuration: {}", error.what()));
    }
    return finish(diag, std::nullopt);
}

ConfigResult load_config_file(const std::string& path)
{
    auto fail = [&](int err) {
        ConfigResult result;
        result.errors.push_back(ConfigError{
            path, 0, 0, fmt::format("cannot read the config file: {}", std::generic_category().message(err))});
        return result;
    };
    try {
        UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
        if (!fd)
            return fail(errno);
        std::string text;
        char buffer[16384];
        for (;;) {
            ssize_t n = ::read(fd.get(), buffer, sizeof(buffer));
            if (n == 0)
                break;
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                return fail(errno);
            }
            text.append(buffer, static_cast<std::size_t>(n));
        }
        ConfigResult result = parse_config(text, path);
        if (result.config)
            result.config->path = path;
        return result;
    } catch (const std::exception&) {
        return fail(ENOMEM);
    }
}

} // namespace sluice
