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
// Metrics: HTTP/1.x GET /metrics answers the Prometheus text (metrics.h).
#pragma once

#include "sluice/json.h"

#include "sluice/backend_table.h"
#include "sluice/event_loop.h"
#include "sluice/fd.h"
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

struct AdminCommand {
    enum class Kind : std::uint8_t { Help, ShowServers, ShowStat, ShowSessions, SetState, SetWeight, Reload };
    Kind kind = Kind::Help;
    bool json = false;
    std::string pool;      // set server: POOL of POOL/BACKEND
    std::string backend;   // set server: BACKEND (a name or an address)
    AdminState state = AdminState::Ready;
    int weight = 0;
};

struct AdminParseResult {
    std::optional<AdminCommand> command;
    std::string error;  // set when command is empty: the text after "error: "
};

// Parses one command line (without its newline). Pure.
AdminParseResult parse_admin_command(std::string_view line);

// Replies, without the terminating empty line. Pure.
std::string admin_help_text();
std::string render_servers(const StatsSnapshot& snapshot, bool json);
std::string render_stat(const StatsSnapshot& snapshot, bool json);
std::string render_sessions(const std::vector<SessionInfo>& sessions, bool json);

// The outcome of a reload, as the control thread reports it.
struct ReloadOutcome {
    bool ok = false;
    std::uint64_t generation = 0;
    std::vector<std::string> errors;  // "FILE:LINE:COL: message" or another reason
};

class AdminServer {
public:
    static constexpr std::size_t kMaxLine = 4096;
    static constexpr std::size_t kMaxHttpRequest = 8192;
    static constexpr std::size_t kMaxConnections = 64;

    // Called on the admin thread for `reload`; must eventually call `reply`
    // (from any thread) exactly once.
    using ReloadRequest = std::function<void(std::function<void(ReloadOutcome)> reply)>;

    AdminServer(BackendTable& table, const ProcessStats& process, ReloadRequest reload);
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
    // Control thread: closes everything, unlinks the socket, joins. Idempotent.
    void stop();

    bool metrics_enabled() const noexcept { return metrics_fd_.valid(); }

private:
    struct Connection;

    // --- admin thread only ---
    void on_admin_accept(int revents);
    void on_metrics_accept(int revents);
    void accept_from(int listen_fd, bool http);
    void on_connection_event(Connection& connection, int revents);
    void process_input(Connection& connection);
    void process_http(Connection& connection);
    void execute(Connection& connection, const AdminCommand& command);
    void reply(Connection& connection, std::string body);
    void reply_to(std::uint64_t id, std::string body);
    void flush(Connection& connection);
    void close_connection(Connection& connection);
    std::string set_server(const AdminCommand& command);
    StatsSnapshot snapshot() const;

    BackendTable& table_;
    const ProcessStats& process_;
    ReloadRequest reload_;
    EventLoop loop_;
    UniqueFd admin_fd_;
    UniqueFd metrics_fd_;
    std::string socket_path_;  // unlinked at stop
    IoWatcher admin_io_;
    IoWatcher metrics_io_;
    std::shared_ptr<const Runtime> runtime_;
    std::vector<Worker*> workers_;
    std::map<std::uint64_t, std::unique_ptr<Connection>> connections_;
    std::uint64_t next_id_ = 1;
    std::thread thread_;
};

} // namespace sluice
