// LogThrottle: at most one log line per interval for an event that can happen
// thousands of times a second (clients turned away at a limit, descriptors
// exhausted), with the count of events the line stands for.
//
// Any thread; lock-free. The line goes to whichever thread notes an event
// first once the interval has passed, so no timer is needed, and a burst that
// stops is reported with the first event after it (HAProxy's and NGINX's
// "limiting connections" lines are per event; these are per interval).
#pragma once

#include <atomic>
#include <cstdint>

namespace sluice {

class LogThrottle {
public:
    static constexpr std::int64_t kDefaultIntervalMs = 10'000;

    explicit LogThrottle(std::int64_t interval_ms = kDefaultIntervalMs) noexcept : interval_ms_(interval_ms) {}

    // Counts one event at `now_ms` (monotonic). Returns 0, or when a line is
    // due, the number of events it reports (this one and those suppressed
    // since the last line); the caller then logs once.
    std::uint64_t note(std::int64_t now_ms) noexcept
    {
        pending_.fetch_add(1, std::memory_order_relaxed);
        std::int64_t due = next_ms_.load(std::memory_order_relaxed);
        if (now_ms < due)
            return 0;
        if (!next_ms_.compare_exchange_strong(due, now_ms + interval_ms_, std::memory_order_relaxed))
            return 0;  // another thread took this line
        return pending_.exchange(0, std::memory_order_relaxed);
    }

    std::int64_t interval_ms() const noexcept { return interval_ms_; }

private:
    const std::int64_t interval_ms_;
    std::atomic<std::int64_t> next_ms_{0};
    std::atomic<std::uint64_t> pending_{0};
};

} // namespace sluice
