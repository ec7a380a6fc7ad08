// Operating a running sluice through the real binary: the admin socket and
// sluicectl, drain/maint/ready, show sessions, /metrics, the access log.
#include "operations_support.h"

#include <catch2/catch.hpp>

#include <atomic>
#include <fstream>
#include <map>
#include <sstream>
#include <sys/stat.h>

using namespace sluice::test;

TEST_CASE("admin commands answer, and bad input gets an error while the connection keeps working")
{
    EchoBackend a("a"), b("b");
    Sluice sluice(ops_config({{"a", a.address()}, {"b", b.address()}}));
    struct stat st {};
    REQUIRE(::stat(admin_path(sluice).c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0660);

    AdminClient admin(admin_path(sluice));
    CHECK(admin.command("help").find("set server POOL/BACKEND state ready|drain|maint") != std::string::npos);
    std::string servers = admin.command("show servers");
    CHECK(servers.rfind("pool  backend  address", 0) == 0);
    CHECK(servers.find("p     a        " + a.address() + "  ready  up") != std::string::npos);

    const std::vector<std::pair<std::string, std::string>> bad{
        {"foo", R"(error: unknown command "foo", try "help")"},
        {"show nothing", R"(error: unknown command "show nothing", try "help")"},
        {"show servers now", R"(error: unexpected "now" after "show servers")"},
        {"set server p/a state bogus", R"(error: unknown state "bogus", expected ready, drain or maint)"},
        {"set server p/a weight 999", R"(error: weight "999" is not an integer from 0 to 256)"},
        {"set server p/a weight x1", R"(error: weight "x1" is not an integer from 0 to 256)"},
        {"set server pa state ready", R"(error: expected POOL/BACKEND, got "pa")"},
        {"set server p/a", "error: usage: set server POOL/BACKEND state ready|drain|maint, or set server "
                           "POOL/BACKEND weight N"},
        {"set server p/zzz state drain", R"(error: pool "p" has no backend "zzz")"},
        {"set server q/a state drain", R"(error: no pool "q")"},
        {std::string(5000, 'x'), "error: line too long (limit 4096 bytes)"},
    };
    for (const auto& [line, expected] : bad) {
        INFO(line.substr(0, 60));
        CHECK(admin.command(line) == expected);
        CHECK(admin.command("show servers") == servers);  // still answering, nothing changed
    }
    // An over-long line that arrives in pieces is refused once, then skipped.
    send_all(admin.fd(), std::string(3000, 'y'));
    CHECK(admin.command(std::string(3000, 'y')) == "error: line too long (limit 4096 bytes)");
    CHECK(admin.command("show servers") == servers);

    CHECK(admin.command("set server p/a weight 7") == "p/a weight 7");
    CHECK(admin.command(fmt::format("set server p/{} state drain", b.address())) == "p/b state drain");
    CHECK(admin.command("json show servers").rfind(R"({"servers":[{"pool":"p","backend":"a")", 0) == 0);
    std::string after = admin.command("show servers");
    CHECK(after.find("p     a        " + a.address() + "  ready  up      -    0       0      0         7")
          != std::string::npos);
    CHECK(after.find("p     b        " + b.address() + "  drain") != std::string::npos);

    // sluice kept proxying through all of it.
    Fd client(connect_tcp(sluice.port("front")));
    send_all(client, std::string("still here\n"));
    CHECK(recv_line(client) == "still here");
}

TEST_CASE("sluicectl exits 0 on success, 1 on an error reply, 2 when it cannot connect")
{
    EchoBackend a("a");
    Sluice sluice(ops_config({{"a", a.address()}}));
    const std::string ctl = binary_from_env("SLUICECTL_BIN");
    {
        Process p(ctl, {"-s", admin_path(sluice), "show", "servers"});
        CHECK(p.wait_exit() == 0);
        CHECK(p.stdout_text().rfind("pool  backend", 0) == 0);
    }
    {
        Process p(ctl, {"-s", admin_path(sluice), "--json", "show", "stat"});
        CHECK(p.wait_exit() == 0);
        CHECK(p.stdout_text().rfind(R"({"uptime_seconds":)", 0) == 0);
    }
    {
        Process p(ctl, {"-s", admin_path(sluice), "set", "server", "p/nope", "state", "drain"});
        CHECK(p.wait_exit() == 1);
        CHECK(p.stdout_text() == "error: pool \"p\" has no backend \"nope\"\n");
    }
    {
        Process p(ctl, {"-s", sluice.dir() + "/missing.sock", "show", "servers"});
        CHECK(p.wait_exit() == 2);
        CHECK(p.stderr_text().find(sluice.dir() + "/missing.sock") != std::string::npos);
    }
    {
        Process p(ctl, {});
        CHECK(p.wait_exit() == 2);
    }
}

TEST_CASE("a drained backend takes no new sessions while its open session continues; ready brings it back")
{
    EchoBackend a("a", "whoami"), b("b", "whoami");
    Sluice sluice(ops_config({{"a", a.address()}, {"b", b.address()}}, "", "workers = 1"));
    AdminClient admin(admin_path(sluice));

    Fd held(connect_tcp(sluice.port("front")));
    const std::string first = recv_line(held);
    REQUIRE((first == "a" || first == "b"));
    const std::string other = first == "a" ? "b" : "a";

    CHECK(admin.command("set server p/" + first + " state drain") == "p/" + first + " state drain");
    for (int i = 0; i < 10; ++i) {
        Fd client(connect_tcp(sluice.port("front")));
        CHECK(recv_line(client) == other);
    }
    send_all(held, std::string("still flowing\n"));
    CHECK(recv_line(held) == "still flowing");
    std::string servers = admin.command("json show servers");
    CHECK(servers.find(R"("backend":")" + first + R"(","address":")" + (first == "a" ? a.address() : b.address())
                       + R"(","backup":false,"state":"drain","health":"up","why":"-","active":1,"total":1)")
          != std::string::npos);

    CHECK(admin.command("set server p/" + first + " state ready") == "p/" + first + " state ready");
    std::map<std::string, int> hits;
    for (int i = 0; i < 10; ++i) {
        Fd client(connect_tcp(sluice.port("front")));
        ++hits[recv_line(client)];
    }
    CHECK(hits["a"] == 5);
    CHECK(hits["b"] == 5);
    CHECK(sluice.process().count_lines("p/" + first + " admin state ready -> drain") == 1);
}

