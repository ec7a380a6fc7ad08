// The postgres health check: log in with libpq, ask the server whether it is
// in recovery and how far its replay trails, judge the role, log out.
//
// libpq is driven only through its asynchronous API: PQconnectStartParams and
// PQconnectPoll for the login (TCP, TLS, SCRAM/md5), PQsendQuery,
// PQconsumeInput and PQgetResult (only once PQisBusy says it will not wait)
// for the query, PQfinish for the Terminate message. The connection is put in
// nonblocking mode once logged in, so that neither the query nor PQfinish's
// Terminate can wait for a full send buffer.
#include "sluice/event_loop.h"
#include "sluice/health_check.h"

#include <fmt/format.h>
#include <libpq-fe.h>

#include <netinet/in.h>
#include <linux/tcp.h>  // tcp_info with tcpi_bytes_received (glibc's lacks it)
#include <sys/socket.h>

#include <charconv>
#include <optional>

namespace sluice {

namespace {

// What one probe may receive, TLS handshake included; a real server's answer
// is a few KiB. libpq has no read limit: it reads a message of any declared
// length (a DataRow may claim 1 GB) until the socket runs dry. So the
// socket's receive buffer is kept small (the kernel doubles it: 8 KiB), which
// makes a flooding server wait for window updates and each of libpq's reads
// end after about that much; the total is checked after each read. A server
// answering 100 MB costs about kMaxReceived (measured: 262,165 bytes read).
// The price is a window of 8 KiB: a TLS handshake over a long path may take
// a round trip more.
constexpr std::uint64_t kMaxReceived = 256 * 1024;
constexpr int kReceiveBuffer = 4 * 1024;

// One row: the role and, on a replica, the replay delay in seconds (NULL when
// unknown: nothing replayed since the server started and not streaming).
// Replay delay is 0 while everything received is replayed (an idle primary
// sends nothing, and now() - last replay would grow without any lag), else
// the age of the last transaction replayed.
constexpr const char* kQuery =
    "SELECT pg_is_in_recovery(),"
    " CASE WHEN NOT pg_is_in_recovery() THEN 0::float8"
    " WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0::float8"
    " ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 END";

void ignore_notice(void*, const char*) {}

// The last attempt's primary line of a libpq error message, without libpq's
// "connection to server at ... failed: " and the severity ("FATAL:  ").
std::string_view main_line(std::string_view message)
{
    std::string_view last;
    while (!message.empty()) {
        std::size_t end = message.find('\n');
        std::string_view line = message.substr(0, end);
        message = end == std::string_view::npos ? std::string_view{} : message.substr(end + 1);
        // Hints and details come indented or labelled on their own lines.
        if (line.empty() || line.front() == '\t' || line.starts_with("HINT:") || line.starts_with("DETAIL:"))
            continue;
        last = line;
    }
    if (last.starts_with("connection to server")) {
        if (std::size_t at = last.find(" failed: "); at != std::string_view::npos)
            last.remove_prefix(at + 9);
    }
    for (std::string_view severity : {"FATAL:  ", "ERROR:  ", "PANIC:  "}) {
        if (last.starts_with(severity))
            last.remove_prefix(severity.size());
    }
    while (!last.empty() && (last.back() == ' ' || last.back() == '\r'))
        last.remove_suffix(1);
    return last;
}

// A server's message fit for one log line, quotes kept as the server wrote
// them (`password authentication failed for user "monitor"`): control bytes
// and non-ASCII escaped, cut at ~200 bytes.
std::string server_words(std::string_view text)
{
    std::string out;
    for (char c : text) {
        if (out.size() >= 200) {
            out += "...";
            break;
        }
        auto byte = static_cast<unsigned char>(c);
        if (byte < 0x20 || byte >= 0x7f)
            out += fmt::format("\\x{:02x}", byte);
        else
            out += c;
    }
    return out;
}

bool contains(std::string_view text, std::string_view word) { return text.find(word) != std::string_view::npos; }

// A failed login or query, classified from libpq's words (a failed login
// leaves no PGresult, so no SQLSTATE; the messages are libpq's and the
// server's, stable across versions).
HealthCheckResult classify(std::string_view message, std::string_view sqlstate = {})
{
    std::string_view line = main_line(message);
    if (line.empty())
        line = "connection failed";
    // The socket's own errors, in the words every kind uses.
    if (contains(line, "Connection refused"))
        return HealthCheckResult::from_error(SysError::ConnectionRefused);
    if (contains(line, "Connection reset by peer"))
        return HealthCheckResult::from_error(SysError::ConnectionReset);
    if (contains(line, "No route to host") || contains(line, "Network is unreachable"))
        return HealthCheckResult::from_error(SysError::Unreachable);
    if (contains(line, "Too many open files"))
        return HealthCheckResult::from_error(SysError::TooManyFiles);
    if (contains(line, "out of memory") || contains(line, "Cannot allocate memory"))
        return HealthCheckResult::from_error(SysError::NoBuffers);

    std::string detail = server_words(line);
    // 28P01 invalid_password, 28000 invalid_authorization_specification (no
    // pg_hba.conf entry), and libpq's own "no password supplied".
    if (sqlstate == "28P01" || sqlstate == "28000" || contains(line, "authentication failed")
        || contains(line, "pg_hba.conf") || contains(line, "no password supplied"))
        return HealthCheckResult::fail(HealthReason::AuthFailed, std::move(detail));
    if (contains(line, "server closed the connection unexpectedly") || contains(line, "EOF"))
        return HealthCheckResult::fail(HealthReason::Reset, std::move(detail));
    if (contains(line, "invalid response") || contains(line, "expected authentication request")
        || contains(line, "unexpected message") || contains(line, "invalid message")
        || contains(line, "protocol") || contains(line, "lost synchronization") || contains(line, "unexpected response"))
        return HealthCheckResult::fail(HealthReason::BadReply, std::move(detail));
    return HealthCheckResult::fail(HealthReason::Other, std::move(detail));
}

std::optional<double> parse_seconds(const char* text)
{
    double value = 0;
    std::string_view view(text);
    auto [end, error] = std::from_chars(view.data(), view.data() + view.size(), value);
    if (error != std::errc{} || end != view.data() + view.size())
        return std::nullopt;
    return value;
}

struct ConnectionCloser {
    void operator()(PGconn* conn) const noexcept { PQfinish(conn); }
};
using Connection = std::unique_ptr<PGconn, ConnectionCloser>;

struct ResultClearer {
    void operator()(PGresult* result) const noexcept { PQclear(result); }
};
using Result = std::unique_ptr<PGresult, ResultClearer>;

class PostgresCheck final : public HealthCheck {
public:
    PostgresCheck(EventLoop& loop, const HealthCheckConfig& config, Connection conn, HealthCheckDone done)
        : loop_(loop), role_(config.role), max_lag_(config.max_lag), conn_(std::move(conn)), done_(std::move(done))
    {
        // PQconnectStartParams has begun: the first poll waits for writable.
        watch(EV_WRITE);
    }

