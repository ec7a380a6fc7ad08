#include "sluice/log.h"

#include "sluice/json.h"

#include <atomic>
#include <cerrno>
#include <climits>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iterator>
#include <mutex>
#include <poll.h>
#include <pthread.h>
#include <sys/stat.h>
#include <string>
#include <sys/uio.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace sluice::log {

namespace {

std::atomic<Level> g_level{Level::Info};
std::atomic<bool> g_debug_pinned{false};
std::atomic<Format> g_format{Format::Text};
std::atomic<bool> g_priority_prefix{false};

// While a sink stays behind, the drop count is also reported this often, not
// only once the writer has caught up.
constexpr std::chrono::seconds kReportInterval{10};

// Writes `count` buffers completely; false when the sink fails (EPIPE,
// ENOSPC...), and the rest is abandoned. A non-blocking sink (a stderr the
// parent made O_NONBLOCK) is waited for with poll: only the writer thread
// ever calls this, so waiting is its job.
bool write_fully(int fd, iovec* iov, int count) noexcept
{
    while (count > 0) {
        ssize_t n = ::writev(fd, iov, count);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                pollfd p{fd, POLLOUT, 0};
                ::poll(&p, 1, -1);
                continue;
            }
            return false;
        }
        auto left = static_cast<std::size_t>(n);
        while (count > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            ++iov;
            --count;
        }
        if (count > 0) {
            iov->iov_base = static_cast<char*>(iov->iov_base) + left;
            iov->iov_len -= left;
        }
    }
    return true;
}

bool write_fully(int fd, std::string_view text) noexcept
{
    iovec iov{const_cast<char*>(text.data()), text.size()};
    return write_fully(fd, &iov, 1);
}

} // namespace

std::string_view to_string(Level level) noexcept
{
    switch (level) {
    case Level::Debug: return "debug";
    case Level::Info: return "info";
    case Level::Notice: return "notice";
    case Level::Warning: return "warning";
    case Level::Error: return "error";
    }
    return "info";
}

int syslog_priority(Level level) noexcept
{
    switch (level) {
    case Level::Debug: return 7;
    case Level::Info: return 6;
    case Level::Notice: return 5;
    case Level::Warning: return 4;
    case Level::Error: return 3;
    }
    return 6;
}

std::string utc_timestamp()
{
    timespec ts{};
    ::clock_gettime(CLOCK_REALTIME, &ts);
    tm utc{};
    ::gmtime_r(&ts.tv_sec, &utc);
    return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday,
                       utc.tm_hour, utc.tm_min, utc.tm_sec, ts.tv_nsec / 1000000);
}

std::string format_line(Level level, std::string_view message) { return format_line(level, message, Style{}); }

std::string format_line(Level level, std::string_view message, Style style)
{
    std::string line;
    if (style.priority_prefix)
        line = fmt::format("<{}>", syslog_priority(level));
    if (style.format == Format::Json)
        fmt::format_to(std::back_inserter(line), R"({{"time":"{}","level":"{}","message":{}}})", utc_timestamp(),
                       to_string(level), json_quote(message));
    else
        fmt::format_to(std::back_inserter(line), "{} {}: {}", utc_timestamp(), to_string(level), message);
    line += '\n';
    return line;
}

bool is_journal_stream(const char* journal_stream, int fd) noexcept
{
    // systemd.exec(5): JOURNAL_STREAM is "DEVICE:INODE" of the stream it
    // connected stdout/stderr to; a stderr redirected since (by a shell in
    // the unit, say) no longer matches and gets plain lines.
    if (!journal_stream)
        return false;
    unsigned long long device = 0, inode = 0;
    char rest = 0;
    if (std::sscanf(journal_stream, "%llu:%llu%c", &device, &inode, &rest) != 2)
        return false;
    struct stat st{};
    if (::fstat(fd, &st) != 0)
        return false;
    return static_cast<unsigned long long>(st.st_dev) == device && static_cast<unsigned long long>(st.st_ino) == inode;
}

// ---- LineQueue ------------------------------------------------------------------

struct LineQueue::State {
    struct Line {
        int fd;
        std::shared_ptr<const void> owner;  // keeps fd open until written
        std::string text;
        std::size_t cost() const noexcept { return text.size() + kLineOverhead; }
    };

