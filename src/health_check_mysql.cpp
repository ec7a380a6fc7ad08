// The mysql health check (MariaDB and MySQL): log in, read
// @@global.read_only (0 = primary, 1 = replica), for a replica with max_lag
// read SHOW SLAVE STATUS, then leave with COM_QUIT.
//
// MariaDB Connector/C does the protocol and the authentication; its
// non-blocking API (*_start / *_cont) runs each call as a coroutine that
// returns whenever it would block, saying what it waits for (MYSQL_WAIT_READ,
// _WRITE, _TIMEOUT). This check watches the connection's socket for that on
// the prober's loop and resumes the call when it comes.
#include "sluice/event_loop.h"
#include "sluice/health_check.h"

#include <mariadb/errmsg.h>
#include <mariadb/mysql.h>
#include <mariadb/mysqld_error.h>
#include <sys/socket.h>

#include <fmt/format.h>

#include <charconv>
#include <cstring>
#include <mutex>
#include <optional>

namespace sluice {

namespace {

// The largest packet the client accepts. A health check reads one short row;
// a server (or an impostor) sending more is cut off at this size instead of
// being buffered (Connector/C would otherwise accept up to 1 GiB).
constexpr std::size_t kMaxPacket = 64 * 1024;

// mysql_library_init is not thread-safe; mysql_init calls it on first use.
void init_library_once()
{
    static std::once_flag once;
    std::call_once(once, [] { mysql_library_init(0, nullptr, nullptr); });
}

// The OS error Connector/C appends to a connect failure: "Can't connect to
// server on '127.0.0.1' (111)".
std::optional<int> trailing_errno(std::string_view message)
{
    if (!message.ends_with(')'))
        return std::nullopt;
    std::size_t open = message.rfind('(');
    if (open == std::string_view::npos)
        return std::nullopt;
    int value = 0;
    const char* first = message.data() + open + 1;
    const char* last = message.data() + message.size() - 1;
    auto [end, error] = std::from_chars(first, last, value);
    if (error != std::errc{} || end != last || value <= 0)
        return std::nullopt;
    return value;
}

// "Lost connection to server at 'handshake: ...', system error: 11" without
// its last part.
std::string_view without_system_error(std::string_view message)
{
    std::size_t at = message.rfind(", system error: ");
    return at == std::string_view::npos ? message : message.substr(0, at);
}

// A failed Connector/C call as a verdict: the server's or the library's own
// words, classified.
HealthCheckResult failed(MYSQL* mysql)
{
    const unsigned code = mysql_errno(mysql);
    std::string_view message = mysql_error(mysql);
    switch (code) {
    case CR_CONNECTION_ERROR:
    case CR_CONN_HOST_ERROR:
    case CR_IPSOCK_ERROR:
    case CR_SOCKET_CREATE_ERROR:
        if (auto err = trailing_errno(message))
            return HealthCheckResult::from_error(classify_errno(*err));
        break;
    case ER_ACCESS_DENIED_ERROR:
    case ER_DBACCESS_DENIED_ERROR:
    case ER_HOST_NOT_PRIVILEGED:
    case ER_ACCESS_DENIED_NO_PASSWORD_ERROR:
        return HealthCheckResult::fail(HealthReason::AuthFailed, printable_excerpt(message));
    case CR_SERVER_LOST:
        // Connector/C says this of a greeting that never completed, whether
        // the server closed, sent bytes that are not MySQL packets or a
        // packet over kMaxPacket: no valid greeting, so a bad reply. Its
        // "system error: N" is the errno of an earlier read (often EAGAIN),
        // not the cause, and is left out.
        if (message.find("'handshake:") != std::string_view::npos)
            return HealthCheckResult::fail(HealthReason::BadReply, printable_excerpt(without_system_error(message)));
        return HealthCheckResult::fail(HealthReason::Reset, printable_excerpt(without_system_error(message)));
    case CR_SERVER_GONE_ERROR:
        return HealthCheckResult::fail(HealthReason::Reset, printable_excerpt(message));
    case CR_OUT_OF_MEMORY: {
        HealthCheckResult result = HealthCheckResult::fail(HealthReason::Other, printable_excerpt(message));
        result.local_shortage = true;
        return result;
    }
    case CR_UNKNOWN_ERROR:
    case CR_VERSION_ERROR:
    case CR_SERVER_HANDSHAKE_ERR:
    case CR_NET_PACKET_TOO_LARGE:
    case CR_MALFORMED_PACKET:
    case CR_COMMANDS_OUT_OF_SYNC:
        return HealthCheckResult::fail(HealthReason::BadReply, printable_excerpt(message));
    default:
        break;
    }
    return HealthCheckResult::fail(HealthReason::Other, printable_excerpt(message));
}

// One probe. Each step is a Connector/C call started by its *_start function;
// while the call waits, `step_` names it and on_ready() resumes it with the
// matching *_cont.
class MysqlCheck final : public HealthCheck {
public:
    MysqlCheck(EventLoop& loop, const HealthCheckConfig& config, const SocketAddress& target, HealthCheckDone done)
        : loop_(loop), wanted_(config.role), max_lag_(config.max_lag), user_(config.user),
          password_(config.password), host_(target.ip_string()), port_(target.port()), done_(std::move(done))
    {
        timer_.bind<MysqlCheck, &MysqlCheck::on_library_timeout>(loop_, this);
    }

