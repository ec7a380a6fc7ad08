// Access log: one line per finished session, per listener (`access_log` key).
//
//   2025-01-31T12:00:00.123Z listener=front client=10.0.0.5:41234 backend=pg/pg-a
//     duration_ms=5321 bytes_in=1200 bytes_out=48211 end=done
// (one line; bytes_in = client -> backend, bytes_out = backend -> client; end is
// a CloseReason, backend "-" when none was reached).
//
// Files are opened by the control thread (at start and on every reload, which
// therefore also reopens a rotated file) with O_APPEND. A worker never writes
// to them: it queues each line for the log writer thread (log.h), so a slow
// disk or a stalled stderr costs dropped lines (sluice_log_lines_dropped_total),
// never a stalled loop. Lines from workers never interleave.
#pragma once

#include "sluice/fd.h"

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace sluice {

class AccessLogFile : public std::enable_shared_from_this<AccessLogFile> {
public:
    // "-" = stderr; anything else is opened for appending (created 0640).
    // Returns null with `error` set when the file cannot be opened.
    static std::shared_ptr<AccessLogFile> open(const std::string& path, std::string* error);

    // Any thread, never waits on I/O: queues one line (a '\n' is added) to be
    // appended. Errors and lines the queue has no room for are dropped: a full
    // disk or a stuck sink must not stop the proxy.
    void write_line(std::string_view line) noexcept;

private:
    UniqueFd fd_;
    int raw_fd_ = -1;  // fd_ or STDERR_FILENO
};

struct AccessRecord {
    std::string_view listener;
    std::string client;       // "ip:port"
    std::string backend;      // "pool/name", or "-"
    std::int64_t duration_ms = 0;
    std::uint64_t bytes_in = 0;
    std::uint64_t bytes_out = 0;
    std::string_view end;     // to_string(CloseReason)
};

// The line for `record`, stamped with the current UTC time.
std::string format_access_line(const AccessRecord& record);

} // namespace sluice
