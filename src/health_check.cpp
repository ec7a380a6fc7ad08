// What every health-check kind shares: the dispatch by kind, the role
// verdict and the excerpt of a server's words fit for a log line.
#include "sluice/health_check.h"

#include <fmt/format.h>

namespace sluice {

std::string_view to_string(BackendRole role) noexcept
{
    switch (role) {
    case BackendRole::Unknown: return "unknown";
    case BackendRole::Primary: return "primary";
    case BackendRole::Replica: return "replica";
    }
    return "unknown";
}

HealthCheckResult HealthCheckResult::from_error(SysError error)
{
    HealthCheckResult result = fail(reason_from(error), std::string(describe(error)));
    result.local_shortage = is_local_resource_error(error);
    return result;
}

std::unique_ptr<HealthCheck> start_health_check(EventLoop& loop, const HealthCheckConfig& config,
                                                const SocketAddress& target, HealthCheckDone done)
{
    using Kind = HealthCheckConfig::Kind;
    switch (config.kind) {
    case Kind::TcpConnect: return start_tcp_check(loop, config, target, std::move(done));
    case Kind::Udp: return start_udp_check(loop, config, target, std::move(done));
    case Kind::Http: return start_http_check(loop, config, target, std::move(done));
    case Kind::Redis: return start_redis_check(loop, config, target, std::move(done));
    case Kind::Postgres: return start_postgres_check(loop, config, target, std::move(done));
    case Kind::Mysql: return start_mysql_check(loop, config, target, std::move(done));
    }
    done(HealthCheckResult::fail(HealthReason::Other, "unknown check kind"));
    return nullptr;
}

HealthCheckResult judge_role(HealthCheckConfig::Role wanted, BackendRole claimed, std::string_view evidence)
{
    std::string detail = fmt::format("{} ({})", to_string(claimed), evidence);
    const bool matches = wanted == HealthCheckConfig::Role::Any
        || (wanted == HealthCheckConfig::Role::Primary && claimed == BackendRole::Primary)
        || (wanted == HealthCheckConfig::Role::Replica && claimed == BackendRole::Replica);
    if (matches)
        return HealthCheckResult::pass(std::move(detail), claimed);
    return HealthCheckResult::fail(HealthReason::WrongRole, std::move(detail), claimed);
}

std::string printable_excerpt(std::string_view text, std::size_t max)
{
    std::string out;
    out.reserve(std::min(text.size(), max) + 8);
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (out.size() >= max) {
            out += "...";
            break;
        }
        auto byte = static_cast<unsigned char>(text[i]);
        if (byte == '\\' || byte == '"')
            out += fmt::format("\\{}", static_cast<char>(byte));
        else if (byte == '\r')
            out += "\\r";
        else if (byte == '\n')
            out += "\\n";
        else if (byte < 0x20 || byte >= 0x7f)
            out += fmt::format("\\x{:02x}", byte);  // no UTF-8 passes: a log line stays ASCII
        else
            out += static_cast<char>(byte);
    }
    return out;
}

} // namespace sluice
