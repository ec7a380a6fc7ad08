// One line per event to stderr (journald under systemd).
//
// Thread-safe: each line is formatted first and written with a single write(2),
// so lines from different threads never interleave. Never call this per byte or
// per read: events only (start, state changes, reloads, errors).
#pragma once

#include <fmt/format.h>

#include <string_view>

namespace sluice::log {

enum class Level { Debug, Info, Warning, Error };

// Lines below this level are dropped. Default Info.
void set_level(Level level) noexcept;
bool enabled(Level level) noexcept;

void write(Level level, std::string_view message) noexcept;

template <typename... Args>
void debug(fmt::format_string<Args...> f, Args&&... args)
{
    if (enabled(Level::Debug))
        write(Level::Debug, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void info(fmt::format_string<Args...> f, Args&&... args)
{
    if (enabled(Level::Info))
        write(Level::Info, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void warning(fmt::format_string<Args...> f, Args&&... args)
{
    if (enabled(Level::Warning))
        write(Level::Warning, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void error(fmt::format_string<Args...> f, Args&&... args)
{
    if (enabled(Level::Error))
        write(Level::Error, fmt::format(f, std::forward<Args>(args)...));
}

} // namespace sluice::log
