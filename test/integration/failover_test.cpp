// Failover through the real binary, with no database needed: backends whose
// health a test toggles (a tcp check with send/expect), on_down = "close",
// on_up = "close_backup", maint, and the admin command shutdown sessions.
// Each closed session is seen by its client as EOF and logged with its end
// cause; new sessions go where the pool says.
#include "operations_support.h"

#include <catch2/catch.hpp>

#include <atomic>
#include <fstream>
#include <sstream>

using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

// A backend that answers the health probe "HEALTH?\n" with "OK\n" or "NO\n"
// (as the test sets it) and otherwise echoes each chunk prefixed with its
// name, so a client knows who served it.
class ToggledBackend {
public:
    explicit ToggledBackend(std::string name)
        : name_(std::move(name)), server_([this](int fd) { serve(fd); })
    {
    }
    void set_healthy(bool healthy) { healthy_ = healthy; }
    std::string address() const { return server_.address(); }

private:
    void serve(int fd)
    {
        char buffer[4096];
        bool first = true;
        for (;;) {
            ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
            if (n <= 0)
                return;
            std::string chunk(buffer, static_cast<std::size_t>(n));
            if (first && chunk.starts_with("HEALTH?")) {
                std::string verdict = healthy_ ? "OK\n" : "NO\n";
                ::send(fd, verdict.data(), verdict.size(), MSG_NOSIGNAL);
                return;
            }
            first = false;
            std::string reply = name_ + ":" + chunk;
            if (::send(fd, reply.data(), reply.size(), MSG_NOSIGNAL) < 0)
                return;
        }
    }

    std::string name_;
    std::atomic<bool> healthy_{true};
    ScriptedServer server_;
};

// A client session through sluice: says `hello`, returns who answered.
struct Client {
    Fd fd;
    explicit Client(std::uint16_t port) : fd(connect_tcp(port)) { set_receive_timeout(fd, 10s); }
    std::string hello()
    {
        send_all(fd, "hello");
        std::string reply = recv_exact(fd, 7);  // "X:hello"
        return reply.substr(0, reply.find(':'));
    }
    // True once the session was closed by sluice (EOF), within the receive timeout.
    bool closed()
    {
        int error = 0;
        return recv_until_eof(fd, &error).empty() && error == 0;
    }
};

std::vector<Client> open_clients(std::uint16_t port, int count)
{
    std::vector<Client> clients;
    for (int i = 0; i < count; ++i)
        clients.emplace_back(port);
    return clients;
}

std::string read_file(const std::string& path)
{
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

} // namespace

TEST_CASE("on_down = close ends a down backend's sessions, on_up = close_backup moves clients back")
{
    ToggledBackend a("A"), b("B");
    std::string config = ops_config({{"a", a.address()}},
                                    "on_down = \"close\"\non_up = \"close_backup\"\n"
                                    "health = { send = \"HEALTH?\\n\", expect = \"OK\", interval = \"50ms\", "
                                    "timeout = \"1s\", rise = 1, fall = 1 }\nmax_fails = 0",
                                    "workers = 2", "access_log = \"@DIR@/access.log\"");
    // The backup joins the primary's backends array.
    const std::string primary_line = "{ address = \"" + a.address() + "\", name = \"a\" },\n";
    config.replace(config.find(primary_line), primary_line.size(),
                   primary_line + "  { address = \"" + b.address() + "\", name = \"b\", backup = true },\n");
    Sluice sluice(config);
    const std::uint16_t port = sluice.port("front");

    Client on_a(port);
    REQUIRE(on_a.hello() == "A");

    a.set_healthy(false);
    CHECK(on_a.closed());  // sluice closed it: the backend left service
    REQUIRE(sluice.process().wait_for_line(R"(p/a left service (on_down = "close"): 1 session closed)"));
    Client on_b(port);
    CHECK(on_b.hello() == "B");  // the backup serves while the primary is down

    a.set_healthy(true);
    CHECK(on_b.closed());  // the primary is back: the backup's clients move
    REQUIRE(sluice.process().wait_for_line("p/a is back (on_up = \"close_backup\"): the backups': 1 session closed"));
    Client back_on_a(port);
    CHECK(back_on_a.hello() == "A");

    std::string log;
    REQUIRE(wait_until([&] {
        log = read_file(sluice.dir() + "/access.log");
        return log.find("end=primary-up") != std::string::npos;
    }));
    CHECK(log.find("backend=p/a duration_ms=") != std::string::npos);
    CHECK(log.find("end=backend-down") != std::string::npos);
    CHECK(log.find("backend=p/b") != std::string::npos);
}

