#include "sluice/admin.h"

#include "sluice/http_request.h"
#include "sluice/log.h"
#include "sluice/service_health.h"
#include "sluice/socket.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <pthread.h>
#include <fmt/format.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace sluice {

// ---- the server -----------------------------------------------------------------

struct AdminServer::Connection {
    Connection(AdminServer& server, std::uint64_t id, UniqueFd fd, bool http, double now)
        : server(server), id(id), fd(std::move(fd)), http(http), accepted_at(now), last_active(now)
    {
        io.bind<Connection, &Connection::on_event>(server.loop_, this, this->fd.get());
        io.set_events(EV_READ);
        timer.bind<Connection, &Connection::on_timer>(server.loop_, this);
        timer.start(server.deadline(*this) - now);
    }
    void on_event(int revents) { server.on_connection_event(*this, revents); }
    void on_timer() { server.on_connection_timer(*this); }
    std::size_t unsent() const noexcept { return out.size() - sent; }
    bool idle() const noexcept { return !busy; }

    AdminServer& server;
    std::uint64_t id;
    UniqueFd fd;
    bool http;
    IoWatcher io;
    TimerWatcher timer;         // fires at deadline(), which it re-checks (it only moves later)
    double accepted_at;
    double last_active;         // the latest byte moved either way, or reply completed
    std::string in;
    std::string out;            // replies; out[0, sent) has been written already
    std::size_t sent = 0;
    bool busy = false;          // a reply is being gathered; later lines wait
    bool discarding = false;    // skipping the rest of an over-long line
    bool peer_closed = false;   // EOF read: close once the replies are out
    bool close_after_write = false;
};

namespace {

double timeout_from_env(const char* name, double fallback)
{
    const char* text = std::getenv(name);
    if (!text || !*text)
        return fallback;
    char* end = nullptr;
    double seconds = std::strtod(text, &end);
    return *end == '\0' && seconds > 0 ? seconds : fallback;
}

// Best effort, on a socket about to be closed: one non-blocking send
// (MSG_NOSIGNAL, so a client already gone costs nothing), so the client
// learns why instead of seeing a bare close.
void tell_refused(int fd, bool http, std::string_view why)
{
    std::string text = http ? fmt::format("HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                                          "Content-Length: {}\r\nConnection: close\r\n\r\n{}\n",
                                          why.size() + 1, why)
                            : fmt::format("error: {}\n\n", why);
    (void)write_some(fd, text.data(), text.size());
}

const char* kind_name(bool http) { return http ? "metrics" : "admin socket"; }

// How often a throttled event happened since its previous log line.
std::string times(std::uint64_t n) { return n == 1 ? "1 time" : fmt::format("{} times", n); }

} // namespace

AdminServer::AdminServer(BackendTable& table, const ProcessStats& process, const HealthReports* reports,
                         ReloadRequest reload)
    : table_(table), process_(process), reports_(reports), reload_(std::move(reload)),
      idle_timeout_(timeout_from_env("SLUICE_TEST_ADMIN_IDLE_TIMEOUT", kIdleTimeout)),
      header_timeout_(timeout_from_env("SLUICE_TEST_HTTP_HEADER_TIMEOUT", kHeaderTimeout))
{
}

AdminServer::~AdminServer() { stop(); }

namespace {

// A stale socket file (left by a process that died) is replaced; one that a
// live process answers on is not.
bool take_socket_path(const std::string& path, std::string* error)
{
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0)
        return true;
    if (!S_ISSOCK(st.st_mode)) {
        *error = fmt::format("admin socket {}: the path exists and is not a socket", path);
        return false;
    }
    if (connect_unix(path, SOCK_STREAM)) {
        *error = fmt::format("admin socket {} is in use by a running process", path);
        return false;
    }
    ::unlink(path.c_str());
    return true;
}

} // namespace

