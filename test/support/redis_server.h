// A real redis-server for tests: its own temporary directory, a free
// loopback port, optionally a password and a master to replicate; and a
// small blocking client to drive it (REPLICAOF, INFO, CONFIG SET).
//
// Main thread only (it fails the test on errors). Tests SKIP when
// redis-server is not installed (RedisServer::available()).
#pragma once

#include "harness.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sluice::test {

struct RedisOptions {
    std::string password;                  // requirepass and masterauth ("" = none)
    std::optional<std::uint16_t> replica_of;  // 127.0.0.1:PORT to replicate
    std::string bind = "127.0.0.1";        // "0.0.0.0" serves every 127.x.y.z
    std::optional<std::uint16_t> port;     // default: a free one
    std::vector<std::string> extra_args;   // more "--key value" pairs
};

// Options for a master with `password`, and for its replica.
RedisOptions redis_master(std::string password);
RedisOptions redis_replica(std::string password, std::uint16_t master_port);

class RedisServer {
public:
    static std::string binary();            // /usr/bin/redis-server or $REDIS_SERVER_BIN
    static bool available();

    // Starts it and waits until it answers PING (a replica: also until its
    // link to the master is up).
    explicit RedisServer(RedisOptions options = {});
    ~RedisServer();
    RedisServer(const RedisServer&) = delete;
    RedisServer& operator=(const RedisServer&) = delete;

    std::uint16_t port() const noexcept { return port_; }
    std::string address() const;            // "127.0.0.1:PORT"
    const std::string& password() const noexcept { return options_.password; }
    Process& process() noexcept { return *process_; }

    // One command on a fresh connection (AUTH first when there is a
    // password), QUIT after it. The reply in RESP's own words: "+OK",
    // "-ERR ...", ":1", a bulk string's text, "(nil)", an array's elements
    // one per line.
    std::string command(const std::vector<std::string>& args);
    // A field of `INFO section` ("" when absent).
    std::string info_field(const std::string& section, const std::string& key);

    // REPLICAOF 127.0.0.1 PORT / REPLICAOF NO ONE.
    void replicate(std::uint16_t master_port);
    void promote();
    // Waits until INFO replication says master_link_status:up.
    bool wait_link_up(std::chrono::milliseconds timeout = 20s);

    // Log lines so far containing `needle` (the server logs to stdout).
    std::size_t count_log_lines(const std::string& needle) { return process_->count_lines(needle); }

private:
    RedisOptions options_;
    TempDir dir_;
    std::uint16_t port_ = 0;
    std::unique_ptr<Process> process_;
};

// Through whatever listens on 127.0.0.1:`port` (sluice, or a server): logs
// in as the default user with `password`, asks CONFIG GET port and QUITs.
// The port of the redis-server that answered; nullopt if none did.
std::optional<std::uint16_t> redis_port_behind(std::uint16_t port, const std::string& password);

// A session held open through 127.0.0.1:`port`: logged in, PING answered.
// `behind` receives the answering server's port (0 if the login failed).
Fd open_redis_session(std::uint16_t port, const std::string& password, std::uint16_t* behind);

// The Redis wire form of one command: an array of bulk strings.
std::string redis_command_bytes(const std::vector<std::string>& args);

} // namespace sluice::test
