// The admin socket (sluicectl) and the /metrics endpoint, on a thread and an
// event loop of their own: nothing here ever runs on, or blocks, a worker.
//
// Protocol: one command per line (at most kMaxLine bytes). Every reply is one
// or more lines followed by an empty line; a reply whose first line starts
// with "error:" is a failure. A "json" word first (or last, on a show
// command) asks for one line of JSON instead of text. Commands:
//   help
//   show servers | show stat | show sessions
//   set server POOL/BACKEND state ready|drain|maint
//   set server POOL/BACKEND weight N          (0..256; 0 takes no new sessions)
//   reload
// A bad line gets an error reply; the connection stays usable.
//
// Metrics: HTTP/1.x GET /metrics answers the Prometheus text (metrics.h); the
// connection closes after the response. The same address serves the
// dashboard (dashboard.h): GET /, GET /api/state, POST /api/servers/....
//
// Nothing a client does can lock an operator out (AdminServer): each kind of
// client has its own cap, an idle client times out, a full cap makes room by
// closing the oldest idle client of that kind, a client that does not read
// its replies stops being read (so it costs at most kMaxUnsentOutput), and at
// the descriptor limit the accept loop neither spins nor leaves clients hanging.
#pragma once

#include "sluice/admin_command.h"
#include "sluice/admin_render.h"
#include "sluice/json.h"