    // Cancels without waiting: shutdown(2) first, so the COM_QUIT that
    // mysql_close() may still try to send fails at once instead of blocking
    // on a full socket buffer. mysql_close() also ends a suspended call.
    ~MysqlCheck() override
    {
        io_.stop();
        timer_.stop();
        if (mysql_ == nullptr)
            return;
        if (my_socket fd = mysql_get_socket(mysql_); fd != MARIADB_INVALID_SOCKET)
            ::shutdown(fd, SHUT_RDWR);
        mysql_close(mysql_);
    }

    // Returns false (and has called done) if the connection could not begin.
    bool start()
    {
        init_library_once();
        mysql_ = mysql_init(nullptr);
        if (mysql_ == nullptr) {
            HealthCheckResult result = HealthCheckResult::fail(HealthReason::Other, "out of memory (mysql_init)");
            result.local_shortage = true;
            finish_now(std::move(result));
            return false;
        }
        const unsigned protocol = MYSQL_PROTOCOL_TCP;
        const std::size_t max_packet = kMaxPacket;
        // Without its coroutine stack every call below would block the loop.
        if (mysql_options(mysql_, MYSQL_OPT_NONBLOCK, nullptr) != 0) {
            HealthCheckResult result = HealthCheckResult::fail(HealthReason::Other, "out of memory (MYSQL_OPT_NONBLOCK)");
            result.local_shortage = true;
            finish_now(std::move(result));
            return false;
        }
        mysql_options(mysql_, MYSQL_OPT_PROTOCOL, &protocol);
        mysql_options(mysql_, MYSQL_OPT_MAX_ALLOWED_PACKET, &max_packet);
        mysql_options(mysql_, MYSQL_SET_CHARSET_NAME, "utf8mb4");
        mysql_options(mysql_, MYSQL_OPT_CONNECT_ATTR_RESET, nullptr);
        mysql_options4(mysql_, MYSQL_OPT_CONNECT_ATTR_ADD, "program_name", "sluice-health-check");

        MYSQL* connected = nullptr;
        step_ = Step::Connect;
        const int status = mysql_real_connect_start(&connected, mysql_, host_.c_str(), user_.c_str(),
                                                    password_.c_str(), nullptr, port_, nullptr, 0);
        if (status == 0) {
            on_connected(connected);
            return !finished_;
        }
        wait_for(status);
        return true;
    }

private:
    enum class Step : std::uint8_t { Connect, Query, StoreResult, Close };

