#include "sluice/log.h"

#include <atomic>
#include <cerrno>
#include <ctime>
#include <string>
#include <unistd.h>

namespace sluice::log {

namespace {
std::atomic<Level> g_level{Level::Info};

const char* level_name(Level level)
{
    switch (level) {
    case Level::Debug: return "debug";
    case Level::Info: return "info";
    case Level::Warning: return "warning";
    case Level::Error: return "error";
    }
    return "info";
}
} // namespace

void set_level(Level level) noexcept { g_level.store(level, std::memory_order_relaxed); }

bool enabled(Level level) noexcept
{
    return static_cast<int>(level) >= static_cast<int>(g_level.load(std::memory_order_relaxed));
}

void write(Level level, std::string_view message) noexcept
{
    try {
        timespec ts{};
        ::clock_gettime(CLOCK_REALTIME, &ts);
        tm utc{};
        ::gmtime_r(&ts.tv_sec, &utc);
        std::string line = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z {}: {}\n",
                                       utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday, utc.tm_hour,
                                       utc.tm_min, utc.tm_sec, ts.tv_nsec / 1000000, level_name(level),
                                       message);
        int saved = errno;
        std::size_t off = 0;
        while (off < line.size()) {
            ssize_t n = ::write(STDERR_FILENO, line.data() + off, line.size() - off);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            off += static_cast<std::size_t>(n);
        }
        errno = saved;
    } catch (...) {
        // Logging must never take the process down (allocation failure).
    }
}

} // namespace sluice::log
