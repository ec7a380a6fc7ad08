// The dashboard on the metrics address, through the real binary: the page,
// /api/state, and the token-guarded actions. (test/browser/dashboard_test.mjs
// drives the page itself in Chromium.)
#include "harness.h"

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <csignal>

using namespace sluice::test;

namespace {

// Two backends in pool "p", checked every 200 ms; `admin_extra` lines go into
// [admin].
std::string dashboard_config(const EchoBackend& a, const EchoBackend& b, const std::string& admin_extra = "")
{
    return fmt::format(R"(
[admin]
socket = ""
metrics = "127.0.0.1:0"
{}
[[listeners]]
name = "front"
listen = "127.0.0.1:0"
pool = "p"

[pools.p]
health = {{ interval = "200ms", timeout = "200ms", rise = 1, fall = 1 }}
backends = [ {{ address = "{}", name = "a" }}, {{ address = "{}", name = "b" }} ]
)",
                       admin_extra, a.address(), b.address());
}

// One request as raw bytes; the whole response, read until the server closes.
std::string http_raw(std::uint16_t port, const std::string& request)
{
    Fd fd(connect_tcp(port));
    set_receive_timeout(fd, 5s);
    send_all(fd, request);
    return recv_until_eof(fd);
}

std::string post_action(std::uint16_t port, const std::string& target, const std::string& body,
                        const std::string& authorization)
{
    std::string head = fmt::format("POST {} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n", target, body.size());
    if (!authorization.empty())
        head += "Authorization: " + authorization + "\r\n";
    return http_raw(port, head + "\r\n" + body);
}

std::string status_line(const std::string& response) { return response.substr(0, response.find("\r\n")); }
std::string body_of(const std::string& response) { return response.substr(response.find("\r\n\r\n") + 4); }

// The "state" and "health" of backend `name` in an /api/state body, as
// "state/health" ("ready/up"); the keys come in a fixed order.
std::string backend_status(const std::string& state, const std::string& name)
{
    const std::size_t at = state.find(fmt::format(R"("pool":"p","name":"{}")", name));
    if (at == std::string::npos)
        return "missing";
    auto value = [&](const std::string& key) {
        const std::size_t start = state.find("\"" + key + "\":\"", at) + key.size() + 4;
        return state.substr(start, state.find('"', start) - start);
    };
    return value("state") + "/" + value("health");
}

} // namespace

TEST_CASE("GET / serves the page and /api/state shows every backend, a stopped one turning down")
{
    EchoBackend a("a"), b("b");
    Sluice sluice(dashboard_config(a, b));
    const std::uint16_t port = sluice.metrics_port();

    const std::string page = http_get(port, "/");
    CHECK(status_line(page) == "HTTP/1.1 200 OK");
    CHECK(page.find("Content-Type: text/html; charset=utf-8\r\n") != std::string::npos);
    CHECK(page.find("Content-Security-Policy: default-src 'none';") != std::string::npos);
    CHECK(page.find("<title>sluice</title>") != std::string::npos);
    CHECK(page.find("/api/state") != std::string::npos);
    // Self-contained: nothing to fetch from elsewhere.
    CHECK(page.find("src=\"http") == std::string::npos);
    CHECK(page.find("href=\"http") == std::string::npos);
    CHECK(page.find("https://") == std::string::npos);

    std::string state = http_get(port, "/api/state");
    CHECK(status_line(state) == "HTTP/1.1 200 OK");
    CHECK(state.find("Content-Type: application/json\r\n") != std::string::npos);
    state = body_of(state);
    CHECK(state.rfind(R"({"version":1,)", 0) == 0);
    CHECK(state.find(R"("actions":false)") != std::string::npos);
    CHECK(state.find(R"("listeners":[{"name":"front","protocol":"tcp")") != std::string::npos);
    CHECK(state.find(R"("pools":[{"name":"p",)") != std::string::npos);
    CHECK(backend_status(state, "a") == "ready/up");
    CHECK(backend_status(state, "b") == "ready/up");

    // Traffic shows in the counters and, within a sample or two, in the rates.
    for (int i = 0; i < 4; ++i) {
        Fd client(connect_tcp(sluice.port("front")));
        send_all(client, "ping");
        CHECK(recv_exact(client, 4) == "ping");
    }
    CHECK(wait_until([&] {
        const std::string s = body_of(http_get(port, "/api/state"));
        return s.find(R"("listeners":[{"name":"front","protocol":"tcp","address":)") != std::string::npos
               && s.find(R"("sessions":4,)") != std::string::npos
               && s.find(R"("total":{"sessions_per_second":0,)") == std::string::npos;
    }, 5s));

    b.stop();
    std::string down;
    CHECK(wait_until([&] {
        down = body_of(http_get(port, "/api/state"));
        return backend_status(down, "b") == "ready/down";
    }, 3s));
    CHECK(backend_status(down, "a") == "ready/up");
    CHECK(down.find(R"("backends_up":1,"backends":2)") != std::string::npos);
    // The change is in the event log once the next sample has seen it.
    CHECK(wait_until([&] {
        return body_of(http_get(port, "/api/state")).find(R"("kind":"down","subject":"p/b","message":"p/b is DOWN: )")
               != std::string::npos;
    }, 3s));
}