bool AdminServer::open(const AdminConfig& config, std::string* error)
{
    if (!config.socket.empty()) {
        const std::string& path = config.socket;
        if (!unix_address(path)) {
            *error = fmt::format("admin socket path {} is too long", path);
            return false;
        }
        if (!take_socket_path(path, error))
            return false;
        Result<UniqueFd> fd = listen_unix(path, 0660, 16);
        if (!fd) {
            *error = fmt::format("admin socket {}: {}", path, std::strerror(fd.raw_errno()));
            return false;
        }
        admin_fd_ = std::move(fd.value());
        socket_path_ = path;
        log::info("admin socket on {}", path);
    }
    if (config.metrics) {
        ListenOptions options;
        options.reuse_port = false;
        options.backlog = 64;
        Result<UniqueFd> fd = open_tcp_listener(*config.metrics, options);
        if (!fd) {
            *error = fmt::format("metrics: cannot listen on {}: {}", config.metrics->to_string(), describe(fd.error()));
            return false;
        }
        metrics_fd_ = std::move(fd.value());
        log::info("metrics at http://{}/metrics", local_address(metrics_fd_.get()).to_string());
    }
    return true;
}

void AdminServer::start(std::shared_ptr<const Runtime> runtime, std::vector<Worker*> workers)
{
    runtime_ = std::move(runtime);
    workers_ = std::move(workers);
    if (!admin_fd_ && !metrics_fd_)
        return;
    reserve_fd_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    accept_resume_.bind<AdminServer, &AdminServer::on_accept_resume>(loop_, this);
    if (admin_fd_) {
        admin_io_.bind<AdminServer, &AdminServer::on_admin_accept>(loop_, this, admin_fd_.get());
        admin_io_.set_events(EV_READ);
    }
    if (metrics_fd_) {
        metrics_io_.bind<AdminServer, &AdminServer::on_metrics_accept>(loop_, this, metrics_fd_.get());
        metrics_io_.set_events(EV_READ);
        dashboard_sample_.bind<AdminServer, &AdminServer::on_dashboard_sample>(loop_, this);
        dashboard_sample_.start(0, 1.0);
    }
    thread_ = std::thread([this] { loop_.run(); });
    ::pthread_setname_np(thread_.native_handle(), "sluice-admin");
}

void AdminServer::note_draining()
{
    if (!thread_.joinable()) {
        draining_ = true;
        return;
    }
    loop_.post([this] { draining_ = true; });
}

void AdminServer::update(std::shared_ptr<const Runtime> runtime)
{
    if (!thread_.joinable()) {
        runtime_ = std::move(runtime);
        return;
    }
    loop_.post([this, runtime = std::move(runtime)]() mutable { runtime_ = std::move(runtime); });
}

void AdminServer::stop()
{
    if (thread_.joinable()) {
        loop_.post([this] {
            admin_io_.stop();
            metrics_io_.stop();
            accept_resume_.stop();
            dashboard_sample_.stop();
            connections_.clear();
            admin_clients_ = http_clients_ = 0;
            loop_.break_loop();
        });
        thread_.join();
    }
    admin_fd_.reset();
    metrics_fd_.reset();
    reserve_fd_.reset();
    if (!socket_path_.empty()) {
        ::unlink(socket_path_.c_str());
        socket_path_.clear();
    }
}

// ---- accepting ------------------------------------------------------------------

void AdminServer::on_admin_accept(int) { accept_from(admin_fd_.get(), false); }
void AdminServer::on_metrics_accept(int) { accept_from(metrics_fd_.get(), true); }