    State(std::size_t max_bytes, int report_fd) : max_bytes(max_bytes), report_fd(report_fd) {}

    const std::size_t max_bytes;
    const int report_fd;
    std::atomic<std::uint64_t> dropped{0};

    std::mutex mutex;
    std::condition_variable work;      // the writer waits: lines queued, or stop
    std::condition_variable progress;  // flush and stop wait: lines written, writer gone
    // Guarded by mutex:
    std::vector<Line> queue;
    std::size_t bytes = 0;      // cost of the queue plus the batch being written
    std::uint64_t pushed = 0;   // lines accepted
    std::uint64_t finished = 0; // lines written, or failed at the sink
    bool writer_running = false;
    // Set under the mutex; also read by the writer between writes, so that a
    // stopped queue's writer abandons its batch after the write in progress
    // (the fds in it may be closed and reused once the owner has gone).
    std::atomic<bool> stop{false};

    void run_writer();
    std::size_t write_batch(std::vector<Line>& batch) noexcept;
};

void LineQueue::State::run_writer()
{
    std::vector<Line> batch;
    std::uint64_t reported = 0;
    auto last_report = std::chrono::steady_clock::now();
    std::unique_lock lock(mutex);
    while (true) {
        work.wait(lock, [&] { return stop || !queue.empty(); });
        if (stop)
            break;
        // Producers go on filling the other vector while this batch is
        // written; the two vectors trade places, so their capacity is reused.
        batch.swap(queue);
        lock.unlock();
        std::size_t cost = write_batch(batch);
        std::size_t lines = batch.size();
        batch.clear();  // outside the lock: dropping an owner may close a file
        lock.lock();
        bytes -= cost;

        // Before the batch counts as finished, so that a flush (at exit)
        // also waits for the report.
        std::uint64_t lost = dropped.load(std::memory_order_relaxed) - reported;
        auto now = std::chrono::steady_clock::now();
        if (lost > 0 && !stop && (queue.empty() || now - last_report >= kReportInterval)) {
            lock.unlock();
            try {
                write_fully(report_fd, format_line(Level::Warning,
                                                   fmt::format("log: {} lines dropped (sink too slow)", lost),
                                                   style()));
            } catch (...) {
                lost = 0;  // out of memory: the next report carries the count
            }
            reported += lost;
            last_report = now;
            lock.lock();
        }
        finished += lines;
        progress.notify_all();
    }
    writer_running = false;
    progress.notify_all();
}

// Writes runs of lines for one fd with one writev each, up to PIPE_BUF bytes
// (or one longer line): a pipe takes such a write whole, so lines stay whole
// even if another process writes to the same pipe. Returns the batch's cost.
std::size_t LineQueue::State::write_batch(std::vector<Line>& batch) noexcept
{
    std::size_t cost = 0;
    iovec iov[IOV_MAX];
    std::size_t i = 0;
    while (i < batch.size() && !stop.load(std::memory_order_relaxed)) {
        int fd = batch[i].fd;
        int count = 0;
        std::size_t run_bytes = 0;
        while (i < batch.size() && batch[i].fd == fd && count < IOV_MAX
               && (count == 0 || run_bytes + batch[i].text.size() <= PIPE_BUF)) {
            iov[count++] = {batch[i].text.data(), batch[i].text.size()};
            run_bytes += batch[i].text.size();
            cost += batch[i].cost();
            ++i;
        }
        write_fully(fd, iov, count);  // a failing sink loses its lines, as a full disk does
    }
    for (; i < batch.size(); ++i)
        cost += batch[i].cost();
    return cost;
}

LineQueue::LineQueue(std::size_t max_bytes, int report_fd, const char* thread_name)
    : state_(std::make_shared<State>(max_bytes, report_fd))
{
    // The writer inherits this thread's mask: block everything while it starts.
    sigset_t all, saved;
    sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &saved);
    state_->writer_running = true;
    try {
        std::thread writer([state = state_] { state->run_writer(); });
        ::pthread_setname_np(writer.native_handle(), thread_name);
        writer.detach();  // ~LineQueue waits for it through writer_running
    } catch (...) {
        // No thread: push() writes synchronously, as logging did before.
        state_->writer_running = false;
    }
    ::pthread_sigmask(SIG_SETMASK, &saved, nullptr);
}

