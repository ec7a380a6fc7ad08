// Access log: one line per finished session, TCP connection or UDP flow, per
// listener (`access_log` key), in the listener's `access_log_format`:
//
//   2025-01-31T12:00:00.123Z listener=front client=10.0.0.5:41234 backend=pg/pg-a
//     duration_ms=5321 bytes_in=1200 bytes_out=48211 end=done connect_ms=0.412 retries=0
// (text, one line; bytes_in = client -> backend, bytes_out = backend -> client;
// end is an EndCause, backend and connect_ms "-" when no backend was reached;
// a UDP flow adds datagrams_in= datagrams_out=). New fields are appended, so
// a parser of the older lines keeps working.
//
//   {"time":"2025-01-31T12:00:00.123Z","listener":"front","protocol":"tcp",
//    "client":"10.0.0.5:41234","backend":"pg/pg-a","connect_ms":0.412,
//    "duration_ms":5321,"bytes_in":1200,"bytes_out":48211,"retries":0,"end":"done"}
// (json, one object per line; backend and connect_ms null when no backend was
// reached; a UDP flow adds "datagrams_in" and "datagrams_out").
//
// Files are opened by the control thread (at start and on every reload, which
// therefore also reopens a rotated file) with O_APPEND. A worker never writes
// to them: it queues each line for the log writer thread (log.h), so a slow
// disk or a stalled stderr costs dropped lines (sluice_log_lines_dropped_total),
// never a stalled loop. Lines from workers never interleave.
#pragma once

#include "sluice/config.h"
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
    Protocol protocol = Protocol::Tcp;
    std::string client;       // "ip:port"
    std::string backend;      // "pool/name", or "-"
    double connect_ms = -1;   // negative: no connect succeeded
    std::int64_t duration_ms = 0;
    std::uint64_t bytes_in = 0;
    std::uint64_t bytes_out = 0;
    std::uint64_t datagrams_in = 0;   // UDP only
    std::uint64_t datagrams_out = 0;  // UDP only
    int retries = 0;          // further backends tried after a failed connect
    std::string_view end;     // to_string(EndCause)
};

// The line for `record` (without its newline), stamped with the current UTC time.
std::string format_access_line(const AccessRecord& record, AccessLogFormat format = AccessLogFormat::Text);

} // namespace sluice