void AdminServer::accept_from(int listen_fd, bool http)
{
    for (int i = 0; i < 16; ++i) {
        Result<UniqueFd> accepted = accept_connection(listen_fd, nullptr);
        if (accepted) {
            admit(std::move(accepted.value()), http);
            continue;
        }
        switch (accepted.error()) {
        case SysError::WouldBlock:
            return;
        case SysError::Interrupted:
            continue;
        case SysError::TooManyFiles:
            if (!at_fd_limit(listen_fd, http))
                return;
            continue;
        default:
            if (accepted.raw_errno() == ECONNABORTED || accepted.raw_errno() == EPROTO)
                continue;  // that client is gone; the next may be fine
            // ENOBUFS, ENOMEM...: the client stays queued and the listener
            // readable, so returning would spin. Try again shortly.
            if (std::uint64_t n = logs_[http].accept_failed.note(monotonic_ms()))
                log::warning("{}: accept failed: {}; pausing {}s ({})", kind_name(http),
                             describe(accepted.error()), kPauseAtFdLimit, times(n));
            pause_accepting();
            return;
        }
    }
}

// At the descriptor limit a pending client stays in the accept queue and the
// listener stays readable (level-triggered), so merely returning would spin.
// Give up the reserve descriptor and accept the client on it (accept4 fails
// with EMFILE before it looks at the queue, so this is also how we learn
// whether anyone waits at all). Then make room by closing the oldest idle
// client (of this kind, else of the other), so an operator still gets in;
// with none idle, tell the newcomer why and close it. Then take the reserve
// back. Returns whether accepting may go on; false when nobody waits, or
// after a pause.
bool AdminServer::at_fd_limit(int listen_fd, bool http)
{
    if (!reserve_fd_.valid()) {
        // Another thread took the descriptor we freed last time.
        reserve_fd_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
        pause_accepting();
        return false;
    }
    reserve_fd_.reset();
    Result<UniqueFd> newcomer = accept_connection(listen_fd, nullptr);
    Connection* victim = nullptr;
    if (newcomer) {
        victim = oldest_idle(http);
        if (!victim)
            victim = oldest_idle(!http);
        if (victim) {
            if (std::uint64_t n = logs_[http].fd_evicted.note(monotonic_ms()))
                log::warning("{}: out of file descriptors; closed the oldest idle client to make room ({})",
                             kind_name(http), times(n));
            close_connection(*victim);
        } else {
            if (std::uint64_t n = logs_[http].fd_refused.note(monotonic_ms()))
                log::warning("{}: out of file descriptors, no client idle; refused a new one ({})",
                             kind_name(http), times(n));
            tell_refused(newcomer.value().get(), http, "sluice is out of file descriptors, try again later");
            newcomer.value().reset();
        }
    }
    reserve_fd_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (victim)
        admit(std::move(newcomer.value()), http);
    if (!newcomer && newcomer.error() == SysError::WouldBlock && reserve_fd_.valid())
        return false;  // nobody waits
    // The freed descriptor was not enough (it was above the limit, or another
    // thread took it), or the reserve is gone now: wait rather than spin.
    if ((!newcomer && newcomer.error() != SysError::Interrupted) || !reserve_fd_.valid()) {
        pause_accepting();
        return false;
    }
    return true;
}

void AdminServer::pause_accepting()
{
    admin_io_.set_events(0);
    metrics_io_.set_events(0);
    accept_resume_.start(kPauseAtFdLimit);
}

void AdminServer::on_accept_resume()
{
    if (!reserve_fd_.valid())
        reserve_fd_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (admin_fd_)
        admin_io_.set_events(EV_READ);
    if (metrics_fd_)
        metrics_io_.set_events(EV_READ);
}