TEST_CASE("maint takes a backend out of rotation and pauses its health checks until ready")
{
    EchoBackend a("a", "whoami"), b("b", "whoami");
    Sluice sluice(ops_config({{"a", a.address()}, {"b", b.address()}},
                             "health = { interval = \"100ms\", timeout = \"100ms\", rise = 1, fall = 1 }",
                             "workers = 1"));
    AdminClient admin(admin_path(sluice));
    CHECK(admin.command("set server p/a state maint") == "p/a state maint");
    for (int i = 0; i < 6; ++i) {
        Fd client(connect_tcp(sluice.port("front")));
        CHECK(recv_line(client) == "b");
    }
    // While a is in maint nobody probes it: stopping it changes nothing.
    a.stop();
    auto until = Clock::now() + 800ms;  // eight probe intervals
    while (Clock::now() < until) {
        CHECK(admin.command("show servers").find("p     a        " + a.address() + "  maint  up") != std::string::npos);
        std::this_thread::sleep_for(100ms);
    }
    CHECK(sluice.process().count_lines("p/a is DOWN") == 0);
    // Back to ready: probes resume and find it gone.
    CHECK(admin.command("set server p/a state ready") == "p/a state ready");
    CHECK(sluice.process().wait_for_line("p/a is DOWN (connection refused", 5s));
    CHECK(admin.command("show servers").find("p     a        " + a.address() + "  ready  down    connection refused")
          != std::string::npos);
}