    // Destruction cancels: io_ stops first, then PQfinish closes the socket,
    // sending Terminate only on a logged-in connection, and then in
    // nonblocking mode: it never waits.
    ~PostgresCheck() override = default;

private:
    // (Re)binds the watcher to the connection's current socket: libpq may
    // open a new one between polls (TLS refused, then plain; another address).
    void watch(int events)
    {
        if (int sock = PQsocket(conn_.get()); sock != socket_) {
            // Small receive buffer: a hostile server's flood arrives in small
            // bursts, each checked against kMaxReceived (see over_limit).
            ::setsockopt(sock, SOL_SOCKET, SO_RCVBUF, &kReceiveBuffer, sizeof kReceiveBuffer);
            socket_ = sock;
        }
        io_.stop();
        io_.bind<PostgresCheck, &PostgresCheck::on_ready>(loop_, this, PQsocket(conn_.get()));
        io_.set_events(events);
    }

    void on_ready(int revents)
    {
        if (!logged_in_)
            return poll_login();
        if (flushing_) {
            // libpq's rule for a blocked send: consume what the server sent
            // (a readable socket would otherwise wake the loop again at once).
            if ((revents & EV_READ) && PQconsumeInput(conn_.get()) == 0)
                return finish(classify(PQerrorMessage(conn_.get())));
            if (over_limit())
                return finish(too_much());
            return flush_query();
        }
        read_result();
    }

    void poll_login()
    {
        switch (PQconnectPoll(conn_.get())) {
        case PGRES_POLLING_READING:
            if (over_limit())
                return finish(too_much());
            return watch(EV_READ);
        case PGRES_POLLING_WRITING: return watch(EV_WRITE);
        case PGRES_POLLING_OK: break;
        case PGRES_POLLING_FAILED:
        default: return finish(classify(PQerrorMessage(conn_.get())));
        }
        logged_in_ = true;
        if (PQsetnonblocking(conn_.get(), 1) != 0 || PQsendQuery(conn_.get(), kQuery) == 0)
            return finish(classify(PQerrorMessage(conn_.get())));
        flushing_ = true;
        flush_query();
    }

    void flush_query()
    {
        int pending = PQflush(conn_.get());
        if (pending < 0)
            return finish(classify(PQerrorMessage(conn_.get())));
        if (pending > 0)
            return watch(EV_READ | EV_WRITE);  // libpq reads too while flushing
        flushing_ = false;
        watch(EV_READ);
        read_result();  // the answer may already be in libpq's buffer (read while flushing)
    }

    void read_result()
    {
        if (PQconsumeInput(conn_.get()) == 0)
            return finish(classify(PQerrorMessage(conn_.get())));
        if (over_limit())
            return finish(too_much());
        while (!PQisBusy(conn_.get())) {
            Result result(PQgetResult(conn_.get()));
            if (!result)
                return finish(verdict_ ? std::move(*verdict_)
                                       : HealthCheckResult::fail(HealthReason::BadReply, "no result"));
            if (!verdict_)
                verdict_ = judge(result.get());
        }
    }

