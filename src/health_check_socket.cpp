// The health-check kinds that speak through a plain socket: tcp (a connect,
// optionally a request and the prefix of its reply), udp (a datagram and its
// reply) and http (GET, the status and optionally a word of the body).
#include "sluice/event_loop.h"
#include "sluice/health_check.h"
#include "sluice/socket.h"

#include <fmt/format.h>

#include <charconv>
#include <optional>

namespace sluice {

namespace {

// Replies are read up to this much; a judge that has not decided by then
// decides on what it has (a server answering 100 MB costs 64 KiB).
constexpr std::size_t kMaxReply = 64 * 1024;

HealthCheckResult failed(SysError error) { return HealthCheckResult::from_error(error); }

std::string expect_mismatch(std::string_view got)
{
    return fmt::format("expect mismatch: got \"{}\"", printable_excerpt(got, 60));
}

// Decides on the reply so far: a verdict, or nullopt for "read more". With
// `complete` (the server closed, or kMaxReply was reached) it must decide.
using Judge = std::function<std::optional<HealthCheckResult>(std::string_view reply, bool complete)>;

// A TCP connect, then optionally a request and its judged reply.
class StreamCheck final : public HealthCheck {
public:
    StreamCheck(EventLoop& loop, UniqueFd sock, std::string request, Judge judge, HealthCheckDone done)
        : sock_(std::move(sock)), request_(std::move(request)), judge_(std::move(judge)), done_(std::move(done))
    {
        io_.bind<StreamCheck, &StreamCheck::on_ready>(loop, this, sock_.get());
        io_.set_events(EV_WRITE);  // writable: the connect finished, one way or the other
    }

private:
    void on_ready(int)
    {
        if (!connected_) {
            SysError error = connect_result(sock_.get());
            if (error != SysError::None)
                return finish(failed(error));
            connected_ = true;
            if (!judge_)
                return finish(HealthCheckResult::pass("connected"));
        }
        if (written_ < request_.size())
            return write_request();
        read_reply();
    }

    void write_request()
    {
        IoResult sent = write_some(sock_.get(), request_.data() + written_, request_.size() - written_);
        if (sent.would_block())
            return;
        if (!sent.ok())
            return finish(failed(sent.error));
        written_ += static_cast<std::size_t>(sent.bytes);
        if (written_ == request_.size())
            io_.set_events(EV_READ);
    }

    void read_reply()
    {
        char buffer[16 * 1024];
        for (;;) {
            std::size_t room = std::min(sizeof buffer, kMaxReply - reply_.size());
            IoResult got = read_some(sock_.get(), buffer, room);
            if (got.would_block())
                return;
            if (!got.ok()) {
                // A reset after a complete answer still lets the judge see it.
                if (auto verdict = judge_(reply_, false))
                    return finish(std::move(*verdict));
                return finish(failed(got.error));
            }
            reply_.append(buffer, static_cast<std::size_t>(got.bytes));
            const bool complete = got.bytes == 0 || reply_.size() >= kMaxReply;
            if (auto verdict = judge_(reply_, complete))
                return finish(std::move(*verdict));
            if (complete)
                return finish(HealthCheckResult::fail(HealthReason::BadReply, expect_mismatch(reply_)));
        }
    }

    void finish(HealthCheckResult result)
    {
        io_.stop();
        HealthCheckDone done = std::move(done_);
        done(std::move(result));  // last action: the prober may destroy us now
    }

    UniqueFd sock_;  // declared before io_: the watcher stops before the close
    IoWatcher io_;
    std::string request_;
    Judge judge_;        // empty: connected = passed
    HealthCheckDone done_;
    bool connected_ = false;
    std::size_t written_ = 0;
    std::string reply_;
};

// A datagram and the first reply to it.
class DatagramCheck final : public HealthCheck {
public:
    DatagramCheck(EventLoop& loop, UniqueFd sock, std::string expect, HealthCheckDone done)
        : sock_(std::move(sock)), expect_(std::move(expect)), done_(std::move(done))
    {
        io_.bind<DatagramCheck, &DatagramCheck::on_reply>(loop, this, sock_.get());
        io_.set_events(EV_READ);
    }

private:
    void on_reply(int)
    {
        // A reply, or the ICMP port unreachable queued as ECONNREFUSED.
        char buffer[2048];
        IoResult got = read_some(sock_.get(), buffer, sizeof buffer);
        if (got.would_block())
            return;
        io_.stop();
        HealthCheckDone done = std::move(done_);
        if (!got.ok())
            return done(failed(got.error));
        std::string_view reply(buffer, static_cast<std::size_t>(got.bytes));
        if (!reply.starts_with(expect_))
            return done(HealthCheckResult::fail(HealthReason::BadReply, expect_mismatch(reply)));
        done(HealthCheckResult::pass(expect_.empty() ? "replied" : "reply matches expect"));
    }