    // Arms the watchers for what the suspended call waits for. The socket is
    // re-read each time: a connect may move to another address's socket.
    void wait_for(int status)
    {
        int events = 0;
        if (status & MYSQL_WAIT_READ)
            events |= EV_READ;
        if (status & MYSQL_WAIT_WRITE)
            events |= EV_WRITE;
        const my_socket fd = mysql_get_socket(mysql_);
        io_.stop();
        if (events != 0 && fd != MARIADB_INVALID_SOCKET) {
            io_.bind<MysqlCheck, &MysqlCheck::on_ready>(loop_, this, fd);
            io_.set_events(events);
        }
        // The library's own connect/read timeouts; the prober's deadline
        // (`timeout`) usually ends the probe before they do.
        if (status & MYSQL_WAIT_TIMEOUT)
            timer_.start(static_cast<double>(mysql_get_timeout_value_ms(mysql_)) / 1000.);
        else
            timer_.stop();
    }

    void on_ready(int revents)
    {
        int status = 0;
        if (revents & EV_READ)
            status |= MYSQL_WAIT_READ;
        if (revents & EV_WRITE)
            status |= MYSQL_WAIT_WRITE;
        resume(status);
    }

    void on_library_timeout() { resume(MYSQL_WAIT_TIMEOUT); }

    void resume(int ready)
    {
        io_.stop();
        timer_.stop();
        int status = 0;
        switch (step_) {
        case Step::Connect: {
            MYSQL* connected = nullptr;
            status = mysql_real_connect_cont(&connected, mysql_, ready);
            if (status == 0)
                return on_connected(connected);
            break;
        }
        case Step::Query: {
            int error = 0;
            status = mysql_real_query_cont(&error, mysql_, ready);
            if (status == 0)
                return on_queried(error);
            break;
        }
        case Step::StoreResult: {
            MYSQL_RES* result = nullptr;
            status = mysql_store_result_cont(&result, mysql_, ready);
            if (status == 0)
                return on_result(result);
            break;
        }
        case Step::Close:
            status = mysql_close_cont(mysql_, ready);
            if (status == 0) {
                mysql_ = nullptr;  // mysql_close_cont freed it
                return finish_now(std::move(verdict_));
            }
            break;
        }
        wait_for(status);
    }

    void on_connected(MYSQL* connected)
    {
        if (connected == nullptr)
            return close_with(failed(mysql_));
        run_query("SELECT @@global.read_only");
    }

    void run_query(std::string_view query)
    {
        int error = 0;
        step_ = Step::Query;
        const int status = mysql_real_query_start(&error, mysql_, query.data(), query.size());
        if (status == 0)
            return on_queried(error);
        wait_for(status);
    }

    void on_queried(int error)
    {
        if (error != 0)
            return close_with(failed(mysql_));
        MYSQL_RES* result = nullptr;
        step_ = Step::StoreResult;
        const int status = mysql_store_result_start(&result, mysql_);
        if (status == 0)
            return on_result(result);
        wait_for(status);
    }

    void on_result(MYSQL_RES* result)
    {
        if (result == nullptr) {
            if (mysql_errno(mysql_) != 0)
                return close_with(failed(mysql_));
            return close_with(HealthCheckResult::fail(HealthReason::BadReply, "the query returned no result set"));
        }
        std::optional<HealthCheckResult> next;
        if (!role_judged_)
            next = judge_read_only(result);
        else
            next = judge_lag(result);
        mysql_free_result(result);  // a stored result: frees memory, no I/O
        if (next)
            return close_with(std::move(*next));
        run_query("SHOW SLAVE STATUS");
    }

    // The role from @@global.read_only; nullopt: go on to the lag.
    std::optional<HealthCheckResult> judge_read_only(MYSQL_RES* result)
    {
        role_judged_ = true;
        MYSQL_ROW row = mysql_fetch_row(result);
        if (row == nullptr || mysql_num_fields(result) != 1 || row[0] == nullptr)
            return HealthCheckResult::fail(HealthReason::BadReply, "SELECT @@global.read_only returned no value");
        std::string_view value = row[0];
        BackendRole claimed;
        if (value == "0" || value == "OFF")
            claimed = BackendRole::Primary;
        else if (value == "1" || value == "ON")
            claimed = BackendRole::Replica;
        else
            return HealthCheckResult::fail(HealthReason::BadReply,
                                           fmt::format("read_only = \"{}\"", printable_excerpt(value, 40)));
        HealthCheckResult verdict = judge_role(wanted_, claimed, fmt::format("read_only = {}", value));
        if (!verdict.passed || claimed != BackendRole::Replica || max_lag_.count() <= 0)
            return verdict;
        verdict_ = std::move(verdict);  // kept for its detail and role
        return std::nullopt;
    }

