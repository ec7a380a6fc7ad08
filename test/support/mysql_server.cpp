#include "mysql_server.h"

#include <catch2/catch.hpp>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <unistd.h>

namespace sluice::test {

namespace {

constexpr const char* kServer = "/usr/sbin/mariadbd";
constexpr const char* kInstallDb = "/usr/bin/mariadb-install-db";
constexpr const char* kClient = "/usr/bin/mariadb";

// Small and unsafe on a crash on purpose: a test server's data is thrown
// away, and a small InnoDB starts in a fraction of the time.
const std::vector<std::string> kServerOptions = {
    "--innodb-buffer-pool-size=16M",
    "--innodb-log-file-size=4M",
    "--innodb-doublewrite=0",
    "--innodb-flush-log-at-trx-commit=0",
    "--skip-name-resolve",
    "--performance-schema=0",
};

// The system tables, made once per test process and copied for each server.
const std::string& template_datadir()
{
    static std::unique_ptr<TempDir> dir;
    static std::string datadir;
    if (dir)
        return datadir;
    auto made = std::make_unique<TempDir>();
    std::string path = made->path() + "/data";
    std::vector<std::string> args = {"--no-defaults", "--datadir=" + path, "--user=root",
                                     "--auth-root-authentication-method=normal", "--skip-test-db"};
    args.insert(args.end(), kServerOptions.begin(), kServerOptions.end());
    Process install(kInstallDb, args);
    auto status = install.wait_exit(120s);
    INFO(install.output());
    REQUIRE(status == 0);
    dir = std::move(made);
    datadir = path;
    return datadir;
}

} // namespace

bool MysqlServer::available() { return missing().empty(); }

std::string MysqlServer::missing()
{
    for (const char* binary : {kServer, kInstallDb, kClient})
        if (::access(binary, X_OK) != 0)
            return std::string(binary) + " is not installed (scripts/setup installs mariadb-server)";
    return {};
}

MysqlServer::MysqlServer(const std::vector<std::string>& extra_options)
{
    const std::string datadir = dir_.path() + "/data";
    std::filesystem::copy(template_datadir(), datadir, std::filesystem::copy_options::recursive);
    socket_ = dir_.path() + "/mysqld.sock";
    // A free port can be taken between unused_port() and the server's bind:
    // then the server exits and another port is tried.
    for (int attempt = 0; attempt < 3 && !process_; ++attempt) {
        port_ = unused_port();
        std::vector<std::string> args = {"--no-defaults", "--user=root", "--datadir=" + datadir,
                                         "--port=" + std::to_string(port_), "--bind-address=127.0.0.1",
                                         "--socket=" + socket_, "--pid-file=" + dir_.path() + "/mysqld.pid",
                                         "--server-id=" + std::to_string(port_), "--log-bin=" + dir_.path() + "/binlog",
                                         "--max-connect-errors=1000000"};
        args.insert(args.end(), kServerOptions.begin(), kServerOptions.end());
        args.insert(args.end(), extra_options.begin(), extra_options.end());
        auto process = std::make_unique<Process>(kServer, args);
        if (process->wait_for_line("ready for connections", 60s)) {
            process_ = std::move(process);
            break;
        }
        INFO(process->output());
        REQUIRE(!process->running());  // not ready in a minute, yet running: a real failure
    }
    REQUIRE(process_);
}

MysqlServer::~MysqlServer() = default;

std::string MysqlServer::address() const { return "127.0.0.1:" + std::to_string(port_); }

std::string MysqlServer::sql(const std::string& statements)
{
    Process client(kClient, {"--no-defaults", "--user=root", "--socket=" + socket_, "--batch", "--skip-column-names",
                             "--execute=" + statements});
    auto status = client.wait_exit(30s);
    INFO(statements << "\n" << client.output());
    REQUIRE(status == 0);
    return client.stdout_text();
}

long MysqlServer::status(const std::string& name)
{
    std::string row = sql("SHOW GLOBAL STATUS LIKE '" + name + "'");
    auto tab = row.find('\t');
    INFO(row);
    REQUIRE(tab != std::string::npos);
    return std::strtol(row.c_str() + tab + 1, nullptr, 10);
}

void MysqlServer::create_user(const std::string& name, const std::string& password)
{
    sql("CREATE USER '" + name + "'@'%' IDENTIFIED BY '" + password + "'; GRANT SLAVE MONITOR ON *.* TO '" + name
        + "'@'%'");
}

} // namespace sluice::test
