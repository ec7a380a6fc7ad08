// The socket-based health-check kinds (tcp with send/expect, http) against
// scripted loopback servers, driven on an EventLoop of the test's own: the
// exact verdict, its reason and its words; and that a check that never gets
// an answer, once destroyed (as the prober does at its deadline), closes its
// socket. The shared helpers (judge_role, printable_excerpt) too.
#include "sluice/event_loop.h"
#include "sluice/health_check.h"

#include "harness.h"

#include <catch2/catch.hpp>

#include <atomic>
#include <mutex>
#include <string>
#include <sys/socket.h>

using namespace sluice;
using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

// Runs one check on a fresh loop until it gives its verdict or `limit` passes.
struct CheckRun {
    EventLoop loop;
    TimerWatcher limit;
    std::unique_ptr<HealthCheck> check;
    bool done = false;
    HealthCheckResult result;

    void on_limit() { loop.break_loop(); }

    // Returns with `done` set, or not when `limit` passed first; `check` stays
    // alive (a caller may destroy it to cancel).
    void run(const HealthCheckConfig& config, const SocketAddress& target, double limit_seconds = 5.0)
    {
        limit.bind<CheckRun, &CheckRun::on_limit>(loop, this);
        limit.start(limit_seconds);
        check = start_health_check(loop, config, target, [this](HealthCheckResult r) {
            done = true;
            result = std::move(r);
            loop.break_loop();
        });
        if (!done)
            loop.run();
        limit.stop();
    }
};

SocketAddress at(std::uint16_t port) { return *SocketAddress::from_ip("127.0.0.1", port); }

HealthCheckConfig tcp_check(std::string send, std::string expect)
{
    HealthCheckConfig config;
    config.kind = HealthCheckConfig::Kind::TcpConnect;
    config.send = std::move(send);
    config.expect = std::move(expect);
    return config;
}

HealthCheckConfig http_check(std::string path = "/", int status = 200, std::string expect = "")
{
    HealthCheckConfig config;
    config.kind = HealthCheckConfig::Kind::Http;
    config.path = std::move(path);
    config.expect_status = status;
    config.expect = std::move(expect);
    return config;
}

// Sends everything it can, ignoring a peer that left (MSG_NOSIGNAL).
void send_quietly(int fd, std::string_view data)
{
    while (!data.empty()) {
        ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
        if (n <= 0)
            return;
        data.remove_prefix(static_cast<std::size_t>(n));
    }
}

// Reads until the blank line that ends an HTTP request's head.
std::string read_request(int fd)
{
    std::string request;
    char buffer[1024];
    while (request.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
        if (n <= 0)
            break;
        request.append(buffer, static_cast<std::size_t>(n));
    }
    return request;
}

// An HTTP server that answers every request with `reply` and records the
// last request it read.
struct HttpServer {
    std::mutex mutex;
    std::string last_request;
    std::string reply;
    ScriptedServer server{[this](int fd) {
        std::string request = read_request(fd);
        {
            std::lock_guard lock(mutex);
            last_request = request;
        }
        send_quietly(fd, reply);
    }};
    explicit HttpServer(std::string answer) : reply(std::move(answer)) {}
    std::string request()
    {
        std::lock_guard lock(mutex);
        return last_request;
    }
};

} // namespace

TEST_CASE("a tcp check without expect passes once connected and fails on a refused port")
{
    ScriptedServer server([](int fd) { read_request(fd); });
    CheckRun run;
    run.run(tcp_check("", ""), at(server.port()));
    REQUIRE(run.done);
    CHECK(run.result.passed);
    CHECK(run.result.detail == "connected");

    CheckRun refused;
    refused.run(tcp_check("", ""), at(unused_port()));
    REQUIRE(refused.done);
    CHECK_FALSE(refused.result.passed);
    CHECK(refused.result.reason == HealthReason::ConnectionRefused);
    CHECK_FALSE(refused.result.local_shortage);
}