    // max_lag against Seconds_Behind_Master (MySQL 8.0.22+ may say
    // Seconds_Behind_Source) of the default replication connection.
    HealthCheckResult judge_lag(MYSQL_RES* result)
    {
        const BackendRole role = verdict_.role;
        const std::string& head = verdict_.detail;
        MYSQL_ROW row = mysql_fetch_row(result);
        if (row == nullptr)
            return HealthCheckResult::fail(HealthReason::Lagging,
                                           fmt::format("{}, not replicating (SHOW SLAVE STATUS is empty)", head), role);
        std::optional<unsigned> column;
        const unsigned count = mysql_num_fields(result);
        MYSQL_FIELD* fields = mysql_fetch_fields(result);
        for (unsigned i = 0; i < count; ++i) {
            std::string_view name(fields[i].name, fields[i].name_length);
            if (name == "Seconds_Behind_Master" || name == "Seconds_Behind_Source")
                column = i;
        }
        if (!column)
            return HealthCheckResult::fail(HealthReason::BadReply,
                                           fmt::format("{}, SHOW SLAVE STATUS has no Seconds_Behind_Master", head), role);
        if (row[*column] == nullptr)
            return HealthCheckResult::fail(HealthReason::Lagging,
                                           fmt::format("{}, replication not running (Seconds_Behind_Master = NULL)", head),
                                           role);
        std::string_view text = row[*column];
        long long seconds = 0;
        auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), seconds);
        if (error != std::errc{} || end != text.data() + text.size() || seconds < 0)
            return HealthCheckResult::fail(HealthReason::BadReply,
                                           fmt::format("{}, Seconds_Behind_Master = \"{}\"", head,
                                                       printable_excerpt(text, 40)),
                                           role);
        if (seconds * 1000 > max_lag_.count())
            return HealthCheckResult::fail(HealthReason::Lagging,
                                           fmt::format("{}, Seconds_Behind_Master = {} > max_lag {} ms", head, seconds,
                                                       max_lag_.count()),
                                           role);
        return HealthCheckResult::pass(fmt::format("{}, Seconds_Behind_Master = {}", head, seconds), role);
    }

    // Leaves with COM_QUIT (mysql_close_start), then reports `verdict`. A
    // connection that failed before login has no socket left: the close
    // only frees memory.
    void close_with(HealthCheckResult verdict)
    {
        verdict_ = std::move(verdict);
        step_ = Step::Close;
        const int status = mysql_close_start(mysql_);
        if (status == 0) {
            mysql_ = nullptr;  // mysql_close_start freed it
            return finish_now(std::move(verdict_));
        }
        wait_for(status);
    }

    void finish_now(HealthCheckResult result)
    {
        finished_ = true;
        io_.stop();
        timer_.stop();
        HealthCheckDone done = std::move(done_);
        done(std::move(result));  // last action: the prober may destroy us now
    }

    EventLoop& loop_;
    HealthCheckConfig::Role wanted_;
    Duration max_lag_;
    std::string user_;
    std::string password_;
    std::string host_;
    std::uint16_t port_;
    HealthCheckDone done_;
    MYSQL* mysql_ = nullptr;  // owned; null once mysql_close_* freed it
    IoWatcher io_;
    TimerWatcher timer_;
    Step step_ = Step::Connect;
    bool role_judged_ = false;
    bool finished_ = false;
    HealthCheckResult verdict_;  // the role verdict while the lag is read; the final one while closing
};

} // namespace

std::unique_ptr<HealthCheck> start_mysql_check(EventLoop& loop, const HealthCheckConfig& config,
                                               const SocketAddress& target, HealthCheckDone done)
{
    auto check = std::make_unique<MysqlCheck>(loop, config, target, std::move(done));
    if (!check->start())
        return nullptr;
    return check;
}

} // namespace sluice
