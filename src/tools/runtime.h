// Process-level plumbing shared by the tools: descriptor limit, stop signals,
// the clock.
#pragma once

#include "sluice/fd.h"

#include <chrono>
#include <cstdint>
#include <ctime>

namespace sluice::tools {

using sluice::raise_fd_limit;  // fd.h


// Blocks SIGINT and SIGTERM in the calling thread, and so in every thread it
// starts afterwards, and ignores SIGPIPE. Call first thing in main(): the
// signals are then taken only by wait_for_stop_signal() on the main thread,
// never delivered to an event-loop thread in the middle of a callback.
void block_stop_signals() noexcept;

// Waits up to `timeout` for SIGINT or SIGTERM. Returns the signal number, or 0
// when the time ran out.
int wait_for_stop_signal(std::chrono::nanoseconds timeout) noexcept;

// CLOCK_MONOTONIC in nanoseconds: a vDSO read, cheap enough per request.
inline std::uint64_t monotonic_ns() noexcept
{
    timespec ts;
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ULL + static_cast<std::uint64_t>(ts.tv_nsec);
}

} // namespace sluice::tools
