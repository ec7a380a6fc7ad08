// The redis health check: hiredis' asynchronous API driven by its libev
// adapter on the prober's loop. One connection pipelines
//   AUTH [user] password   (only with a password)
//   PING
//   INFO replication
//   QUIT
// and hiredis closes it from our side once QUIT is answered, so every probe
// logs out cleanly. The verdict is the first failing reply, else what INFO
// says about the role (README "Health checks", redis).
//
// hiredis 0.14 rules this file relies on (async.c):
//   - hiredis frees the context itself after a failed connect (the connect
//     callback runs first) and on every disconnect (the disconnect callback
//     runs, after the pending reply callbacks got a NULL reply). We forget our
//     pointer in those two callbacks.
//   - redisAsyncFree() called inside a hiredis callback only marks the
//     context; the free happens when the callback returns, and runs the
//     pending reply callbacks and the disconnect callback. Every callback
//     therefore finds the check through `ac->data`, which the destructor
//     clears first: nothing reaches a destroyed check, whenever it is
//     destroyed.
#include "sluice/event_loop.h"
#include "sluice/health_check.h"

#include <fcntl.h>
#include <hiredis/adapters/libev.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <sys/ioctl.h>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <optional>

namespace sluice {

namespace {

// What a probe lets hiredis read in all. hiredis 0.14 would otherwise buffer
// a reply of any size (a bulk string is kept until it is complete), so a
// server answering 100 MB would cost 100 MB; INFO replication is a few
// hundred bytes (about 90 more per attached replica).
constexpr std::size_t kMaxReply = 1024 * 1024;
// hiredis 0.14 reads at most this much per readable event (redisBufferRead).
constexpr std::size_t kHiredisReadSize = 16 * 1024;

enum class Step : std::uint8_t { Auth, Ping, Info, Quit };

std::string_view reply_text(const redisReply& reply)
{
    return {reply.str, static_cast<std::size_t>(reply.len)};
}

// The value of "key:" on its own line of an INFO section, or nullopt.
std::optional<std::string_view> info_field(std::string_view info, std::string_view key)
{
    std::size_t at = 0;
    while (at < info.size()) {
        std::size_t end = info.find('\n', at);
        if (end == std::string_view::npos)
            end = info.size();
        std::string_view line = info.substr(at, end - at);
        if (line.ends_with('\r'))
            line.remove_suffix(1);
        if (line.size() > key.size() && line.starts_with(key) && line[key.size()] == ':')
            return line.substr(key.size() + 1);
        at = end + 1;
    }
    return std::nullopt;
}

// An error reply in the server's words: refused credentials are AuthFailed
// (-NOAUTH without a password, -WRONGPASS from Redis 6's ACLs, "-ERR invalid
// password" before them); anything else (-LOADING, -MASTERDOWN...) BadReply.
HealthCheckResult error_reply(std::string_view text)
{
    const bool auth = text.starts_with("NOAUTH") || text.starts_with("WRONGPASS")
        || text.starts_with("ERR invalid password") || text.starts_with("ERR invalid username-password");
    if (auth)
        return HealthCheckResult::fail(HealthReason::AuthFailed, printable_excerpt(text));
    return HealthCheckResult::fail(HealthReason::BadReply,
                                   fmt::format("expect mismatch: got \"-{}\"", printable_excerpt(text, 60)));
}

HealthCheckResult unexpected_reply(std::string_view what, const redisReply& reply)
{
    std::string got = reply.type == REDIS_REPLY_INTEGER ? fmt::format(":{}", reply.integer)
        : reply.type == REDIS_REPLY_NIL                 ? std::string("nil")
        : reply.type == REDIS_REPLY_ARRAY               ? fmt::format("an array of {}", reply.elements)
                                                        : printable_excerpt(reply_text(reply), 60);
    return HealthCheckResult::fail(HealthReason::BadReply, fmt::format("expect mismatch: {} got \"{}\"", what, got));
}

// The verdict on an INFO replication reply. Detail: "role:master",
// "role:slave, master_link_status:up" (plus the lag when max_lag is set).
HealthCheckResult judge_info(HealthCheckConfig::Role wanted, Duration max_lag, std::string_view info)
{
    using Role = HealthCheckConfig::Role;
    std::optional<std::string_view> role = info_field(info, "role");
    if (role == "master") {
        if (wanted == Role::Replica)
            return HealthCheckResult::fail(HealthReason::WrongRole, "role:master", BackendRole::Primary);
        return HealthCheckResult::pass("role:master", BackendRole::Primary);
    }
    if (role != "slave")
        return HealthCheckResult::fail(HealthReason::BadReply,
                                       fmt::format("INFO replication has no role: got \"{}\"",
                                                   printable_excerpt(info, 60)));
    std::string_view link = info_field(info, "master_link_status").value_or("unknown");
    std::string detail = fmt::format("role:slave, master_link_status:{}", printable_excerpt(link, 20));
    if (wanted == Role::Primary)
        return HealthCheckResult::fail(HealthReason::WrongRole, std::move(detail), BackendRole::Replica);
    const bool lag_checked = max_lag.count() > 0;
    if ((wanted == Role::Replica || lag_checked) && link != "up")
        return HealthCheckResult::fail(HealthReason::Lagging, std::move(detail), BackendRole::Replica);
    if (lag_checked) {
        // Seconds since the replica last heard from its master. An idle
        // master still pings every repl-ping-replica-period (10 s by default).
        std::string_view text = info_field(info, "master_last_io_seconds_ago").value_or("");
        long long seconds = -1;
        auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), seconds);
        detail += fmt::format(", master_last_io_seconds_ago:{}", printable_excerpt(text, 20));
        if (error != std::errc{} || end != text.data() + text.size() || seconds < 0
            || seconds * 1000 > max_lag.count())
            return HealthCheckResult::fail(HealthReason::Lagging, std::move(detail), BackendRole::Replica);
    }
    return HealthCheckResult::pass(std::move(detail), BackendRole::Replica);
}