TEST_CASE("actions are refused without token_file, and with it need the bearer token")
{
    EchoBackend a("a"), b("b");
    SECTION("no token_file: read-only, even with an Authorization header")
    {
        Sluice sluice(dashboard_config(a, b));
        const std::uint16_t port = sluice.metrics_port();
        const std::string answer = post_action(port, "/api/servers/p/a/state", "state=drain", "Bearer anything");
        CHECK(status_line(answer) == "HTTP/1.1 403 Forbidden");
        CHECK(body_of(answer) == R"({"ok":false,"message":"actions are off: set [admin] token_file to allow them"})"
                                 "\n");
        CHECK(backend_status(body_of(http_get(port, "/api/state")), "a") == "ready/up");
    }
    SECTION("token_file set")
    {
        TempDir dir;
        const std::string token_path = dir.write("token", "let-me-in-0123456789\n");
        Sluice sluice(dashboard_config(a, b, fmt::format("token_file = \"{}\"", token_path)));
        const std::uint16_t port = sluice.metrics_port();
        CHECK(body_of(http_get(port, "/api/state")).find(R"("actions":true)") != std::string::npos);

        const std::string forbidden = "HTTP/1.1 403 Forbidden";
        CHECK(status_line(post_action(port, "/api/servers/p/a/state", "state=drain", "")) == forbidden);
        CHECK(status_line(post_action(port, "/api/servers/p/a/state", "state=drain", "Bearer let-me-in-0123456788"))
              == forbidden);
        CHECK(status_line(post_action(port, "/api/servers/p/a/state", "state=drain", "Bearer let-me-in"))
              == forbidden);
        CHECK(status_line(post_action(port, "/api/servers/p/a/state", "state=drain", "Basic let-me-in-0123456789"))
              == forbidden);
        CHECK(backend_status(body_of(http_get(port, "/api/state")), "a") == "ready/up");

        const std::string bearer = "Bearer let-me-in-0123456789";
        const std::string drained = post_action(port, "/api/servers/p/a/state", "state=drain", bearer);
        CHECK(status_line(drained) == "HTTP/1.1 200 OK");
        CHECK(body_of(drained) == "{\"ok\":true,\"message\":\"p/a state drain\"}\n");
        CHECK(backend_status(body_of(http_get(port, "/api/state")), "a") == "drain/up");
        CHECK(sluice.process().wait_for_line("p/a admin state ready -> drain (dashboard)", 5s));

        const std::string weighted = post_action(port, "/api/servers/p/b/state", "weight=9", bearer);
        CHECK(body_of(weighted) == "{\"ok\":true,\"message\":\"p/b weight 9\"}\n");
        CHECK(body_of(http_get(port, "/api/state")).find(R"("name":"b","address":")" + b.address()
                                                         + R"(","backup":false,"state":"ready","health":"up","why":"-","weight":9,)")
              != std::string::npos);

        const std::vector<std::tuple<std::string, std::string, std::string>> bad{
            {"/api/servers/p/a/state", "state=bogus", "HTTP/1.1 400 Bad Request"},
            {"/api/servers/p/a/state", "weight=257", "HTTP/1.1 400 Bad Request"},
            {"/api/servers/p/a/state", "", "HTTP/1.1 400 Bad Request"},
            {"/api/servers/p/zzz/state", "state=drain", "HTTP/1.1 404 Not Found"},
            {"/api/servers/q/a/state", "state=drain", "HTTP/1.1 404 Not Found"},
            {"/api/servers/p/a", "state=drain", "HTTP/1.1 404 Not Found"},
            {"/api/servers/p/a/state", std::string(2000, 'x'), "HTTP/1.1 413 Content Too Large"},
        };
        for (const auto& [target, body, status] : bad) {
            INFO(target << " " << body.substr(0, 40));
            CHECK(status_line(post_action(port, target, body, bearer)) == status);
        }
        CHECK(status_line(http_get(port, "/api/servers/p/a/state")) == "HTTP/1.1 405 Method Not Allowed");
        CHECK(status_line(http_raw(port, "POST /api/state HTTP/1.1\r\nContent-Length: 0\r\n\r\n"))
              == "HTTP/1.1 405 Method Not Allowed");
        CHECK(status_line(http_raw(port, "POST /api/servers/p/a/state HTTP/1.1\r\nAuthorization: " + bearer
                                             + "\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nstate\r\n0\r\n\r\n"))
              == "HTTP/1.1 411 Length Required");
        // Nothing the refused requests said changed a backend.
        CHECK(backend_status(body_of(http_get(port, "/api/state")), "a") == "drain/up");

        // A body that arrives after the head is waited for.
        Fd slow(connect_tcp(port));
        set_receive_timeout(slow, 5s);
        send_all(slow, "POST /api/servers/p/a/state HTTP/1.1\r\nAuthorization: " + bearer
                           + "\r\nContent-Length: 11\r\n\r\nstate=");
        send_all(slow, "ready");
        CHECK(body_of(recv_until_eof(slow)) == "{\"ok\":true,\"message\":\"p/a state ready\"}\n");
        CHECK(backend_status(body_of(http_get(port, "/api/state")), "a") == "ready/up");
    }
}