// A full cap makes room by closing the oldest idle client of that kind; with
// every one of them running a command, the newcomer is refused instead.
void AdminServer::admit(UniqueFd fd, bool http)
{
    std::size_t& count = http ? http_clients_ : admin_clients_;
    const std::size_t cap = http ? kMaxHttpClients : kMaxAdminClients;
    if (count >= cap) {
        Connection* victim = oldest_idle(http);
        if (!victim) {
            if (std::uint64_t n = logs_[http].full_refused.note(monotonic_ms()))
                log::warning("{}: {} clients, the limit, none idle; refused a new one ({})", kind_name(http),
                             cap, times(n));
            tell_refused(fd.get(), http, fmt::format("too many {} clients, try again later", kind_name(http)));
            return;
        }
        if (std::uint64_t n = logs_[http].full_evicted.note(monotonic_ms()))
            log::warning("{}: {} clients, the limit; closed the oldest idle one ({})", kind_name(http), cap,
                         times(n));
        close_connection(*victim);
    }
    ++count;
    const std::uint64_t id = next_id_++;
    connections_.emplace(id, std::make_unique<Connection>(*this, id, std::move(fd), http, loop_.now()));
}

AdminServer::Connection* AdminServer::oldest_idle(bool http)
{
    Connection* oldest = nullptr;
    for (auto& [id, c] : connections_)  // ascending id: the earlier of a tie wins
        if (c->http == http && c->idle() && (!oldest || c->last_active < oldest->last_active))
            oldest = c.get();
    return oldest;
}

// ---- one connection ---------------------------------------------------------------

double AdminServer::deadline(const Connection& c) const
{
    if (c.http && !c.close_after_write)
        return c.accepted_at + header_timeout_;
    return c.last_active + idle_timeout_;
}

void AdminServer::on_connection_timer(Connection& c)
{
    const double now = loop_.now();
    if (c.busy)
        c.last_active = now;  // a command still running is not idleness
    const double due = deadline(c);
    if (now < due) {
        c.timer.start(due - now);
        return;
    }
    if (std::uint64_t n = logs_[c.http].timed_out.note(monotonic_ms())) {
        if (c.http && !c.close_after_write)
            log::info("metrics: closed a client: no complete request within {}s ({})", header_timeout_,
                      times(n));
        else
            log::info("{}: closed a client: {} for {}s ({})", kind_name(c.http),
                      c.http ? "response stalled" : "idle", idle_timeout_, times(n));
    }
    close_connection(c);
}

void AdminServer::on_connection_event(Connection& c, int revents)
{
    if (revents & EV_READ) {
        char buffer[4096];
        while (true) {
            IoResult r = read_some(c.fd.get(), buffer, sizeof(buffer));
            if (r.would_block())
                break;
            if (r.error == SysError::Interrupted)
                continue;
            if (!r.ok() || r.bytes == 0) {
                c.peer_closed = true;
                break;
            }
            c.in.append(buffer, static_cast<std::size_t>(r.bytes));
            c.last_active = loop_.now();
            if (c.in.size() > kMaxHttpRequest)
                break;  // parse what we have before reading more
        }
    }
    service(c);
}

// Runs the commands that are complete, writes the replies, and repeats while
// writing made room for commands that waited; then decides what to watch.
void AdminServer::service(Connection& c)
{
    while (true) {
        if (c.http)
            process_http(c);
        else
            process_input(c);
        const std::size_t before = c.unsent();
        if (!write_out(c))
            return;  // closed
        const bool waiting_line = c.discarding ? !c.in.empty() : c.in.find('\n') != std::string::npos;
        if (c.http || c.busy || c.unsent() == before || c.unsent() >= kMaxUnsentOutput || !waiting_line)
            break;
    }
    if (c.unsent() == 0 && (c.close_after_write || (c.peer_closed && !c.busy))) {
        close_connection(c);
        return;
    }
    // Stop reading (the kernel's socket buffer then pushes back on the
    // client) while a reply is being gathered and a line's worth waits, and
    // while the client leaves too many reply bytes unread: either way a
    // client cannot make us buffer without bound.
    const bool read_paused = (c.busy && c.in.size() > kMaxLine) || c.unsent() >= kMaxUnsentOutput;
    c.io.set_events((c.peer_closed || c.close_after_write || read_paused ? 0 : EV_READ)
                    | (c.unsent() == 0 ? 0 : EV_WRITE));
}

