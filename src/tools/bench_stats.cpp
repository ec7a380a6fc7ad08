#include "bench_stats.h"

namespace sluice::tools {

std::string_view error_kind_name(ErrorKind kind) noexcept
{
    switch (kind) {
    case ErrorKind::ConnectRefused: return "connect_refused";
    case ErrorKind::ConnectFailed: return "connect_failed";
    case ErrorKind::ConnectTimeout: return "connect_timeout";
    case ErrorKind::Reset: return "reset";
    case ErrorKind::Closed: return "closed";
    case ErrorKind::ShortRead: return "short_read";
    case ErrorKind::Corrupt: return "corrupt";
    case ErrorKind::Timeout: return "timeout";
    case ErrorKind::Other: return "other";
    }
    return "other";
}

ErrorKind connect_error_kind(SysError error) noexcept
{
    switch (error) {
    case SysError::ConnectionRefused: return ErrorKind::ConnectRefused;
    case SysError::TimedOut: return ErrorKind::ConnectTimeout;
    default: return ErrorKind::ConnectFailed;
    }
}

ErrorKind io_error_kind(SysError error) noexcept
{
    switch (error) {
    case SysError::ConnectionReset:
    case SysError::BrokenPipe: return ErrorKind::Reset;
    case SysError::ConnectionRefused: return ErrorKind::ConnectRefused;
    case SysError::TimedOut: return ErrorKind::Timeout;
    default: return ErrorKind::Other;
    }
}

std::uint64_t BenchStats::total_errors() const noexcept
{
    std::uint64_t total = 0;
    for (auto n : errors)
        total += n;
    return total;
}

void BenchStats::merge(const BenchStats& other) noexcept
{
    requests += other.requests;
    connections += other.connections;
    bytes_sent += other.bytes_sent;
    bytes_received += other.bytes_received;
    for (std::size_t i = 0; i < kErrorKindCount; ++i)
        errors[i] += other.errors[i];
    latency.merge(other.latency);
}

} // namespace sluice::tools