TEST_CASE("a reload picks up a new token; a token_file broken at reload keeps the old one")
{
    EchoBackend a("a"), b("b");
    TempDir dir;
    const std::string token_path = dir.write("token", "first-token\n");
    Sluice sluice(dashboard_config(a, b, fmt::format("token_file = \"{}\"", token_path)));
    const std::uint16_t port = sluice.metrics_port();
    auto status_with = [&](const std::string& token) {
        return status_line(post_action(port, "/api/servers/p/a/state", "state=ready", "Bearer " + token));
    };
    CHECK(status_with("first-token") == "HTTP/1.1 200 OK");

    dir.write("token", "second-token\n");
    sluice.process().send_signal(SIGHUP);
    REQUIRE(sluice.process().wait_for_line("reload ok (generation 2)", 10s));
    CHECK(status_with("first-token") == "HTTP/1.1 403 Forbidden");
    CHECK(status_with("second-token") == "HTTP/1.1 200 OK");
    CHECK(wait_until([&] {
        return body_of(http_get(port, "/api/state")).find("\"kind\":\"reload\",\"subject\":\"\",\"message\":\"configuration "
                                                          "reloaded (generation 2)\"")
               != std::string::npos;
    }, 3s));

    dir.write("token", "");
    sluice.process().send_signal(SIGHUP);
    REQUIRE(sluice.process().wait_for_line("reload failed", 10s));
    CHECK(sluice.process().output().find(fmt::format(R"(token_file "{}" is empty, expected a file holding the token)",
                                                     token_path))
          != std::string::npos);
    CHECK(status_with("second-token") == "HTTP/1.1 200 OK");
    CHECK(wait_until([&] {
        return body_of(http_get(port, "/api/state")).find(R"("kind":"reload_failed")") != std::string::npos;
    }, 3s));
}