void AdminServer::process_input(Connection& c)
{
    while (!c.busy && c.unsent() < kMaxUnsentOutput) {
        std::size_t newline = c.in.find('\n');
        if (c.discarding) {
            if (newline == std::string::npos) {
                c.in.clear();
                return;
            }
            c.in.erase(0, newline + 1);
            c.discarding = false;
            continue;
        }
        if (newline == std::string::npos) {
            if (c.in.size() > kMaxLine) {
                c.in.clear();
                c.discarding = true;
                reply(c, fmt::format("error: line too long (limit {} bytes)", kMaxLine));
            }
            return;
        }
        std::string line = c.in.substr(0, newline);
        c.in.erase(0, newline + 1);
        if (line.size() > kMaxLine) {
            reply(c, fmt::format("error: line too long (limit {} bytes)", kMaxLine));
            continue;
        }
        if (line.find_first_not_of(" \t\r") == std::string::npos)
            continue;  // blank lines are ignored
        AdminParseResult parsed = parse_admin_command(line);
        if (!parsed.command) {
            reply(c, "error: " + parsed.error);
            continue;
        }
        execute(c, *parsed.command);
    }
}

StatsSnapshot AdminServer::snapshot() const
{
    std::vector<const BackendCounters*> counters;
    for (const Worker* worker : workers_)
        counters.push_back(&worker->backend_counters());
    StatsSnapshot snap = take_snapshot(*runtime_, table_, process_, monotonic_ms(), counters, reports_);
    for (const Worker* worker : workers_)
        snap.workers.push_back({worker->index(), worker->cpu_seconds(), worker->session_count()});
    return snap;
}

void AdminServer::execute(Connection& c, const AdminCommand& command)
{
    switch (command.kind) {
    case AdminCommand::Kind::Help:
        reply(c, admin_help_text());
        return;
    case AdminCommand::Kind::ShowServers:
        reply(c, render_servers(snapshot(), command.json));
        return;
    case AdminCommand::Kind::ShowStat:
        reply(c, render_stat(snapshot(), command.json));
        return;
    case AdminCommand::Kind::SetState:
    case AdminCommand::Kind::SetWeight: {
        std::string result = set_server(command);
        bool failed = result.rfind("error:", 0) == 0;
        if (command.json)
            result = fmt::format("{{\"ok\":{},\"message\":{}}}", !failed, json_quote(result));
        reply(c, result);
        return;
    }
    case AdminCommand::Kind::ShowSessions: {
        // Workers own their sessions: ask each, on its own thread, and answer
        // when the last one has replied.
        struct Gather {
            std::size_t remaining;
            std::vector<SessionInfo> sessions;
        };
        c.busy = true;
        auto gather = std::make_shared<Gather>(Gather{workers_.size(), {}});
        const std::uint64_t id = c.id;
        const bool json = command.json;
        if (workers_.empty()) {
            c.busy = false;
            reply(c, render_sessions({}, json));
            return;
        }
        for (Worker* worker : workers_) {
            worker->loop().post([this, worker, gather, id, json] {
                std::vector<SessionInfo> rows = worker->describe_sessions();
                loop_.post([this, gather, rows = std::move(rows), id, json]() mutable {
                    std::move(rows.begin(), rows.end(), std::back_inserter(gather->sessions));
                    if (--gather->remaining == 0) {
                        std::sort(gather->sessions.begin(), gather->sessions.end(),
                                  [](const SessionInfo& a, const SessionInfo& b) { return a.age_seconds > b.age_seconds; });
                        reply_to(id, render_sessions(gather->sessions, json));
                    }
                });
            });
        }
        return;
    }
    case AdminCommand::Kind::ShutdownSessions: {
        std::optional<BackendId> id;
        std::string label;
        std::string error = find_backend(command, id, label);
        if (!error.empty()) {
            reply(c, command.json ? fmt::format("{{\"ok\":false,\"message\":{}}}", json_quote(error)) : error);
            return;
        }
        c.busy = true;
        const std::uint64_t conn = c.id;
        const bool json = command.json;
        end_sessions_on_workers(workers_, {*id}, EndCause::AdminShutdown, loop_,
                                [this, conn, json, label](std::size_t ended) {
                                    log::info("{}: {} session{} closed (admin socket)", label, ended,
                                              ended == 1 ? "" : "s");
                                    std::string text = fmt::format("{}: {} session{} closed", label, ended,
                                                                   ended == 1 ? "" : "s");
                                    reply_to(conn, json ? fmt::format("{{\"ok\":true,\"closed\":{},\"message\":{}}}",
                                                                      ended, json_quote(text))
                                                        : text);
                                });
        return;
    }
    case AdminCommand::Kind::Reload: {
        c.busy = true;
        const std::uint64_t id = c.id;
        const bool json = command.json;
        reload_([this, id, json](ReloadOutcome outcome) {
            loop_.post([this, id, json, outcome = std::move(outcome)] {
                std::string body;
                if (json) {
                    std::string errors;
                    for (const auto& e : outcome.errors)
                        errors += (errors.empty() ? "" : ",") + json_quote(e);
                    body = fmt::format("{{\"ok\":{},\"generation\":{},\"errors\":[{}]}}", outcome.ok,
                                       outcome.generation, errors);
                } else if (outcome.ok) {
                    body = fmt::format("reload ok (generation {})", outcome.generation);
                } else {
                    body = fmt::format("error: reload failed, the running configuration stays (generation {})",
                                       outcome.generation);
                    for (const auto& e : outcome.errors)
                        body += "\n" + e;
                }
                reply_to(id, std::move(body));
            });
        });
        return;
    }
    }
}

