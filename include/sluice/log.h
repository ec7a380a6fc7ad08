// One line per event to stderr (journald under systemd).
//
// Logging never blocks traffic. The calling thread formats the line and
// queues it; one writer thread ("sluice-log") does every write(2) to stderr
// and to the access-log files (see access_log.h). When the sink is slower
// than the lines come (a stuck journald, a full pipe, a slow disk), only the
// writer waits on it: the queue fills to its bound (kQueueBytes) and further
// lines are dropped and counted (lines_dropped(), exported as
// sluice_log_lines_dropped_total). Once the writer has caught up it writes
// "log: N lines dropped (sink too slow)" to stderr.
//
// Format: `[global] log_format` picks text ("2025-01-31T12:00:00.123Z
// warning: message") or JSON ({"time":...,"level":...,"message":...}) lines;
// `log_level` drops lines below it. When stderr is the journal (systemd sets
// JOURNAL_STREAM to its device:inode), each line starts with its syslog
// priority, "<4>" for a warning, which journald strips and stores, so
// `journalctl -p warning` works.
//
// Lines from one thread keep their order; lines never interleave. At exit
// the queue is flushed for up to kExitFlush, so a stuck sink cannot hold the
// process. Never call this per byte or per read: events only (start, state
// changes, reloads, errors).
#pragma once

#include <fmt/format.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace sluice::log {

enum class Level { Debug, Info, Notice, Warning, Error };
enum class Format { Text, Json };

// How stderr lines are written: set once at start and at each reload, from
// the config (configure) and the environment (journal), read by every thread.
struct Style {
    Format format = Format::Text;
    bool priority_prefix = false;  // "<N>" first: stderr is the journal
};

// Lines below this level are dropped. Default Info.
void set_level(Level level) noexcept;
bool enabled(Level level) noexcept;
// `--debug`: from now on configure() keeps the level at Debug.
void pin_debug() noexcept;
// Applies [global] log_level and log_format (control thread, at start and at
// each reload). The journal prefix is decided once, by the environment.
void configure(Level level, Format format) noexcept;
void set_priority_prefix(bool on) noexcept;
Style style() noexcept;

// syslog(3) priority of `level`: debug 7, info 6, notice 5, warning 4, error 3.
int syslog_priority(Level level) noexcept;
std::string_view to_string(Level level) noexcept;

// True when `journal_stream` (the value of JOURNAL_STREAM, "DEVICE:INODE", or
// null) names the file open on `fd`: systemd connected it to the journal.
bool is_journal_stream(const char* journal_stream, int fd) noexcept;

// Any thread: queues one stderr line, stamped now. Never waits on I/O.
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
void notice(fmt::format_string<Args...> f, Args&&... args)
{
    if (enabled(Level::Notice))
        write(Level::Notice, fmt::format(f, std::forward<Args>(args)...));
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

// "2025-01-31T12:00:00.123Z info: message\n": a stderr line, stamped now.
std::string format_line(Level level, std::string_view message);
// The same line in `style`: text or JSON, with or without "<N>".
std::string format_line(Level level, std::string_view message, Style style);
// "2025-01-31T12:00:00.123Z": now, UTC, to the millisecond.
std::string utc_timestamp();

// Bytes of lines queued and not yet written, text plus kLineOverhead each,
// before further lines are dropped: with ~150-byte access log lines, about
// 20,000 lines, or two seconds of a sink that stops at 10,000 sessions/s.
inline constexpr std::size_t kQueueBytes = 4 << 20;
// What one queued line costs besides its text (the queue entry).
inline constexpr std::size_t kLineOverhead = 64;
// How long exit waits for the queue to reach its sinks.
inline constexpr std::chrono::milliseconds kExitFlush{2000};

// The process-wide queue behind write() and AccessLogFile, started at the
// first line. Any thread, never waits on I/O: queues `line` (which ends with
// '\n') for `fd`; `owner` keeps fd open until the line is written (null when
// fd outlives the process's lines, as stderr does). False when the line was
// dropped because the queue is full.
bool enqueue(int fd, std::shared_ptr<const void> owner, std::string line) noexcept;
// Lines dropped so far because the queue was full.
std::uint64_t lines_dropped() noexcept;
// Waits until every line queued before the call has been written, up to
// `timeout`; false on timeout (a sink that does not take them).
bool flush(std::chrono::milliseconds timeout) noexcept;

// A bounded queue of lines drained by its own writer thread. write() and the
// access log use one per process (enqueue() above); tests make their own.
class LineQueue {
public:
    // Starts the writer thread, named `thread_name` (at most 15 characters),
    // with every signal blocked: signals stay with the threads that handle
    // them. The writer reports dropped lines on `report_fd`.
    explicit LineQueue(std::size_t max_bytes = kQueueBytes, int report_fd = 2, const char* thread_name = "sluice-log");
    // Flushes for up to kExitFlush, then stops the writer. A writer still
    // blocked in write(2) is left to finish on its own: it shares the queue's
    // state, so nothing it touches is freed under it.
    ~LineQueue();
    LineQueue(const LineQueue&) = delete;
    LineQueue& operator=(const LineQueue&) = delete;

    // Any thread; the mutex is held for the push only, never across I/O.
    bool push(int fd, std::shared_ptr<const void> owner, std::string line) noexcept;
    bool flush(std::chrono::milliseconds timeout) noexcept;
    std::uint64_t dropped() const noexcept;
    // Bytes held now: lines queued plus the batch being written.
    std::size_t queued_bytes() const noexcept;

    struct State;

private:
    // Shared with the writer thread, which may outlive the queue (above).
    std::shared_ptr<State> state_;
};

} // namespace sluice::log