TEST_CASE("maint takes a backend out of service and closes its sessions with on_down = close")
{
    ToggledBackend a("A"), b("B");
    // One worker: its round robin alternates exactly.
    Sluice sluice(ops_config({{"a", a.address()}, {"b", b.address()}},
                             "on_down = \"close\"\nbalance = \"round_robin\"", "workers = 1"));
    const std::uint16_t port = sluice.port("front");
    std::vector<Client> clients = open_clients(port, 4);
    std::vector<std::string> served;
    for (Client& c : clients)
        served.push_back(c.hello());
    REQUIRE(std::count(served.begin(), served.end(), "A") == 2);

    AdminClient admin(admin_path(sluice));
    CHECK(admin.command("set server p/a state drain") == "p/a state drain");
    // Drain keeps running sessions: A's clients still get answers.
    for (std::size_t i = 0; i < clients.size(); ++i)
        CHECK(clients[i].hello() == served[i]);
    CHECK(admin.command("set server p/a state maint") == "p/a state maint");
    for (std::size_t i = 0; i < clients.size(); ++i) {
        if (served[i] == "A")
            CHECK(clients[i].closed());
        else
            CHECK(clients[i].hello() == "B");
    }
    CHECK(sluice.process().wait_for_line(R"(p/a left service (on_down = "close"): 2 sessions closed)"));
}

TEST_CASE("shutdown sessions closes one backend's sessions on demand and leaves the others")
{
    ToggledBackend a("A"), b("B");
    Sluice sluice(ops_config({{"a", a.address()}, {"b", b.address()}}, "", "workers = 1"));
    const std::uint16_t port = sluice.port("front");
    std::vector<Client> clients = open_clients(port, 4);
    std::vector<std::string> served;
    for (Client& c : clients)
        served.push_back(c.hello());
    REQUIRE(std::count(served.begin(), served.end(), "A") == 2);

    AdminClient admin(admin_path(sluice));
    CHECK(admin.command("shutdown sessions p/a") == "p/a: 2 sessions closed");
    CHECK(admin.command("shutdown sessions p/a") == "p/a: 0 sessions closed");
    CHECK(admin.command("json shutdown sessions p/b") == R"({"ok":true,"closed":2,"message":"p/b: 2 sessions closed"})");
    for (Client& c : clients)
        CHECK(c.closed());
    CHECK(admin.command("shutdown sessions p/zzz") == R"(error: pool "p" has no backend "zzz")");
    CHECK(admin.command("shutdown sessions pz") == R"(error: expected POOL/BACKEND, got "pz")");
    CHECK(admin.command("shutdown") == "error: usage: shutdown sessions POOL/BACKEND");
    // The backends keep their state and take new sessions.
    Client again(port);
    CHECK(!again.hello().empty());
}

TEST_CASE("an http check on a separate port (Patroni's REST API style) follows 200 and 503")
{
    ToggledBackend a("A");
    std::atomic<int> status{200};
    ScriptedServer api([&status](int fd) {
        char buffer[2048];
        std::string request;
        while (request.find("\r\n\r\n") == std::string::npos) {
            ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
            if (n <= 0)
                return;
            request.append(buffer, static_cast<std::size_t>(n));
        }
        const bool primary_asked = request.starts_with("GET /primary HTTP/1.0\r\n");
        const std::string reply = status == 200 && primary_asked
            ? "HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\n{\"role\":\"master\"}"
            : "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n";
        ::send(fd, reply.data(), reply.size(), MSG_NOSIGNAL);
    });
    Sluice sluice(ops_config({{"a", a.address()}},
                             fmt::format("health = {{ protocol = \"http\", port = {}, path = \"/primary\", "
                                         "interval = \"50ms\", timeout = \"1s\", rise = 1, fall = 1 }}",
                                         api.port())));
    AdminClient admin(admin_path(sluice));
    REQUIRE(wait_until([&] {
        return admin.command("show servers").find("http   ") != std::string::npos
            && admin.command("show servers").find("pass: HTTP 200 OK") != std::string::npos;
    }));
    Client first(sluice.port("front"));
    CHECK(first.hello() == "A");

    status = 503;
    REQUIRE(wait_until([&] { return admin.command("show servers").find("fail: HTTP 503 Service Unavailable")
                                    != std::string::npos; }));
    std::string servers = admin.command("show servers");
    INFO(servers);
    CHECK(servers.find("down    http status") != std::string::npos);
    CHECK(sluice.process().wait_for_line("p/a is DOWN (HTTP 503 Service Unavailable, 1/1)"));
    CHECK(http_get(sluice.metrics_port(), "/metrics").find(
              "sluice_backend_check_status{pool=\"p\",backend=\"a\",address=\"" + a.address() + "\",check=\"http\"} 0")
          != std::string::npos);

    status = 200;
    CHECK(sluice.process().wait_for_line("p/a is UP (1/1 checks passed: HTTP 200 OK)"));
    Client again(sluice.port("front"));
    CHECK(again.hello() == "A");
}