LineQueue::~LineQueue()
{
    State& s = *state_;
    bool flushed = flush(kExitFlush);
    std::unique_lock lock(s.mutex);
    s.stop = true;
    s.work.notify_one();
    // A writer blocked in write(2) keeps the state alive and exits when the
    // write returns; waiting for it would hand the stuck sink to our caller.
    if (flushed)
        s.progress.wait_for(lock, kExitFlush, [&] { return !s.writer_running; });
}

bool LineQueue::push(int fd, std::shared_ptr<const void> owner, std::string line) noexcept
{
    State& s = *state_;
    std::size_t cost = line.size() + kLineOverhead;
    bool synchronous = false;
    {
        std::lock_guard lock(s.mutex);
        if (!s.writer_running && !s.stop) {
            // No writer thread could be started: the caller writes, and
            // waits, as logging did before there was a queue.
            synchronous = true;
            ++s.pushed;
            ++s.finished;
        } else if (s.stop || s.bytes + cost > s.max_bytes) {
            s.dropped.fetch_add(1, std::memory_order_relaxed);
            return false;
        } else {
            try {
                s.queue.push_back({fd, std::move(owner), std::move(line)});
            } catch (...) {
                s.dropped.fetch_add(1, std::memory_order_relaxed);
                return false;
            }
            s.bytes += cost;
            ++s.pushed;
        }
    }
    if (synchronous)
        write_fully(fd, line);
    else
        s.work.notify_one();  // no system call unless the writer sleeps
    return true;
}

bool LineQueue::flush(std::chrono::milliseconds timeout) noexcept
{
    State& s = *state_;
    std::unique_lock lock(s.mutex);
    std::uint64_t target = s.pushed;
    return s.progress.wait_for(lock, timeout, [&] { return s.finished >= target || !s.writer_running; });
}

std::uint64_t LineQueue::dropped() const noexcept { return state_->dropped.load(std::memory_order_relaxed); }

std::size_t LineQueue::queued_bytes() const noexcept
{
    std::lock_guard lock(state_->mutex);
    return state_->bytes;
}

// ---- the process-wide queue -----------------------------------------------------

namespace {

LineQueue& process_queue()
{
    // Never destroyed: any thread may log until the process is gone. Exit
    // flushes it instead, for a bounded time.
    static LineQueue* const queue = [] {
        auto* q = new LineQueue();
        std::atexit([] { process_queue().flush(kExitFlush); });
        return q;
    }();
    return *queue;
}

} // namespace

bool enqueue(int fd, std::shared_ptr<const void> owner, std::string line) noexcept
{
    try {
        return process_queue().push(fd, std::move(owner), std::move(line));
    } catch (...) {
        return false;  // the queue could not be made (out of memory)
    }
}

std::uint64_t lines_dropped() noexcept
{
    try {
        return process_queue().dropped();
    } catch (...) {
        return 0;
    }
}

bool flush(std::chrono::milliseconds timeout) noexcept
{
    try {
        return process_queue().flush(timeout);
    } catch (...) {
        return false;
    }
}

void set_level(Level level) noexcept { g_level.store(level, std::memory_order_relaxed); }

void pin_debug() noexcept
{
    g_debug_pinned.store(true, std::memory_order_relaxed);
    set_level(Level::Debug);
}

void configure(Level level, Format format) noexcept
{
    if (!g_debug_pinned.load(std::memory_order_relaxed))
        set_level(level);
    g_format.store(format, std::memory_order_relaxed);
}

void set_priority_prefix(bool on) noexcept { g_priority_prefix.store(on, std::memory_order_relaxed); }

Style style() noexcept
{
    return Style{g_format.load(std::memory_order_relaxed), g_priority_prefix.load(std::memory_order_relaxed)};
}

bool enabled(Level level) noexcept
{
    return static_cast<int>(level) >= static_cast<int>(g_level.load(std::memory_order_relaxed));
}

void write(Level level, std::string_view message) noexcept
{
    int saved = errno;
    try {
        enqueue(STDERR_FILENO, nullptr, format_line(level, message, style()));
    } catch (...) {
        // Logging must never take the process down (allocation failure).
    }
    errno = saved;
}

} // namespace sluice::log
