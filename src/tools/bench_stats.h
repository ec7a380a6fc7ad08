// What one sluice-bench thread counts, and the error kinds it counts by.
#pragma once

#include "histogram.h"
#include "sluice/errors.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace sluice::tools {

// Every failure sluice-bench sees falls in exactly one kind. After any of them
// the client drops its connection (TCP) and starts afresh.
enum class ErrorKind : std::uint8_t {
    ConnectRefused,  // ECONNREFUSED on connect; udp: an ICMP port unreachable
    ConnectFailed,   // any other connect failure (unreachable, out of ports, EMFILE)
    ConnectTimeout,  // connect not done within --timeout
    Reset,           // ECONNRESET / EPIPE on an established connection
    Closed,          // EOF with no reply under way
    ShortRead,       // EOF in the middle of a reply
    Corrupt,         // reply bytes differ from what was sent (or came unasked)
    Timeout,         // no complete reply within --timeout; udp: a lost datagram
    Other,           // any other socket error
};
inline constexpr std::size_t kErrorKindCount = static_cast<std::size_t>(ErrorKind::Other) + 1;

// The JSON key: "connect_refused", "reset", ...
std::string_view error_kind_name(ErrorKind kind) noexcept;
ErrorKind connect_error_kind(SysError error) noexcept;
ErrorKind io_error_kind(SysError error) noexcept;

struct BenchStats {
    std::uint64_t requests = 0;     // verified request/reply pairs (connect: whole connection cycles)
    std::uint64_t connections = 0;  // TCP connections established
    std::uint64_t bytes_sent = 0;
    std::uint64_t bytes_received = 0;
    std::array<std::uint64_t, kErrorKindCount> errors{};
    LatencyHistogram latency;       // per request, from its intended start to its verified reply

    void count_error(ErrorKind kind) noexcept { ++errors[static_cast<std::size_t>(kind)]; }
    std::uint64_t error_count(ErrorKind kind) const noexcept { return errors[static_cast<std::size_t>(kind)]; }
    std::uint64_t total_errors() const noexcept;
    void merge(const BenchStats& other) noexcept;
};

} // namespace sluice::tools
