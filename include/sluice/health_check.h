// HealthCheck: one probe of one backend, of any kind (tcp, udp, http, redis,
// postgres, mysql), run on the health prober's event loop.
//
// The prober (health_prober.h) decides when to probe and what a result means
// for the backend (rise/fall, the table, the log); a check only answers "did
// this backend pass, and if not, why, in words its operator understands".
// Each kind lives in its own file (health_check_*.cpp) and is started through
// start_health_check(), which picks the kind from the config.
//
// Contract every kind keeps:
//   - It never blocks the loop: sockets are non-blocking and watched on
//     `loop`; the database libraries are driven through their asynchronous
//     APIs (libpq PQconnectStart/PQconnectPoll, hiredis' libev adapter,
//     MariaDB Connector/C's *_start/*_cont).
//   - `done` is called at most once, with the verdict. It may be called from
//     inside start_health_check() (a socket could not be opened); then the
//     returned pointer may be null. Otherwise it is called later from a
//     callback on `loop`, as the check's last action: the prober may destroy
//     the check from inside `done` (destruction is deferred by the prober to
//     the next loop turn, so a library callback still on the stack is safe).
//   - Destroying a check at any moment cancels it without blocking: its
//     socket is closed, nothing is sent that could wait (the prober destroys
//     a check that overran `timeout`). A check that completes leaves the
//     server cleanly: PostgreSQL Terminate, MySQL COM_QUIT, Redis QUIT, a
//     plain close for tcp and http.
//   - It judges the role itself when `config.role` is not Any, and reports
//     the role the server claimed (Unknown when the kind has no notion of one
//     or the server did not say).
#pragma once

#include "sluice/addr.h"
#include "sluice/backend_table.h"
#include "sluice/config.h"

#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace sluice {

class EventLoop;

// What a database server said it is.
enum class BackendRole : std::uint8_t { Unknown, Primary, Replica };
std::string_view to_string(BackendRole role) noexcept;

struct HealthCheckResult {
    bool passed = false;
    // Classifies a failure for the table (`show servers` "why" column, the
    // metrics); None when passed.
    HealthReason reason = HealthReason::Other;
    // The verdict in words a DBA understands, pass or fail: "primary
    // (pg_is_in_recovery = false)", "replica (pg_is_in_recovery = true)",
    // "role:slave, master_link_status:up", "HTTP 503", "authentication failed
    // for user \"monitor\"", "expect mismatch: got \"-LOADING\"",
    // "connection refused". One line, no trailing newline, at most ~200 bytes
    // (cut longer server messages).
    std::string detail;
    BackendRole role = BackendRole::Unknown;
    // The probe could not run for lack of sluice's own resources (descriptors,
    // memory): says nothing about the backend, so the prober ignores it.
    bool local_shortage = false;

    static HealthCheckResult pass(std::string detail = {}, BackendRole role = BackendRole::Unknown)
    {
        return {true, HealthReason::None, std::move(detail), role};
    }
    static HealthCheckResult fail(HealthReason reason, std::string detail, BackendRole role = BackendRole::Unknown)
    {
        return {false, reason, std::move(detail), role};
    }
    // A failed system call: its reason and words; local_shortage for EMFILE,
    // ENOMEM and the like (is_local_resource_error).
    static HealthCheckResult from_error(SysError error);
};

using HealthCheckDone = std::function<void(HealthCheckResult)>;

class HealthCheck {
public:
    virtual ~HealthCheck() = default;
};

// Starts one probe of `config.kind` against `target` (the backend's address,
// with the check's `port` already applied). See the contract above.
std::unique_ptr<HealthCheck> start_health_check(EventLoop& loop, const HealthCheckConfig& config,
                                                const SocketAddress& target, HealthCheckDone done);

// One per kind (health_check_*.cpp); start_health_check() dispatches to them.
std::unique_ptr<HealthCheck> start_tcp_check(EventLoop& loop, const HealthCheckConfig& config,
                                             const SocketAddress& target, HealthCheckDone done);
std::unique_ptr<HealthCheck> start_udp_check(EventLoop& loop, const HealthCheckConfig& config,
                                             const SocketAddress& target, HealthCheckDone done);
std::unique_ptr<HealthCheck> start_http_check(EventLoop& loop, const HealthCheckConfig& config,
                                              const SocketAddress& target, HealthCheckDone done);
std::unique_ptr<HealthCheck> start_redis_check(EventLoop& loop, const HealthCheckConfig& config,
                                               const SocketAddress& target, HealthCheckDone done);
std::unique_ptr<HealthCheck> start_postgres_check(EventLoop& loop, const HealthCheckConfig& config,
                                                  const SocketAddress& target, HealthCheckDone done);
std::unique_ptr<HealthCheck> start_mysql_check(EventLoop& loop, const HealthCheckConfig& config,
                                               const SocketAddress& target, HealthCheckDone done);

// Helpers the kinds share.

// The verdict for a server that claimed `claimed` when `wanted` is asked for;
// `evidence` is what it said, e.g. "pg_is_in_recovery = true". Passes for
// Role::Any (any claimed role) and for a match; fails with WrongRole and
// "replica (pg_is_in_recovery = true)" otherwise.
HealthCheckResult judge_role(HealthCheckConfig::Role wanted, BackendRole claimed, std::string_view evidence);

// A server's text made safe for one log line: control bytes and invalid
// UTF-8 escaped or replaced, cut to `max` bytes with "..." appended.
std::string printable_excerpt(std::string_view text, std::size_t max = 160);

} // namespace sluice