TEST_CASE("show sessions lists open sessions with their backend, bytes and half-close state")
{
    std::atomic<bool> release{false};
    ScriptedServer backend([&](int fd) {
        std::string got = recv_until_eof(fd);  // until the client's FIN
        send_all(fd, got);
        wait_until([&] { return release.load(); }, 20s);
    });
    Sluice sluice(ops_config({{"s", backend.address()}}));
    AdminClient admin(admin_path(sluice));
    Fd client(connect_tcp(sluice.port("front")));
    send_all(client, std::string("12345"));
    ::shutdown(client, SHUT_WR);
    CHECK(recv_exact(client, 5) == "12345");
    std::string sessions;
    CHECK(wait_until([&] {
        sessions = admin.command("show sessions");
        return sessions.find("client-half-closed") != std::string::npos;
    }));
    INFO(sessions);
    CHECK(sessions.rfind("worker  listener  client", 0) == 0);
    CHECK(sessions.find("front") != std::string::npos);
    CHECK(sessions.find("p/s") != std::string::npos);
    CHECK(sessions.find("  5         5          client-half-closed") != std::string::npos);
    CHECK(admin.command("json show sessions").find(R"("backend":"p/s")") != std::string::npos);
    // show stat counts the session on one of the two workers.
    auto workers_with = [&](int sessions) {
        std::string stat = admin.command("json show stat");
        std::string needle = fmt::format(R"("sessions":{}}})", sessions);  // only worker rows end there
        int found = 0;
        for (std::size_t at = stat.find(needle); at != std::string::npos; at = stat.find(needle, at + 1))
            ++found;
        return found;
    };
    CHECK(admin.command("json show stat").find(R"("workers":[{"worker":0,"cpu_seconds":)") != std::string::npos);
    CHECK(admin.command("show stat").find("\nworker  cpu_seconds  sessions\n") != std::string::npos);
    CHECK(workers_with(1) == 1);
    CHECK(workers_with(0) == 1);
    release = true;
    CHECK(recv_until_eof(client).empty());
    CHECK(wait_until([&] { return admin.command("json show sessions") == R"({"sessions":[]})"; }));
    CHECK(wait_until([&] { return workers_with(0) == 2; }));
}