#include "sluice/backend_table.h"
#include "sluice/dashboard.h"
#include "sluice/event_loop.h"
#include "sluice/fd.h"
#include "sluice/health_report.h"
#include "sluice/http_request.h"
#include "sluice/log_throttle.h"
#include "sluice/metrics.h"
#include "sluice/runtime.h"
#include "sluice/stats.h"
#include "sluice/worker.h"

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace sluice {

// The outcome of a reload, as the control thread reports it.
struct ReloadOutcome {
    bool ok = false;
    std::uint64_t generation = 0;
    std::vector<std::string> errors;  // "FILE:LINE:COL: message" or another reason
};

class AdminServer {
public:
    static constexpr std::size_t kMaxLine = 4096;
    static constexpr std::size_t kMaxHttpRequest = 8192;  // the request head: line and header fields
    static constexpr std::size_t kMaxHttpBody = 1024;     // a POST body (dashboard actions are a few bytes)
    // Separate caps, so a flood of one kind never takes the other's slots.
    static constexpr std::size_t kMaxAdminClients = 64;
    static constexpr std::size_t kMaxHttpClients = 64;
    // An admin client that sends no command and reads nothing for this long is
    // closed; one whose command is still running (reload, show sessions) is
    // not idle. Also bounds an HTTP response that makes no progress.
    static constexpr double kIdleTimeout = 60.0;
    // An HTTP request head must be complete this long after the connect
    // (NGINX client_header_timeout), or the connection closes.
    static constexpr double kHeaderTimeout = 5.0;
    // While more than this many reply bytes wait for the client to read them,
    // its further commands are neither read nor run.
    static constexpr std::size_t kMaxUnsentOutput = 256 * 1024;
    // Accepting pauses this long when even the reserve descriptor is gone.
    static constexpr double kPauseAtFdLimit = 0.1;
    // Refusals, evictions and timeouts are logged at most once per interval,
    // with how many happened (log_throttle.h).
    static constexpr std::int64_t kLogIntervalMs = 5000;

    // Called on the admin thread for `reload`; must eventually call `reply`
    // (from any thread) exactly once.
    using ReloadRequest = std::function<void(std::function<void(ReloadOutcome)> reply)>;

    // The environment variables SLUICE_TEST_ADMIN_IDLE_TIMEOUT and
    // SLUICE_TEST_HTTP_HEADER_TIMEOUT (seconds) replace the two timeouts; they
    // exist for the integration tests, not for operators.
    // `reports` (may be null: no checks reported) is the prober's, read for
    // show servers and /metrics.
    AdminServer(BackendTable& table, const ProcessStats& process, const HealthReports* reports, ReloadRequest reload);
    ~AdminServer();  // stop()
    AdminServer(const AdminServer&) = delete;
    AdminServer& operator=(const AdminServer&) = delete;

    // Control thread, before start(): binds the admin socket (mode 0660; a
    // stale socket file is replaced, one a running process answers on is an
    // error) and the metrics listener as `config` says. Logs where.
    bool open(const AdminConfig& config, std::string* error);
    // Control thread: spawns the admin thread (only if something was opened).
    void start(std::shared_ptr<const Runtime> runtime, std::vector<Worker*> workers);
    // Any thread: the generation `show` and /metrics report from now on.
    void update(std::shared_ptr<const Runtime> runtime);
    // Any thread: the server stopped accepting (SIGTERM); GET /health says
    // 503 from now on, so an HA peer takes over before the process is gone.
    void note_draining();
    // Control thread: closes everything, unlinks the socket, joins. Idempotent.
    void stop();

    bool metrics_enabled() const noexcept { return metrics_fd_.valid(); }

private:
    struct Connection;

    // --- admin thread only ---
    void on_admin_accept(int revents);
    void on_metrics_accept(int revents);
    void on_accept_resume();
    void accept_from(int listen_fd, bool http);
    bool at_fd_limit(int listen_fd, bool http);
    void pause_accepting();
    void admit(UniqueFd fd, bool http);
    Connection* oldest_idle(bool http);
    void on_connection_event(Connection& connection, int revents);
    void on_connection_timer(Connection& connection);
    void service(Connection& connection);
    void process_input(Connection& connection);
    void process_http(Connection& connection);
    void execute(Connection& connection, const AdminCommand& command);
    void reply(Connection& connection, std::string body);
    void reply_to(std::uint64_t id, std::string body);
    bool write_out(Connection& connection);
    void close_connection(Connection& connection);
    double deadline(const Connection& connection) const;
    // Finds POOL/BACKEND of `command` in the current generation; returns ""
    // and sets `id` and `label`, or an "error: ..." line.
    std::string find_backend(const AdminCommand& command, std::optional<BackendId>& id, std::string& label) const;
    // `via` names who asked, for the log line ("admin socket", "dashboard").
    std::string set_server(const AdminCommand& command, std::string_view via = "admin socket");
    StatsSnapshot snapshot() const;
    // The dashboard (admin_dashboard.cpp): GET /, GET /api/state and POST
    // /api/servers/POOL/NAME/state, and the once-a-second history sample.
    struct HttpAnswer {
        std::string_view status;
        std::string headers;  // field lines, each ending in CRLF
        std::string body;
    };
    static bool is_dashboard_route(std::string_view target) noexcept;
    HttpAnswer answer_dashboard(const HttpRequestHead& head, std::string_view body);
    void on_dashboard_sample();

    BackendTable& table_;
    const ProcessStats& process_;
    const HealthReports* reports_;
    ReloadRequest reload_;
    double idle_timeout_ = kIdleTimeout;
    double header_timeout_ = kHeaderTimeout;
    EventLoop loop_;
    UniqueFd admin_fd_;
    UniqueFd metrics_fd_;
    std::string socket_path_;  // unlinked at stop
    IoWatcher admin_io_;
    IoWatcher metrics_io_;
    // Given up to accept-and-close one client at the descriptor limit (the
    // muduo Acceptor trick, as TcpListener does); the admin thread's own.
    UniqueFd reserve_fd_;
    TimerWatcher accept_resume_;  // restarts the listeners after a pause
    std::shared_ptr<const Runtime> runtime_;
    bool draining_ = false;  // admin thread; set by note_draining()
    std::vector<Worker*> workers_;
    std::map<std::uint64_t, std::unique_ptr<Connection>> connections_;
    std::size_t admin_clients_ = 0;  // connections_ of each kind
    std::size_t http_clients_ = 0;
    std::uint64_t next_id_ = 1;
    struct KindLogs {
        LogThrottle full_evicted{kLogIntervalMs};  // the cap was full: closed the oldest idle client
        LogThrottle full_refused{kLogIntervalMs};  // the cap was full, none idle: refused the newcomer
        LogThrottle fd_evicted{kLogIntervalMs};    // at the descriptor limit: closed the oldest idle client
        LogThrottle fd_refused{kLogIntervalMs};    // at the descriptor limit, none idle: refused the newcomer
        LogThrottle timed_out{kLogIntervalMs};
        LogThrottle accept_failed{kLogIntervalMs};
    };
    KindLogs logs_[2];  // [0] the admin socket, [1] metrics
    DashboardHistory dashboard_;      // sampled by dashboard_sample_ while metrics is on
    TimerWatcher dashboard_sample_;
    double dashboard_sampled_at_ = 0;  // loop_.now() of the previous sample
    std::thread thread_;
};

} // namespace sluice
