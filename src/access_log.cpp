#include "sluice/access_log.h"

#include "sluice/log.h"

#include <cerrno>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

namespace sluice {

std::shared_ptr<AccessLogFile> AccessLogFile::open(const std::string& path, std::string* error)
{
    auto file = std::make_shared<AccessLogFile>();
    if (path == "-") {
        file->raw_fd_ = STDERR_FILENO;
        return file;
    }
    file->fd_.reset(::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640));
    if (!file->fd_) {
        if (error)
            *error = fmt::format("cannot open access log {}: {}", path, std::strerror(errno));
        return nullptr;
    }
    file->raw_fd_ = file->fd_.get();
    return file;
}

void AccessLogFile::write_line(std::string_view line) noexcept
{
    try {
        std::string text;
        text.reserve(line.size() + 1);
        text.append(line);
        text.push_back('\n');
        // The queued line holds the file, so a reload that drops this file
        // closes it only after its last lines are written. Stderr needs no owner.
        std::shared_ptr<const void> owner;
        if (fd_)
            owner = weak_from_this().lock();
        log::enqueue(raw_fd_, std::move(owner), std::move(text));
    } catch (...) {
        // Out of memory: drop the line, keep the session path alive.
    }
}

std::string format_access_line(const AccessRecord& r)
{
    timespec ts{};
    ::clock_gettime(CLOCK_REALTIME, &ts);
    tm utc{};
    ::gmtime_r(&ts.tv_sec, &utc);
    return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z listener={} client={} backend={} duration_ms={} "
                       "bytes_in={} bytes_out={} end={}",
                       utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
                       ts.tv_nsec / 1000000, r.listener, r.client, r.backend, r.duration_ms, r.bytes_in, r.bytes_out,
                       r.end);
}

} // namespace sluice