TEST_CASE("a metrics scrape has HELP and TYPE for every family and exact counts after 5 sessions")
{
    EchoBackend a("a");
    Sluice sluice(ops_config({{"a", a.address()}}));
    for (int i = 0; i < 5; ++i) {
        Fd client(connect_tcp(sluice.port("front")));
        send_all(client, std::string("hello\n"));
        CHECK(recv_line(client) == "hello");
        ::shutdown(client, SHUT_WR);
        CHECK(recv_until_eof(client).empty());
    }
    const std::string labels = "{pool=\"p\",backend=\"a\",address=\"" + a.address() + "\"}";
    const std::string listener = "{listener=\"front\",protocol=\"tcp\"}";
    std::string text;
    // Bytes per listener are added as sessions close: wait for the fifth.
    REQUIRE(wait_until([&] {
        text = http_get(sluice.metrics_port(), "/metrics");
        return metric_value(text, "sluice_listener_bytes_in_total" + listener) == 30;
    }));
    INFO(text);
    CHECK(text.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
    CHECK(text.find("Content-Type: text/plain; version=0.0.4") != std::string::npos);
    for (const char* family :
         {"sluice_uptime_seconds gauge", "sluice_config_generation gauge", "sluice_reloads_total counter",
          "sluice_listener_accepted_total counter", "sluice_listener_rejected_total counter",
          "sluice_listener_bytes_in_total counter", "sluice_listener_bytes_out_total counter",
          "sluice_pool_connect_failures_total counter", "sluice_pool_retries_total counter",
          "sluice_pool_rejected_total counter", "sluice_backend_up gauge", "sluice_backend_state gauge",
          "sluice_backend_weight gauge", "sluice_backend_active_sessions gauge", "sluice_backend_sessions_total counter",
          "sluice_backend_connect_failures_total counter", "sluice_backend_bytes_in_total counter",
          "sluice_backend_bytes_out_total counter", "sluice_worker_cpu_seconds_total counter",
          "sluice_worker_sessions gauge"}) {
        std::string name = std::string(family).substr(0, std::string(family).find(' '));
        CHECK(text.find("\n# HELP " + name + " ") != std::string::npos);
        CHECK(text.find("\n# TYPE " + std::string(family) + "\n") != std::string::npos);
    }
    CHECK(metric_value(text, "sluice_config_generation") == 1);
    CHECK(metric_value(text, "sluice_reloads_total{result=\"ok\"}") == 0);
    CHECK(metric_value(text, "sluice_listener_accepted_total" + listener) == 5);
    CHECK(metric_value(text, "sluice_listener_rejected_total" + listener) == 0);
    CHECK(metric_value(text, "sluice_listener_bytes_out_total" + listener) == 30);
    CHECK(metric_value(text, "sluice_backend_up" + labels) == 1);
    CHECK(metric_value(text, "sluice_backend_state{pool=\"p\",backend=\"a\",address=\"" + a.address()
                                 + "\",state=\"ready\"}") == 1);
    CHECK(metric_value(text, "sluice_backend_active_sessions" + labels) == 0);
    CHECK(metric_value(text, "sluice_backend_sessions_total" + labels) == 5);
    CHECK(metric_value(text, "sluice_backend_connect_failures_total" + labels) == 0);
    CHECK(metric_value(text, "sluice_backend_bytes_in_total" + labels) == 30);
    CHECK(metric_value(text, "sluice_backend_bytes_out_total" + labels) == 30);
    CHECK(metric_value(text, "sluice_pool_rejected_total{pool=\"p\"}") == 0);
    // One sample per worker (ops_config runs two), none for a third.
    CHECK(metric_value(text, "sluice_worker_cpu_seconds_total{worker=\"0\"}") >= 0);
    CHECK(metric_value(text, "sluice_worker_cpu_seconds_total{worker=\"1\"}") >= 0);
    CHECK(metric_value(text, "sluice_worker_cpu_seconds_total{worker=\"2\"}") == -1);
    CHECK(metric_value(text, "sluice_worker_sessions{worker=\"1\"}") >= 0);

    CHECK(http_get(sluice.metrics_port(), "/other").rfind("HTTP/1.1 404", 0) == 0);
}

TEST_CASE("failed connects, retries and rejected clients are counted per pool")
{
    EchoBackend good("good");
    // A port nothing listens on: connects are refused.
    Sluice sluice(ops_config({{"dead", "127.0.0.1:1"}, {"good", good.address()}}, "retries = 1\nmax_fails = 0",
                             "workers = 1"));
    for (int i = 0; i < 4; ++i) {
        Fd client(connect_tcp(sluice.port("front")));
        send_all(client, std::string("x\n"));
        CHECK(recv_line(client) == "x");
    }
    AdminClient admin(admin_path(sluice));
    // Round robin: two of four sessions try dead first, fail, and retry on good.
    std::string stat = admin.command("json show stat");
    CHECK(stat.find(R"("failed_connects":2,"retries":2,"rejected":0)") != std::string::npos);
    CHECK(admin.command("set server p/good state maint") == "p/good state maint");
    Fd refused(connect_tcp(sluice.port("front")));
    CHECK(recv_until_eof(refused).empty());
    CHECK(wait_until([&] {
        return admin.command("json show stat").find(R"("failed_connects":3,"retries":2,"rejected":1)")
            != std::string::npos;
    }));
}

TEST_CASE("the access log has one line per session with client, backend, duration, bytes and end")
{
    EchoBackend a("a");
    Sluice sluice(ops_config({{"a", a.address()}}, "", "workers = 2", "access_log = \"@DIR@/access.log\""));
    std::string client_address;
    {
        Fd client(connect_tcp(sluice.port("front")));
        sockaddr_in local{};
        socklen_t len = sizeof(local);
        ::getsockname(client, reinterpret_cast<sockaddr*>(&local), &len);
        client_address = "127.0.0.1:" + std::to_string(ntohs(local.sin_port));
        send_all(client, std::string("0123456789"));
        CHECK(recv_exact(client, 10) == "0123456789");
        ::shutdown(client, SHUT_WR);
        CHECK(recv_until_eof(client).empty());
    }
    std::string log;
    CHECK(wait_until([&] {
        std::ifstream in(sluice.dir() + "/access.log");
        std::stringstream ss;
        ss << in.rdbuf();
        log = ss.str();
        return !log.empty();
    }));
    INFO(log);
    CHECK(std::count(log.begin(), log.end(), '\n') == 1);
    CHECK(log.find(" listener=front client=" + client_address + " backend=p/a duration_ms=") != std::string::npos);
    CHECK(log.find(" bytes_in=10 bytes_out=10 end=done connect_ms=") != std::string::npos);
    CHECK(log.ends_with(" retries=0\n"));
}