std::string AdminServer::find_backend(const AdminCommand& command, std::optional<BackendId>& id,
                                      std::string& label) const
{
    const PoolRuntime* pool = runtime_->find_pool(command.pool);
    if (!pool)
        return fmt::format(R"(error: no pool "{}")", command.pool);
    std::optional<SocketAddress> as_address = SocketAddress::parse(command.backend);
    for (std::size_t i = 0; i < pool->backend_ids.size(); ++i) {
        const BackendConfig& backend = pool->config->backends[i];
        if (backend.name != command.backend && !(as_address && backend.address == *as_address))
            continue;
        id = pool->backend_ids[i];
        label = pool->label(*id);
        return {};
    }
    return fmt::format(R"(error: pool "{}" has no backend "{}")", command.pool, command.backend);
}

std::string AdminServer::set_server(const AdminCommand& command, std::string_view via)
{
    std::optional<BackendId> found;
    std::string label;
    if (std::string error = find_backend(command, found, label); !error.empty())
        return error;
    const BackendId id = *found;
    if (command.kind == AdminCommand::Kind::SetState) {
        AdminState before = table_.slot(id).admin.load(std::memory_order_acquire);
        table_.set_admin(id, command.state);
        if (before != command.state)
            log::info("{} admin state {} -> {} ({})", label, to_string(before), to_string(command.state), via);
        return fmt::format("{} state {}", label, to_string(command.state));
    }
    std::uint16_t before = table_.weight(id);
    table_.set_weight(id, static_cast<std::uint16_t>(command.weight));
    if (before != command.weight)
        log::info("{} weight {} -> {} ({})", label, before, command.weight, via);
    return fmt::format("{} weight {}", label, command.weight);
}

void AdminServer::reply(Connection& c, std::string body)
{
    c.out += body;
    c.out += "\n\n";
}

void AdminServer::reply_to(std::uint64_t id, std::string body)
{
    auto it = connections_.find(id);
    if (it == connections_.end())
        return;  // the client left before its answer was ready
    Connection& c = *it->second;
    c.busy = false;
    c.last_active = loop_.now();
    reply(c, std::move(body));
    service(c);  // lines that arrived meanwhile
}

