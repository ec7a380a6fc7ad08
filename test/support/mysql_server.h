// A real MariaDB server (mariadbd) for tests: its own data directory in a
// temporary folder, TCP on 127.0.0.1 at a free port, a unix socket for the
// test's own administration through the `mariadb` client (root, no password).
//
// The system tables are created once per test process (mariadb-install-db
// takes seconds) and copied for each server. Main thread only: the helpers
// fail the test (REQUIRE) on error.
#pragma once

#include "harness.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sluice::test {

class MysqlServer {
public:
    // True when mariadbd, mariadb-install-db and the mariadb client exist;
    // tests SKIP otherwise.
    static bool available();
    // The reason available() is false, for the SKIP message.
    static std::string missing();

    // Starts the server and waits until it accepts queries. `extra_options`:
    // more mariadbd options (e.g. "--proxy-protocol-networks=127.0.0.1/32").
    explicit MysqlServer(const std::vector<std::string>& extra_options = {});
    ~MysqlServer();  // SIGKILL: the data is thrown away with the folder
    MysqlServer(const MysqlServer&) = delete;
    MysqlServer& operator=(const MysqlServer&) = delete;

    std::uint16_t port() const noexcept { return port_; }
    std::string address() const;  // "127.0.0.1:PORT"
    const std::string& dir() const noexcept { return dir_.path(); }

    // Runs SQL as root over the unix socket; returns its output (tab-separated
    // rows without column names). Fails the test if the client fails.
    std::string sql(const std::string& statements);
    // A global status counter (SHOW GLOBAL STATUS), e.g. "Aborted_connects".
    long status(const std::string& name);
    // CREATE USER name@'%' IDENTIFIED BY password, with the grants a
    // monitoring user needs for max_lag (SLAVE MONITOR).
    void create_user(const std::string& name, const std::string& password);
    Process& process() noexcept { return *process_; }

private:
    TempDir dir_;
    std::string socket_;
    std::uint16_t port_ = 0;
    std::unique_ptr<Process> process_;
};

} // namespace sluice::test
