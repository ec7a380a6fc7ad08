#include "postgres_server.h"

#include <catch2/catch.hpp>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <pwd.h>
#include <unistd.h>

namespace sluice::test {

namespace {

struct PostgresUser {
    uid_t uid;
    gid_t gid;
};

std::optional<PostgresUser> postgres_user()
{
    const passwd* entry = ::getpwnam("postgres");
    if (!entry)
        return std::nullopt;
    return PostgresUser{entry->pw_uid, entry->pw_gid};
}

// Runs one command to its end; fails the test with its output unless it exits 0.
std::string run(const std::vector<std::string>& command, std::chrono::milliseconds timeout = 60s)
{
    Process process(command.front(), {command.begin() + 1, command.end()});
    auto status = process.wait_exit(timeout);
    INFO(command[5] << " output:\n" << process.output());
    REQUIRE(status == 0);
    std::string out = process.stdout_text();
    while (!out.empty() && out.back() == '\n')
        out.pop_back();
    return out;
}

// The folder belongs to the postgres user, who runs everything in it.
void give_to_postgres(const std::string& path)
{
    auto user = postgres_user();
    REQUIRE(user);
    for (const auto& entry : std::filesystem::recursive_directory_iterator(path))
        REQUIRE(::chown(entry.path().c_str(), user->uid, user->gid) == 0);
    REQUIRE(::chown(path.c_str(), user->uid, user->gid) == 0);
}

void append(const std::string& file, const std::string& text)
{
    std::ofstream out(file, std::ios::app);
    out << text;
    REQUIRE(out.good());
}

} // namespace

std::string PostgresServer::bin_dir(std::string* why_unavailable)
{
    const char* configured = std::getenv("SLUICE_PG_BIN");
    std::string dir = configured ? configured : "/usr/lib/postgresql/15/bin";
    std::string why;
    if (::access((dir + "/postgres").c_str(), X_OK) != 0)
        why = dir + "/postgres is absent (install postgresql or set SLUICE_PG_BIN)";
    else if (!postgres_user())
        why = "there is no postgres user to run the server as";
    if (why_unavailable)
        *why_unavailable = why;
    return why.empty() ? dir : std::string();
}

std::vector<std::string> as_postgres_user(const std::string& program, const std::vector<std::string>& args)
{
    std::vector<std::string> command{"/usr/bin/setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups",
                                     "--", PostgresServer::bin_dir() + "/" + program};
    command.insert(command.end(), args.begin(), args.end());
    return command;
}

std::unique_ptr<PostgresServer> PostgresServer::start_primary(const Options& options)
{
    REQUIRE(!bin_dir().empty());
    std::unique_ptr<PostgresServer> server(new PostgresServer);
    server->data_ = server->dir() + "/data";
    give_to_postgres(server->dir());
    run(as_postgres_user("initdb", {"-D", server->data_, "-U", "postgres", "-E", "UTF8", "--locale=C",
                                    "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync",
                                    "--no-instructions"}));
    // Replication over the Unix socket is trusted by initdb's pg_hba.conf
    // (auth-local); TCP from loopback needs SCRAM.
    append(server->data_ + "/postgresql.conf",
           "listen_addresses = '127.0.0.1'\n"
           "password_encryption = 'scram-sha-256'\n"
           "wal_level = replica\nmax_wal_senders = 5\nhot_standby = on\n"
           "fsync = off\nsynchronous_commit = off\nshared_buffers = 16MB\nmax_connections = 60\n"
           "log_line_prefix = '%m [%p] '\n");
    server->start_postmaster(options);
    server->query("CREATE ROLE monitor LOGIN PASSWORD 'secret'");
    return server;
}

std::unique_ptr<PostgresServer> PostgresServer::start_replica(const PostgresServer& primary, const Options& options)
{
    std::unique_ptr<PostgresServer> server(new PostgresServer);
    server->data_ = server->dir() + "/data";
    give_to_postgres(server->dir());
    run(as_postgres_user("pg_basebackup", {"-h", primary.dir(), "-p", std::to_string(primary.port()), "-U",
                                           "postgres", "-D", server->data_, "-R", "-X", "stream", "-c", "fast",
                                           "--no-sync"}));
    server->start_postmaster(options);
    REQUIRE(wait_until([&] { return server->query("SELECT status FROM pg_stat_wal_receiver") == "streaming"; },
                       30s));
    return server;
}

void PostgresServer::start_postmaster(const Options& options)
{
    port_ = unused_port();
    // Later lines win: a replica's copy of its primary's settings is overridden.
    append(data_ + "/postgresql.conf", "port = " + std::to_string(port_) + "\nunix_socket_directories = '"
                                           + dir() + "'\n" + options.extra_conf + "\n");
    auto command = as_postgres_user("postgres", {"-D", data_});
    process_ = std::make_unique<Process>(command.front(), std::vector<std::string>(command.begin() + 1, command.end()));
    auto ready = process_->wait_for_line("database system is ready to accept", 60s);
    INFO(process_->output());
    REQUIRE(ready);
}

PostgresServer::~PostgresServer()
{
    if (process_ && process_->running()) {
        signal_all(SIGCONT);            // if a test froze it
        process_->send_signal(SIGINT);  // fast shutdown
        process_->wait_exit(10s);
    }
    process_.reset();  // SIGKILL if still running
}

std::string PostgresServer::query(const std::string& sql)
{
    return run(as_postgres_user("psql", {"-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h", dir(), "-p",
                                         std::to_string(port_), "-U", "postgres", "-d", "postgres", "-c", sql}));
}

void PostgresServer::promote()
{
    run(as_postgres_user("pg_ctl", {"promote", "-w", "-D", data_}));
    REQUIRE(wait_until([&] { return query("SELECT pg_is_in_recovery()") == "f"; }, 30s));
}

void PostgresServer::signal_all(int signal)
{
    // Children first: once the postmaster is gone they belong to init.
    const pid_t postmaster = process_->pid();
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
        std::ifstream stat(entry.path() / "stat");
        std::string line;
        if (!std::getline(stat, line))
            continue;
        // "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses.
        auto close = line.rfind(')');
        if (close == std::string::npos)
            continue;
        char state = 0;
        long ppid = 0;
        if (std::sscanf(line.c_str() + close + 1, " %c %ld", &state, &ppid) == 2 && ppid == postmaster)
            ::kill(static_cast<pid_t>(std::stol(entry.path().filename().string())), signal);
    }
    ::kill(postmaster, signal);
}

void PostgresServer::kill()
{
    process_->send_signal(SIGKILL);
    REQUIRE(process_->wait_exit(10s));
}

} // namespace sluice::test