// Writes what the client will take (send with MSG_NOSIGNAL: a client gone
// is an error value, never SIGPIPE). Returns false when it closed the
// connection.
bool AdminServer::write_out(Connection& c)
{
    while (c.unsent() > 0) {
        IoResult w = write_some(c.fd.get(), c.out.data() + c.sent, c.unsent());
        if (w.would_block())
            break;
        if (w.error == SysError::Interrupted)
            continue;
        if (!w.ok()) {
            close_connection(c);
            return false;
        }
        c.sent += static_cast<std::size_t>(w.bytes);
        c.last_active = loop_.now();
    }
    // Drop what was written once it is most of the buffer: amortised O(1)
    // per byte, where erasing each write from the front would be quadratic.
    if (c.sent == c.out.size()) {
        c.out.clear();
        c.sent = 0;
    } else if (c.sent > c.out.size() / 2) {
        c.out.erase(0, c.sent);
        c.sent = 0;
    }
    return true;
}

void AdminServer::close_connection(Connection& c)
{
    --(c.http ? http_clients_ : admin_clients_);
    connections_.erase(c.id);
}

// The request head is parsed by parse_http_request (http_request.h); this
// only chooses the answer. One request per connection, closed after the
// response.
void AdminServer::process_http(Connection& c)
{
    if (c.close_after_write)
        return;
    const HttpRequestParse parsed = parse_http_request(c.in, kMaxHttpRequest);
    if (parsed.status == HttpRequestParse::Status::Incomplete && !c.peer_closed)
        return;  // the head is not complete yet
    std::string_view body;  // a POST's, bounded by kMaxHttpBody
    if (parsed.status == HttpRequestParse::Status::Complete) {
        const std::optional<std::size_t> length = http_content_length(parsed.head.fields);
        const std::size_t wanted = parsed.head.head_size + length.value_or(0);
        if (length && *length <= kMaxHttpBody && c.in.size() < wanted && !c.peer_closed)
            return;  // the body is still arriving (the header timeout bounds the wait)
        body = std::string_view(c.in).substr(parsed.head.head_size, length.value_or(0));
    }
    c.close_after_write = true;
    c.last_active = loop_.now();
    auto respond = [&c](std::string_view status, std::string_view headers, const std::string& body) {
        c.out = fmt::format("HTTP/1.1 {}\r\n{}Content-Length: {}\r\nConnection: close\r\n\r\n{}", status, headers,
                            body.size(), body);
        c.sent = 0;
    };
    constexpr std::string_view kText = "Content-Type: text/plain\r\n";
    switch (parsed.status) {
    case HttpRequestParse::Status::Incomplete:
        respond("400 Bad Request", kText, "bad request: the request head ended early\n");
        return;
    case HttpRequestParse::Status::Bad:
        respond("400 Bad Request", kText, fmt::format("bad request: {}\n", parsed.reason));
        return;
    case HttpRequestParse::Status::Complete:
        break;
    }
    const HttpRequestHead& head = parsed.head;
    if (is_dashboard_route(head.target)) {
        HttpAnswer answer = answer_dashboard(head, body);
        respond(answer.status, answer.headers, answer.body);
        return;
    }
    if (head.method != "GET") {
        respond("405 Method Not Allowed", "Content-Type: text/plain\r\nAllow: GET\r\n", "only GET\n");
        return;
    }
    if (head.target.substr(0, head.target.find('?')) == "/health") {
        ServiceHealth health = check_service_health(*runtime_, table_, monotonic_ms(), draining_);
        respond(health.healthy ? "200 OK" : "503 Service Unavailable", kText, health.body);
        return;
    }
    if (head.target.substr(0, head.target.find('?')) != "/metrics") {
        respond("404 Not Found", kText, "try /metrics\n");
        return;
    }
    respond("200 OK", "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n", format_prometheus(snapshot()));
}

} // namespace sluice
