#include "redis_server.h"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <sys/socket.h>
#include <unistd.h>

namespace sluice::test {

namespace {

// Reads RESP replies from a blocking socket.
class ReplyReader {
public:
    explicit ReplyReader(int fd) : fd_(fd) {}

    std::string reply()
    {
        std::string line = read_line();
        if (line.empty())
            return "(no reply)";
        switch (line[0]) {
        case '+':
        case '-':
        case ':': return line;
        case '$': {
            long length = std::strtol(line.c_str() + 1, nullptr, 10);
            if (length < 0)
                return "(nil)";
            std::string body = read_exact(static_cast<std::size_t>(length) + 2);
            return body.substr(0, static_cast<std::size_t>(length));
        }
        case '*': {
            long count = std::strtol(line.c_str() + 1, nullptr, 10);
            std::string joined;
            for (long i = 0; i < count; ++i)
                joined += (i ? "\n" : "") + reply();
            return joined;
        }
        default: return "(bad reply) " + line;
        }
    }

private:
    std::string read_line()
    {
        for (;;) {
            std::size_t end = buffer_.find("\r\n");
            if (end != std::string::npos) {
                std::string line = buffer_.substr(0, end);
                buffer_.erase(0, end + 2);
                return line;
            }
            if (!fill())
                return {};
        }
    }

    std::string read_exact(std::size_t length)
    {
        while (buffer_.size() < length)
            if (!fill())
                break;
        std::string out = buffer_.substr(0, length);
        buffer_.erase(0, std::min(length, buffer_.size()));
        return out;
    }

    bool fill()
    {
        char chunk[4096];
        ssize_t got = ::recv(fd_, chunk, sizeof chunk, 0);
        if (got <= 0)
            return false;
        buffer_.append(chunk, static_cast<std::size_t>(got));
        return true;
    }

    int fd_;
    std::string buffer_;
};

} // namespace

std::string redis_command_bytes(const std::vector<std::string>& args)
{
    std::string out = "*" + std::to_string(args.size()) + "\r\n";
    for (const auto& arg : args)
        out += "$" + std::to_string(arg.size()) + "\r\n" + arg + "\r\n";
    return out;
}

RedisOptions redis_master(std::string password)
{
    RedisOptions options;
    options.password = std::move(password);
    return options;
}

RedisOptions redis_replica(std::string password, std::uint16_t master_port)
{
    RedisOptions options = redis_master(std::move(password));
    options.replica_of = master_port;
    return options;
}

namespace {

std::optional<std::uint16_t> ask_port(int fd, const std::string& password, bool quit)
{
    set_receive_timeout(fd, 5s);
    std::string request = redis_command_bytes({"AUTH", password}) + redis_command_bytes({"CONFIG", "GET", "port"});
    if (quit)
        request += redis_command_bytes({"QUIT"});
    if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size()))
        return std::nullopt;
    ReplyReader reader(fd);
    if (reader.reply() != "+OK")
        return std::nullopt;
    std::string reply = reader.reply();  // "port\nNNNN"
    if (!reply.starts_with("port\n"))
        return std::nullopt;
    if (quit)
        reader.reply();
    return static_cast<std::uint16_t>(std::strtoul(reply.c_str() + 5, nullptr, 10));
}

} // namespace

std::optional<std::uint16_t> redis_port_behind(std::uint16_t port, const std::string& password)
{
    Fd fd(connect_tcp(port));
    return ask_port(fd, password, true);
}

Fd open_redis_session(std::uint16_t port, const std::string& password, std::uint16_t* behind)
{
    Fd fd(connect_tcp(port));
    *behind = ask_port(fd, password, false).value_or(0);
    return fd;
}

std::string RedisServer::binary()
{
    const char* configured = std::getenv("REDIS_SERVER_BIN");
    return configured ? configured : "/usr/bin/redis-server";
}

bool RedisServer::available() { return ::access(binary().c_str(), X_OK) == 0; }

RedisServer::RedisServer(RedisOptions options) : options_(std::move(options))
{
    port_ = options_.port ? *options_.port : unused_port();
    std::vector<std::string> args = {
        "--port", std::to_string(port_), "--bind", options_.bind, "--dir", dir_.path(),
        "--save", "", "--appendonly", "no", "--protected-mode", "no", "--daemonize", "no",
        "--logfile", "", "--loglevel", "verbose",
        // A replica syncs at once (no 5 s wait for more replicas to batch).
        "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0",
    };
    if (!options_.password.empty()) {
        args.insert(args.end(), {"--requirepass", options_.password, "--masterauth", options_.password});
    }
    if (options_.replica_of)
        args.insert(args.end(), {"--replicaof", "127.0.0.1", std::to_string(*options_.replica_of)});
    args.insert(args.end(), options_.extra_args.begin(), options_.extra_args.end());
    process_ = std::make_unique<Process>(binary(), args);
    auto ready = process_->wait_for_line("Ready to accept connections", 10s);
    INFO(process_->output());
    REQUIRE(ready);
    REQUIRE(wait_until([&] { return command({"PING"}) == "+PONG"; }, 10s));
    if (options_.replica_of)
        REQUIRE(wait_link_up());
}

RedisServer::~RedisServer() = default;  // Process: SIGKILL and reap; TempDir: removed

std::string RedisServer::address() const { return "127.0.0.1:" + std::to_string(port_); }

std::string RedisServer::command(const std::vector<std::string>& args)
{
    Fd fd(connect_tcp(port_));
    set_receive_timeout(fd, 5s);
    std::string request;
    if (!options_.password.empty())
        request += redis_command_bytes({"AUTH", options_.password});
    request += redis_command_bytes(args) + redis_command_bytes({"QUIT"});
    send_all(fd, request);
    ReplyReader reader(fd);
    if (!options_.password.empty()) {
        std::string auth = reader.reply();
        if (auth != "+OK")
            return auth;
    }
    std::string reply = reader.reply();
    reader.reply();  // QUIT's +OK
    return reply;
}

std::string RedisServer::info_field(const std::string& section, const std::string& key)
{
    std::string info = command({"INFO", section});
    std::string prefix = key + ":";
    std::size_t at = info.find("\r\n" + prefix);
    if (at == std::string::npos) {
        if (!info.starts_with(prefix))
            return {};
        at = 0;
    } else {
        at += 2;
    }
    std::size_t end = info.find("\r\n", at);
    return info.substr(at + prefix.size(), end == std::string::npos ? std::string::npos : end - at - prefix.size());
}

void RedisServer::replicate(std::uint16_t master_port)
{
    REQUIRE(command({"REPLICAOF", "127.0.0.1", std::to_string(master_port)}).starts_with("+OK"));
}

void RedisServer::promote() { REQUIRE(command({"REPLICAOF", "NO", "ONE"}) == "+OK"); }

bool RedisServer::wait_link_up(std::chrono::milliseconds timeout)
{
    return wait_until([&] { return info_field("replication", "master_link_status") == "up"; }, timeout);
}

} // namespace sluice::test
