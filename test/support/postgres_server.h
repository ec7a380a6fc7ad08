// Real PostgreSQL servers for tests: a primary (initdb, SCRAM logins over
// TCP on loopback) and streaming replicas of it (pg_basebackup -R), each in
// its own temporary folder on a free port, run as the `postgres` user
// (PostgreSQL refuses to run as root). The server's log (stderr) is captured
// line by line by the Process it runs in.
//
// Main thread only (the helpers fail the test with REQUIRE).
#pragma once

#include "harness.h"

#include <memory>
#include <optional>
#include <string>

namespace sluice::test {

class PostgresServer {
public:
    // Where the server binaries are (SLUICE_PG_BIN, default
    // /usr/lib/postgresql/15/bin); empty when they or the postgres user are
    // absent, and then `why_unavailable` says what is missing.
    static std::string bin_dir(std::string* why_unavailable = nullptr);

    struct Options {
        // Extra postgresql.conf lines (e.g. "log_min_messages = debug1").
        std::string extra_conf;
    };

    // A primary with superuser `postgres` (trust over its Unix socket only)
    // and a login role `monitor` / `secret`, SCRAM over TCP from 127.0.0.1.
    static std::unique_ptr<PostgresServer> start_primary(const Options& options = {});
    // A hot-standby replica streaming from `primary`; returns once it is in
    // recovery and its WAL receiver is streaming.
    static std::unique_ptr<PostgresServer> start_replica(const PostgresServer& primary, const Options& options = {});

    ~PostgresServer();  // fast shutdown (SIGINT), then SIGKILL; removes the folder
    PostgresServer(const PostgresServer&) = delete;
    PostgresServer& operator=(const PostgresServer&) = delete;

    std::uint16_t port() const noexcept { return port_; }
    std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
    const std::string& dir() const noexcept { return dir_.path(); }
    Process& process() noexcept { return *process_; }

    // Runs `sql` with psql as the superuser over the Unix socket; returns the
    // unaligned, tuples-only output without the trailing newline. Fails the
    // test when psql fails.
    std::string query(const std::string& sql);
    // pg_ctl promote, then waits until pg_is_in_recovery() is false.
    void promote();
    // SIGKILL the postmaster, as a crash would; its backends exit on their own.
    void kill();
    // Sends `signal` to the postmaster and every process it started (its
    // backends): SIGSTOP freezes the server as a hung host would, its TCP
    // connections staying open; SIGCONT thaws it.
    void signal_all(int signal);
    bool running() { return process_ && process_->running(); }

private:
    PostgresServer() = default;
    void start_postmaster(const Options& options);

    TempDir dir_;
    std::string data_;  // dir_/data
    std::uint16_t port_ = 0;
    std::unique_ptr<Process> process_;
};

// The postgres user's command line for `program` in the server's bin dir.
std::vector<std::string> as_postgres_user(const std::string& program, const std::vector<std::string>& args);

} // namespace sluice::test