TEST_CASE("a tcp check sends send and compares the reply's start with expect")
{
    auto answering = [](std::string reply) {
        return [reply](int fd) {
            char buffer[64];
            if (::recv(fd, buffer, sizeof buffer, 0) > 0)
                send_quietly(fd, reply);
        };
    };
    ScriptedServer pong(answering("+PONG\r\n"));
    CheckRun pass;
    pass.run(tcp_check("PING\r\n", "+PONG"), at(pong.port()));
    REQUIRE(pass.done);
    CHECK(pass.result.passed);
    CHECK(pass.result.detail == "reply matches expect");

    ScriptedServer loading(answering("-LOADING Redis is loading the dataset in memory\r\n"));
    CheckRun mismatch;
    mismatch.run(tcp_check("PING\r\n", "+PONG"), at(loading.port()));
    REQUIRE(mismatch.done);
    CHECK_FALSE(mismatch.result.passed);
    CHECK(mismatch.result.reason == HealthReason::BadReply);
    CHECK(mismatch.result.detail == R"(expect mismatch: got "-LOADING Redis is loading the dataset in memory\r\n")");

    ScriptedServer closing([](int fd) {
        // Reads the request, then closes without a word (closing with the
        // request unread would send a reset instead of a FIN).
        char buffer[64];
        (void)::recv(fd, buffer, sizeof buffer, 0);
    });
    CheckRun closed;
    closed.run(tcp_check("PING\r\n", "+PONG"), at(closing.port()));
    REQUIRE(closed.done);
    CHECK_FALSE(closed.result.passed);
    CHECK(closed.result.detail == "closed without a reply");

    // A server-speaks-first banner: expect alone, nothing sent.
    ScriptedServer banner([](int fd) { send_quietly(fd, "SSH-2.0-OpenSSH_9.2\r\n"); });
    CheckRun greeted;
    greeted.run(tcp_check("", "SSH-2.0-"), at(banner.port()));
    REQUIRE(greeted.done);
    CHECK(greeted.result.passed);
}

