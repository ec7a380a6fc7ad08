#include "sluice/access_log.h"

#include "sluice/json.h"
#include "sluice/log.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <fmt/format.h>
#include <iterator>
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

namespace {

std::string format_text(const AccessRecord& r, const std::string& time)
{
    std::string line = fmt::format("{} listener={} client={} backend={} duration_ms={} bytes_in={} bytes_out={} end={}",
                                   time, r.listener, r.client, r.backend, r.duration_ms, r.bytes_in, r.bytes_out,
                                   r.end);
    if (r.connect_ms < 0)
        line += " connect_ms=-";
    else
        fmt::format_to(std::back_inserter(line), " connect_ms={:.3f}", r.connect_ms);
    fmt::format_to(std::back_inserter(line), " retries={}", r.retries);
    if (r.protocol == Protocol::Udp)
        fmt::format_to(std::back_inserter(line), " datagrams_in={} datagrams_out={}", r.datagrams_in,
                       r.datagrams_out);
    return line;
}

std::string format_json(const AccessRecord& r, const std::string& time)
{
    // Names are the operator's, clients' addresses are ours: all quoted
    // through json_quote all the same, so no value can break the line.
    std::string line = fmt::format(R"({{"time":{},"listener":{},"protocol":{},"client":{},"backend":)",
                                   json_quote(time), json_quote(r.listener), json_quote(to_string(r.protocol)),
                                   json_quote(r.client));
    line += r.backend == "-" ? "null" : json_quote(r.backend);
    line += R"(,"connect_ms":)";
    if (r.connect_ms < 0)
        line += "null";
    else
        fmt::format_to(std::back_inserter(line), "{:.3f}", r.connect_ms);
    fmt::format_to(std::back_inserter(line), R"(,"duration_ms":{},"bytes_in":{},"bytes_out":{},"retries":{})",
                   r.duration_ms, r.bytes_in, r.bytes_out, r.retries);
    if (r.protocol == Protocol::Udp)
        fmt::format_to(std::back_inserter(line), R"(,"datagrams_in":{},"datagrams_out":{})", r.datagrams_in,
                       r.datagrams_out);
    fmt::format_to(std::back_inserter(line), R"(,"end":{}}})", json_quote(r.end));
    return line;
}

} // namespace

std::string format_access_line(const AccessRecord& record, AccessLogFormat format)
{
    const std::string time = log::utc_timestamp();
    return format == AccessLogFormat::Json ? format_json(record, time) : format_text(record, time);
}

} // namespace sluice