// hiredis' own error text (it escapes the server's bytes itself: Protocol
// error, got "\x01" as reply type byte), kept readable; anything else escaped.
std::string hiredis_words(std::string_view text)
{
    const bool plain = std::all_of(text.begin(), text.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
    if (plain && text.size() <= 160)
        return std::string(text);
    return printable_excerpt(text);
}

// How a connection that hiredis gave up on failed: its error in our words.
// `saved_errno` is errno as the callback found it, trusted only when hiredis'
// text is its strerror (REDIS_ERR_IO sets both).
HealthCheckResult connection_error(const redisAsyncContext& ac, int saved_errno)
{
    const char* text = ac.c.errstr;
    if (ac.c.err == REDIS_ERR_IO && saved_errno != 0 && std::strcmp(text, std::strerror(saved_errno)) == 0) {
        SysError error = classify_errno(saved_errno);
        if (error != SysError::Other)
            return HealthCheckResult::from_error(error);
    }
    if (ac.c.err == REDIS_ERR_EOF)
        return HealthCheckResult::fail(HealthReason::BadReply, "server closed the connection");
    if (ac.c.err == REDIS_ERR_PROTOCOL)
        return HealthCheckResult::fail(HealthReason::BadReply, hiredis_words(text));
    if (ac.c.err == REDIS_ERR_OOM) {
        HealthCheckResult result = HealthCheckResult::fail(HealthReason::Other, "out of memory");
        result.local_shortage = true;
        return result;
    }
    return HealthCheckResult::fail(HealthReason::Other, hiredis_words(text));
}

class RedisCheck final : public HealthCheck {
public:
    RedisCheck(const HealthCheckConfig& config, HealthCheckDone done)
        : role_(config.role), max_lag_(config.max_lag), done_(std::move(done))
    {
    }

    ~RedisCheck() override
    {
        if (ctx_) {
            ctx_->data = nullptr;  // its callbacks, now or after a deferred free, find no check
            redisAsyncFree(ctx_);  // closes the socket; sends nothing
        }
    }

    // Connects and queues the conversation. A result when it failed at once
    // (then the context is already gone).
    std::optional<HealthCheckResult> start(EventLoop& loop, const HealthCheckConfig& config,
                                           const SocketAddress& target)
    {
        std::string ip = target.ip_string();
        ctx_ = redisAsyncConnect(ip.c_str(), target.port());
        if (!ctx_)
            return HealthCheckResult::from_error(SysError::NoBuffers);
        if (ctx_->err) {
            HealthCheckResult result = connection_error(*ctx_, errno);
            redisAsyncFree(ctx_);
            ctx_ = nullptr;
            return result;
        }
        // sluice starts no programs, but a probe's socket has no business in one.
        (void)fcntl(ctx_->c.fd, F_SETFD, FD_CLOEXEC);
        ctx_->data = this;
        if (redisLibevAttach(loop.raw(), ctx_) != REDIS_OK) {
            redisAsyncFree(ctx_);
            ctx_ = nullptr;
            return HealthCheckResult::from_error(SysError::NoBuffers);
        }
        // Our read callback meters what hiredis may read, then hands over.
        auto* events = static_cast<redisLibevEvents*>(ctx_->ev.data);
        ev_set_cb(&events->rev, &RedisCheck::on_readable);
        redisAsyncSetConnectCallback(ctx_, &RedisCheck::on_connect);
        redisAsyncSetDisconnectCallback(ctx_, &RedisCheck::on_disconnect);

        if (!config.password.empty()) {
            if (config.user.empty())
                send({"AUTH", config.password}, Step::Auth);
            else
                send({"AUTH", config.user, config.password}, Step::Auth);
        }
        send({"PING"}, Step::Ping);
        send({"INFO", "replication"}, Step::Info);
        send({"QUIT"}, Step::Quit);
        // Close from our side once every reply is in (after QUIT's +OK).
        redisAsyncDisconnect(ctx_);
        return std::nullopt;
    }

private:
    static RedisCheck* from(const redisAsyncContext* ac) { return static_cast<RedisCheck*>(ac->data); }

    // Arguments go as separate bulk strings: no password or user name is ever
    // formatted into a command line.
    void send(std::initializer_list<std::string_view> args, Step step)
    {
        std::array<const char*, 3> argv{};
        std::array<std::size_t, 3> lengths{};
        int argc = 0;
        for (std::string_view arg : args) {
            argv[static_cast<std::size_t>(argc)] = arg.data();
            lengths[static_cast<std::size_t>(argc)] = arg.size();
            ++argc;
        }
        if (redisAsyncCommandArgv(ctx_, &RedisCheck::on_reply, nullptr, argc, argv.data(), lengths.data())
            == REDIS_OK)
            steps_[queued_++] = step;
    }

    static void on_readable(struct ev_loop*, ev_io* watcher, int)
    {
        auto* events = static_cast<redisLibevEvents*>(watcher->data);
        redisAsyncContext* ac = events->context;
        if (RedisCheck* self = from(ac); self && !self->allow_read())
            return;  // the context is gone
        redisAsyncHandleRead(ac);  // may free ac and events
    }

    // Counts what the next read will take; past kMaxReply the probe fails
    // before hiredis buffers it. False when it did (the context is freed).
    bool allow_read()
    {
        int pending = 0;
        if (ioctl(ctx_->c.fd, FIONREAD, &pending) == 0)
            read_ += std::clamp<std::size_t>(static_cast<std::size_t>(std::max(pending, 1)), 1, kHiredisReadSize);
        if (read_ <= kMaxReply)
            return true;
        abandon(HealthCheckResult::fail(HealthReason::BadReply,
                                        fmt::format("reply longer than {} KiB", kMaxReply / 1024)));
        return false;
    }

    static void on_connect(const redisAsyncContext* ac, int status)
    {
        RedisCheck* self = from(ac);
        if (!self || status == REDIS_OK)
            return;
        const int saved_errno = errno;
        self->ctx_ = nullptr;  // hiredis frees it when we return
        self->finish(connection_error(*ac, saved_errno));
    }

    static void on_disconnect(const redisAsyncContext* ac, int)
    {
        RedisCheck* self = from(ac);
        if (!self)
            return;
        const int saved_errno = errno;
        self->ctx_ = nullptr;  // hiredis frees it when we return
        if (self->verdict_ && (self->quit_answered_ || !self->verdict_->passed))
            return self->finish(std::move(*self->verdict_));
        self->finish(connection_error(*ac, saved_errno));
    }

    static void on_reply(redisAsyncContext* ac, void* reply, void*)
    {
        RedisCheck* self = from(ac);
        if (!self || !reply)
            return;  // freed, or the connection failed: on_connect/on_disconnect say why
        if (self->answered_ < self->queued_)
            self->on_reply(self->steps_[self->answered_++], *static_cast<redisReply*>(reply));
    }

    void on_reply(Step step, const redisReply& reply)
    {
        if (step == Step::Quit) {
            quit_answered_ = true;
            if (!verdict_)
                verdict_ = HealthCheckResult::fail(HealthReason::BadReply, "no reply to INFO replication");
            return finish(std::move(*verdict_));  // hiredis closes the connection when we return
        }
        if (verdict_)
            return;  // the first failure is the verdict
        if (reply.type == REDIS_REPLY_ERROR) {
            verdict_ = error_reply(reply_text(reply));
            if (step == Step::Auth)
                verdict_->reason = HealthReason::AuthFailed;
            return;
        }
        if (step == Step::Ping && !(reply.type == REDIS_REPLY_STATUS && reply_text(reply) == "PONG"))
            verdict_ = unexpected_reply("PING", reply);
        else if (step == Step::Info)
            verdict_ = reply.type == REDIS_REPLY_STRING ? judge_info(role_, max_lag_, reply_text(reply))
                                                        : unexpected_reply("INFO", reply);
    }

    // Ends the probe now: frees the context (outside any hiredis callback:
    // from our read callback) and reports `result`.
    void abandon(HealthCheckResult result)
    {
        redisAsyncContext* ac = std::exchange(ctx_, nullptr);
        ac->data = nullptr;
        redisAsyncFree(ac);
        finish(std::move(result));
    }

public:
    void finish(HealthCheckResult result)
    {
        if (!done_)
            return;
        HealthCheckDone done = std::move(done_);
        done_ = nullptr;
        done(std::move(result));  // last action: the prober may destroy us now
    }

private:
    HealthCheckConfig::Role role_;
    Duration max_lag_;
    HealthCheckDone done_;
    redisAsyncContext* ctx_ = nullptr;  // null once hiredis or we freed it
    std::array<Step, 4> steps_{};      // the commands in flight, in order
    std::size_t queued_ = 0;
    std::size_t answered_ = 0;
    std::optional<HealthCheckResult> verdict_;
    bool quit_answered_ = false;
    std::size_t read_ = 0;  // bytes hiredis was let read
};

} // namespace

std::unique_ptr<HealthCheck> start_redis_check(EventLoop& loop, const HealthCheckConfig& config,
                                               const SocketAddress& target, HealthCheckDone done)
{
    auto check = std::make_unique<RedisCheck>(config, std::move(done));
    if (auto failed = check->start(loop, config, target)) {
        check->finish(std::move(*failed));  // the contract allows done inside start
        return nullptr;
    }
    return check;
}

} // namespace sluice