    UniqueFd sock_;
    IoWatcher io_;
    std::string expect_;
    HealthCheckDone done_;
};

std::unique_ptr<HealthCheck> start_stream_check(EventLoop& loop, const SocketAddress& target, std::string request,
                                                Judge judge, HealthCheckDone done)
{
    Result<UniqueFd> sock = start_connect(target);
    if (!sock) {
        done(failed(sock.error()));
        return nullptr;
    }
    return std::make_unique<StreamCheck>(loop, std::move(sock.value()), std::move(request), std::move(judge),
                                         std::move(done));
}

// The status code of an HTTP status line ("HTTP/1.1 503 Service Unavailable"),
// and the text after it.
struct StatusLine {
    int code = 0;
    std::string_view text;  // "503 Service Unavailable"
};

std::optional<StatusLine> parse_status_line(std::string_view line)
{
    if (!line.starts_with("HTTP/") || line.size() < 12 || line[8] != ' ')
        return std::nullopt;
    int code = 0;
    auto [end, error] = std::from_chars(line.data() + 9, line.data() + 12, code);
    if (error != std::errc{} || end != line.data() + 12 || code < 100 || code > 999)
        return std::nullopt;
    return StatusLine{code, line.substr(9)};
}

} // namespace

std::unique_ptr<HealthCheck> start_tcp_check(EventLoop& loop, const HealthCheckConfig& config,
                                             const SocketAddress& target, HealthCheckDone done)
{
    Judge judge;
    if (!config.expect.empty()) {
        judge = [expect = config.expect](std::string_view reply, bool complete) -> std::optional<HealthCheckResult> {
            std::size_t seen = std::min(reply.size(), expect.size());
            if (reply.substr(0, seen) != std::string_view(expect).substr(0, seen))
                return HealthCheckResult::fail(HealthReason::BadReply, expect_mismatch(reply));
            if (reply.size() >= expect.size())
                return HealthCheckResult::pass("reply matches expect");
            if (complete)
                return HealthCheckResult::fail(
                    HealthReason::BadReply,
                    reply.empty() ? std::string("closed without a reply") : expect_mismatch(reply));
            return std::nullopt;
        };
    }
    return start_stream_check(loop, target, config.send, std::move(judge), std::move(done));
}

std::unique_ptr<HealthCheck> start_udp_check(EventLoop& loop, const HealthCheckConfig& config,
                                             const SocketAddress& target, HealthCheckDone done)
{
    Result<UniqueFd> sock = open_connected_udp(target);
    if (!sock) {
        done(failed(sock.error()));
        return nullptr;
    }
    IoResult sent = write_some(sock.value().get(), config.send.data(), config.send.size());
    if (!sent.ok()) {
        done(failed(sent.error));
        return nullptr;
    }
    return std::make_unique<DatagramCheck>(loop, std::move(sock.value()), config.expect, std::move(done));
}

std::unique_ptr<HealthCheck> start_http_check(EventLoop& loop, const HealthCheckConfig& config,
                                              const SocketAddress& target, HealthCheckDone done)
{
    // HTTP/1.0 and Connection: close: the server ends the reply by closing,
    // with no chunked body to decode.
    std::string host = config.host.empty() ? target.to_string() : config.host;
    std::string request = fmt::format("GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: sluice-health-check\r\n"
                                      "Accept: */*\r\nConnection: close\r\n\r\n",
                                      config.path, host);
    Judge judge = [want = config.expect_status, expect = config.expect](
                      std::string_view reply, bool complete) -> std::optional<HealthCheckResult> {
        std::size_t line_end = reply.find("\r\n");
        if (line_end == std::string_view::npos) {
            if (!complete && reply.size() < 256)
                return std::nullopt;
            return HealthCheckResult::fail(HealthReason::BadReply,
                                           reply.empty() ? std::string("closed without a reply")
                                                         : fmt::format("not an HTTP reply: got \"{}\"",
                                                                       printable_excerpt(reply, 60)));
        }
        auto status = parse_status_line(reply.substr(0, line_end));
        if (!status)
            return HealthCheckResult::fail(HealthReason::BadReply,
                                           fmt::format("not an HTTP reply: got \"{}\"",
                                                       printable_excerpt(reply.substr(0, line_end), 60)));
        std::string verdict = fmt::format("HTTP {}", printable_excerpt(status->text, 60));
        if (status->code != want)
            return HealthCheckResult::fail(HealthReason::HttpStatus, std::move(verdict));
        if (expect.empty())
            return HealthCheckResult::pass(std::move(verdict));
        std::size_t body = reply.find("\r\n\r\n");
        if (body != std::string_view::npos && reply.find(expect, body + 4) != std::string_view::npos)
            return HealthCheckResult::pass(fmt::format("{}, body contains \"{}\"", verdict, printable_excerpt(expect, 40)));
        if (!complete)
            return std::nullopt;
        return HealthCheckResult::fail(HealthReason::BadReply,
                                       fmt::format("{}, body does not contain \"{}\"", verdict,
                                                   printable_excerpt(expect, 40)));
    };
    return start_stream_check(loop, target, std::move(request), std::move(judge), std::move(done));
}

} // namespace sluice