    HealthCheckResult judge(const PGresult* result) const
    {
        if (PQresultStatus(result) != PGRES_TUPLES_OK) {
            const char* state = PQresultErrorField(result, PG_DIAG_SQLSTATE);
            return classify(PQresultErrorMessage(result), state ? state : "");
        }
        if (PQntuples(result) != 1 || PQnfields(result) != 2 || PQgetisnull(result, 0, 0))
            return HealthCheckResult::fail(HealthReason::BadReply, "unexpected reply to the role query");
        std::string_view recovery = PQgetvalue(result, 0, 0);
        if (recovery != "t" && recovery != "f")
            return HealthCheckResult::fail(
                HealthReason::BadReply,
                fmt::format("unexpected pg_is_in_recovery: \"{}\"", printable_excerpt(recovery, 40)));
        if (recovery == "f")
            return judge_role(role_, BackendRole::Primary, "pg_is_in_recovery = false");

        HealthCheckResult verdict = judge_role(role_, BackendRole::Replica, "pg_is_in_recovery = true");
        if (!verdict.passed || max_lag_.count() == 0)
            return verdict;
        const double max_lag = static_cast<double>(max_lag_.count()) / 1000.0;
        if (PQgetisnull(result, 0, 1)) {
            verdict.detail += fmt::format(", lag unknown (nothing replayed yet) and max_lag {:g} s", max_lag);
            verdict.passed = false;
            verdict.reason = HealthReason::Lagging;
            return verdict;
        }
        std::optional<double> lag = parse_seconds(PQgetvalue(result, 0, 1));
        if (!lag)
            return HealthCheckResult::fail(HealthReason::BadReply, "unexpected replay lag in the reply",
                                           BackendRole::Replica);
        if (*lag > max_lag) {
            verdict.detail += fmt::format(", lag {:.1f} s > max_lag {:g} s", *lag, max_lag);
            verdict.passed = false;
            verdict.reason = HealthReason::Lagging;
        } else {
            verdict.detail += fmt::format(", lag {:.1f} s", *lag);
        }
        return verdict;
    }

    // Bytes this connection has received so far, as the kernel counts them.
    bool over_limit() const
    {
        tcp_info info{};
        socklen_t length = sizeof info;
        if (::getsockopt(PQsocket(conn_.get()), IPPROTO_TCP, TCP_INFO, &info, &length) != 0)
            return false;  // not TCP (cannot happen: host is an IP address)
        return info.tcpi_bytes_received > kMaxReceived;
    }

    static HealthCheckResult too_much()
    {
        return HealthCheckResult::fail(HealthReason::BadReply,
                                       fmt::format("reply too large: more than {} KiB", kMaxReceived / 1024));
    }

    void finish(HealthCheckResult result)
    {
        io_.stop();
        HealthCheckDone done = std::move(done_);
        done(std::move(result));  // last action: the prober may destroy us now
    }

    EventLoop& loop_;
    HealthCheckConfig::Role role_;
    Duration max_lag_;
    Connection conn_;  // declared before io_: the watcher stops before PQfinish closes the socket
    IoWatcher io_;
    HealthCheckDone done_;
    int socket_ = -1;  // the socket io_ watches and whose buffer is set
    bool logged_in_ = false;
    bool flushing_ = false;                    // the query is not all sent yet
    std::optional<HealthCheckResult> verdict_;  // from the first result; later ones are drained
};

} // namespace

std::unique_ptr<HealthCheck> start_postgres_check(EventLoop& loop, const HealthCheckConfig& config,
                                                  const SocketAddress& target, HealthCheckDone done)
{
    const std::string ip = target.ip_string();
    const std::string port = std::to_string(target.port());
    const std::string database = config.database.empty() ? std::string("postgres") : config.database;
    // hostaddr: no name lookup. gssencmode disable: probing for a Kerberos
    // credential cache can block. No connect_timeout: the prober owns the
    // deadline and cancels by destroying the check.
    std::vector<const char*> keys{"host", "hostaddr", "port", "dbname", "application_name", "gssencmode"};
    std::vector<const char*> values{ip.c_str(), ip.c_str(), port.c_str(), database.c_str(), "sluice-health-check",
                                    "disable"};
    auto add = [&](const char* key, const std::string& value) {
        if (!value.empty()) {
            keys.push_back(key);
            values.push_back(value.c_str());
        }
    };
    add("user", config.user);
    add("password", config.password);
    add("sslmode", config.sslmode);
    keys.push_back(nullptr);
    values.push_back(nullptr);

    Connection conn(PQconnectStartParams(keys.data(), values.data(), 0));
    if (!conn) {
        done(HealthCheckResult::from_error(SysError::NoBuffers));
        return nullptr;
    }
    PQsetNoticeProcessor(conn.get(), ignore_notice, nullptr);
    if (PQstatus(conn.get()) == CONNECTION_BAD) {
        done(classify(PQerrorMessage(conn.get())));
        return nullptr;
    }
    return std::make_unique<PostgresCheck>(loop, config, std::move(conn), std::move(done));
}

} // namespace sluice
