// sluice-bench's options and their parsing.
#pragma once

#include "sluice/addr.h"

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>

namespace sluice::tools {

enum class BenchMode {
    Connect,  // per worker: connect, send `size`, read it back, close; repeat
    Rr,       // persistent connections, one `size` request/response at a time
    Stream,   // bulk writes of `size` chunks, counting what the echo returns
    Udp,      // one `size` datagram at a time, waiting for the echo
};

std::string_view mode_name(BenchMode mode) noexcept;

struct BenchOptions {
    SocketAddress target;
    std::string target_text;  // as given, for the report
    BenchMode mode = BenchMode::Rr;
    unsigned concurrency = 10;  // clients (connections / UDP sockets) in total
    unsigned threads = 1;       // never more than concurrency
    std::chrono::nanoseconds duration = std::chrono::seconds(10);
    std::chrono::nanoseconds warmup{0};
    double rate = 0;            // total requests/s; 0 = closed loop (as fast as replies come)
    std::size_t size = 64;      // request, datagram or stream write size in bytes
    std::chrono::nanoseconds timeout{0};  // connect / reply timeout
    bool json = false;
};

struct BenchParseResult {
    BenchOptions options;
    std::string error;  // non-empty: bad arguments, names the flag
    bool help = false;
};

// Fills in the mode-dependent defaults: size 64 (stream: 64 KiB); timeout
// 1 s for udp (a lost datagram), 5 s for TCP modes (connect and reply).
BenchParseResult parse_bench_options(int argc, char** argv);
extern const char* const kBenchUsage;

// The largest stream chunk or request: bigger would only measure memcpy.
inline constexpr std::size_t kMaxTcpSize = 16 * 1024 * 1024;
inline constexpr std::size_t kMaxUdpSize = 65507;

} // namespace sluice::tools