TEST_CASE("an http check sends GET path and judges the status, then the body")
{
    HttpServer ok("HTTP/1.1 200 OK\r\nContent-Length: 18\r\n\r\n{\"role\":\"leader\"}\n");
    HealthCheckConfig config = http_check("/primary", 200, "leader");
    config.host = "db.internal";
    CheckRun pass;
    pass.run(config, at(ok.server.port()));
    REQUIRE(pass.done);
    CHECK(pass.result.passed);
    CHECK(pass.result.detail == R"(HTTP 200 OK, body contains "leader")");
    CHECK(ok.request().starts_with("GET /primary HTTP/1.0\r\nHost: db.internal\r\n"));
    CHECK(ok.request().find("Connection: close\r\n") != std::string::npos);

    CheckRun missing;
    missing.run(http_check("/", 200, "replica"), at(ok.server.port()));
    REQUIRE(missing.done);
    CHECK_FALSE(missing.result.passed);
    CHECK(missing.result.reason == HealthReason::BadReply);
    CHECK(missing.result.detail == R"(HTTP 200 OK, body does not contain "replica")");

    HttpServer unavailable("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
    CheckRun down;
    down.run(http_check(), at(unavailable.server.port()));
    REQUIRE(down.done);
    CHECK_FALSE(down.result.passed);
    CHECK(down.result.reason == HealthReason::HttpStatus);
    CHECK(down.result.detail == "HTTP 503 Service Unavailable");
    // The Host header defaults to the backend's address.
    CHECK(unavailable.request().find("Host: 127.0.0.1:" + std::to_string(unavailable.server.port()) + "\r\n")
          != std::string::npos);

    CheckRun wanted_503;
    wanted_503.run(http_check("/", 503), at(unavailable.server.port()));
    REQUIRE(wanted_503.done);
    CHECK(wanted_503.result.passed);
}

TEST_CASE("an http check fails cleanly on a server that does not speak HTTP")
{
    HttpServer ssh("SSH-2.0-OpenSSH_9.2\r\n");
    CheckRun banner;
    banner.run(http_check(), at(ssh.server.port()));
    REQUIRE(banner.done);
    CHECK(banner.result.reason == HealthReason::BadReply);
    CHECK(banner.result.detail == R"(not an HTTP reply: got "SSH-2.0-OpenSSH_9.2")");

    HttpServer noise(std::string("\x16\x03\x01\x00\xff\x01\x00", 7));  // binary, no line end, then close
    CheckRun binary;
    binary.run(http_check(), at(noise.server.port()));
    REQUIRE(binary.done);
    CHECK(binary.result.reason == HealthReason::BadReply);
    CHECK(binary.result.detail == R"(not an HTTP reply: got "\x16\x03\x01\x00\xff\x01\x00")");

    HttpServer silent("");
    CheckRun closed;
    closed.run(http_check(), at(silent.server.port()));
    REQUIRE(closed.done);
    CHECK(closed.result.detail == "closed without a reply");
}

TEST_CASE("a check reads at most 64 KiB of a huge reply and decides on that")
{
    // 100 MB of body that never contains the word: the check must stop
    // reading and fail, not buffer it all or wait for the end.
    ScriptedServer flood([](int fd) {
        read_request(fd);
        send_quietly(fd, "HTTP/1.1 200 OK\r\n\r\n");
        std::string chunk(1 << 20, 'x');
        for (int i = 0; i < 100; ++i)
            send_quietly(fd, chunk);
    });
    CheckRun run;
    run.run(http_check("/", 200, "needle"), at(flood.port()));
    REQUIRE(run.done);
    CHECK_FALSE(run.result.passed);
    CHECK(run.result.detail == R"(HTTP 200 OK, body does not contain "needle")");
    run.check.reset();  // closes the socket: the server's sends fail and it ends
}

TEST_CASE("a check that gets no answer gives no verdict, and destroying it closes its socket")
{
    std::atomic<bool> peer_closed{false};
    ScriptedServer mute([&peer_closed](int fd) {
        set_receive_timeout(fd, 20s);
        read_request(fd);  // reads the request, answers nothing
        char byte;
        if (::recv(fd, &byte, 1, 0) == 0)
            peer_closed = true;  // our side closed
    });
    CheckRun run;
    run.run(http_check(), at(mute.port()), 0.3);
    CHECK_FALSE(run.done);
    REQUIRE(run.check);
    run.check.reset();  // what the prober does at its deadline
    CHECK(wait_until([&] { return peer_closed.load(); }, 10s));
}

TEST_CASE("judge_role passes the wanted role or any, and names what the server said")
{
    using Role = HealthCheckConfig::Role;
    HealthCheckResult primary = judge_role(Role::Primary, BackendRole::Primary, "pg_is_in_recovery = false");
    CHECK(primary.passed);
    CHECK(primary.detail == "primary (pg_is_in_recovery = false)");
    CHECK(primary.role == BackendRole::Primary);

    HealthCheckResult wrong = judge_role(Role::Primary, BackendRole::Replica, "pg_is_in_recovery = true");
    CHECK_FALSE(wrong.passed);
    CHECK(wrong.reason == HealthReason::WrongRole);
    CHECK(wrong.detail == "replica (pg_is_in_recovery = true)");
    CHECK(wrong.role == BackendRole::Replica);

    CHECK(judge_role(Role::Any, BackendRole::Replica, "role:slave").passed);
    CHECK(judge_role(Role::Replica, BackendRole::Replica, "role:slave").passed);
    CHECK_FALSE(judge_role(Role::Replica, BackendRole::Primary, "role:master").passed);
    CHECK_FALSE(judge_role(Role::Primary, BackendRole::Unknown, "no answer").passed);
}

TEST_CASE("printable_excerpt escapes what a log line must not carry and cuts long text")
{
    CHECK(printable_excerpt("role:master") == "role:master");
    CHECK(printable_excerpt("a\r\nb\t\"c\"\\") == R"(a\r\nb\x09\"c\"\\)");
    CHECK(printable_excerpt("caf\xc3\xa9") == R"(caf\xc3\xa9)");
    CHECK(printable_excerpt(std::string(300, 'y'), 10) == "yyyyyyyyyy...");
    CHECK(printable_excerpt("short", 10) == "short");
}
