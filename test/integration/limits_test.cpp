// Backend limits through the real sluice binary (issue 18, "Protecting
// backends"): max_connections held exactly across two workers, the pool's
// queue (a waiting client gets the freed slot, first come first served, its
// bytes intact; queue_timeout; max_queue), and slow start's ramp measured as
// the share of new sessions over time.
//
// The capped backend is a ScriptedServer that echoes and counts how many of
// its connections are open at once, so "never N+1" is observed at the
// backend, not inferred from sluice's own counters.
#include "harness.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <fmt/format.h>
#include <fstream>
#include <poll.h>
#include <sstream>
#include <sys/socket.h>
#include <unistd.h>

using namespace sluice::test;

namespace {

// Echoes each connection; records how many are open at once.
struct CountingBackend {
    std::atomic<int> open{0};
    std::atomic<int> most{0};
    std::atomic<int> accepted{0};
    ScriptedServer server{[this](int fd) {
        accepted.fetch_add(1);
        int now = open.fetch_add(1) + 1;
        int seen = most.load();
        while (now > seen && !most.compare_exchange_weak(seen, now)) {}
        char buffer[4096];
        for (;;) {
            ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
            if (n <= 0)
                break;
            send_all(fd, buffer, static_cast<std::size_t>(n));
        }
        // Counted closed before the FIN goes back, so a client that saw its
        // end never finds the backend still counting it.
        open.fetch_sub(1);
        ::shutdown(fd, SHUT_WR);
    }};
};

std::string limits_config(const std::string& backend, int max_connections, const std::string& pool_keys)
{
    return fmt::format("[global]\nworkers = 2\n\n[admin]\nsocket = \"@DIR@/admin.sock\"\nmetrics = \"127.0.0.1:0\"\n\n"
                       "[[listeners]]\nname = \"front\"\nlisten = \"127.0.0.1:0\"\npool = \"p\"\n"
                       "access_log = \"@DIR@/access.log\"\n\n"
                       "[pools.p]\n{}\nbackends = [{{ address = \"{}\", name = \"capped\", max_connections = {} }}]\n",
                       pool_keys, backend, max_connections);
}

std::string read_file(const std::string& path)
{
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

// The "queue p: ..." line of show servers.
std::string queue_line(AdminClient& admin)
{
    std::string reply = admin.command("show servers");
    auto at = reply.find("queue p: ");
    return at == std::string::npos ? "" : reply.substr(at, reply.find('\n', at) - at);
}

bool waiting(AdminClient& admin, int clients)
{
    return wait_until([&] { return queue_line(admin).find(fmt::format(": {} waiting,", clients)) != std::string::npos; });
}

// A connected client whose bytes came back through the backend.
Fd echoed(std::uint16_t port, const std::string& text)
{
    Fd fd(connect_tcp(port));
    set_receive_timeout(fd, 10s);
    send_all(fd, text);
    REQUIRE(recv_exact(fd, text.size()) == text);
    return fd;
}

// sluice in front of one CountingBackend capped at `max_connections`.
struct CappedPool {
    CappedPool(int max_connections, const std::string& pool_keys)
        : sluice(limits_config(backend.server.address(), max_connections, pool_keys)), port(sluice.port("front")),
          admin(sluice.dir() + "/admin.sock")
    {
    }
    bool logged_end(const std::string& cause)
    {
        return wait_until([&] { return read_file(sluice.dir() + "/access.log").find("end=" + cause) != std::string::npos; });
    }
    CountingBackend backend;
    Sluice sluice;
    std::uint16_t port;
    AdminClient admin;
};

// A client that sends `bytes` and is closed by sluice without a byte back;
// how long that took.
Clock::duration closed_by_sluice(std::uint16_t port, const std::string& bytes)
{
    Fd fd(connect_tcp(port));
    set_receive_timeout(fd, 10s);
    send_all(fd, bytes);
    const auto start = Clock::now();
    CHECK(recv_until_eof(fd).empty());
    return Clock::now() - start;
}

void end_politely(Fd& fd)
{
    ::shutdown(fd, SHUT_WR);
    recv_until_eof(fd);
    fd = Fd(-1);
}

} // namespace

TEST_CASE("max_connections holds exactly across two workers and queued clients get freed slots in arrival order")
{
    CappedPool pool(2, "queue_timeout = \"20s\"");
    const std::uint16_t port = pool.port;
    AdminClient& admin = pool.admin;
    CountingBackend& backend = pool.backend;

    Fd first = echoed(port, "one\n");
    Fd second = echoed(port, "two\n");
    REQUIRE(backend.open.load() == 2);

    // Both wait, their bytes sent but unread; the third arrives first.
    Fd third(connect_tcp(port));
    set_receive_timeout(third, 10s);
    send_all(third, "third client's bytes\n");
    REQUIRE(waiting(admin, 1));
    Fd fourth(connect_tcp(port));
    set_receive_timeout(fourth, 10s);
    const std::string big = random_bytes(200'000, 18);
    send_all(fourth, big.substr(0, 1000));
    REQUIRE(waiting(admin, 2));
    CHECK(backend.accepted.load() == 2);

    end_politely(first);
    CHECK(recv_exact(third, 21) == "third client's bytes\n");
    REQUIRE(waiting(admin, 1));  // the fourth still waits: one slot, one client
    CHECK(backend.accepted.load() == 3);

    end_politely(second);
    send_all(fourth, big.substr(1000));
    CHECK(recv_exact(fourth, big.size()) == big);
    REQUIRE(waiting(admin, 0));

    // A burst from many clients at once, across both workers, still never
    // has more than two at the backend.
    std::vector<Fd> burst;
    for (int i = 0; i < 10; ++i) {
        burst.emplace_back(connect_tcp(port));
        send_all(burst.back(), "x");
    }
    end_politely(third);
    end_politely(fourth);
    // The queue's order across workers is not the order of the connects:
    // serve whichever two have their byte back, end them, and so on.
    std::size_t served = 0;
    const auto deadline = Clock::now() + 20s;
    while (served < burst.size() && Clock::now() < deadline) {
        std::vector<pollfd> fds;
        for (Fd& fd : burst)
            if (fd >= 0)
                fds.push_back({fd, POLLIN, 0});
        REQUIRE(::poll(fds.data(), fds.size(), 10'000) > 0);
        for (const pollfd& ready : fds) {
            if (!(ready.revents & POLLIN))
                continue;
            Fd& fd = *std::find_if(burst.begin(), burst.end(), [&](const Fd& f) { return f.fd == ready.fd; });
            set_receive_timeout(fd, 10s);
            CHECK(recv_exact(fd, 1) == "x");
            end_politely(fd);
            ++served;
        }
    }
    CHECK(served == burst.size());
    CHECK(backend.most.load() == 2);
    CHECK(backend.accepted.load() == 14);
    std::string stat = admin.command("show stat json");
    INFO(stat);
    CHECK(stat.find("\"queue_waiting\":0,\"queued\":") != std::string::npos);
    CHECK(stat.find("\"queue_timeouts\":0,\"queue_refused\":0,") != std::string::npos);
}

TEST_CASE("a waiting client gets a backend that comes into service without any session ending")
{
    // Two capped backends, the second in maint: the first is full and a
    // client waits. Setting the second ready ends no session and frees no
    // slot, yet the waiter must get it: the control thread offers capacity
    // that appears (up, ready, a reload raising a cap) every tick.
    CountingBackend full;
    CountingBackend spare;
    Sluice sluice(fmt::format(
        "[global]\nworkers = 2\n\n[admin]\nsocket = \"@DIR@/admin.sock\"\n\n"
        "[[listeners]]\nname = \"front\"\nlisten = \"127.0.0.1:0\"\npool = \"p\"\n\n"
        "[pools.p]\nqueue_timeout = \"20s\"\n"
        "backends = [{{ address = \"{}\", name = \"full\", max_connections = 1 }},\n"
        "            {{ address = \"{}\", name = \"spare\", max_connections = 1 }}]\n",
        full.server.address(), spare.server.address()));
    const std::uint16_t port = sluice.port("front");
    AdminClient admin(sluice.dir() + "/admin.sock");
    REQUIRE(admin.command("set server p/spare state maint").find("error") == std::string::npos);

    Fd held = echoed(port, "held\n");
    Fd waiter(connect_tcp(port));
    set_receive_timeout(waiter, 10s);
    send_all(waiter, "waited\n");
    REQUIRE(waiting(admin, 1));
    CHECK(spare.accepted.load() == 0);

    REQUIRE(admin.command("set server p/spare state ready").find("error") == std::string::npos);
    CHECK(recv_exact(waiter, 7) == "waited\n");  // well before queue_timeout (20 s)
    CHECK(spare.accepted.load() == 1);
    CHECK(full.accepted.load() == 1);
    CHECK(waiting(admin, 0));
}

TEST_CASE("a client still waiting at queue_timeout is closed with end=queue-timeout, without reaching the backend")
{
    CappedPool pool(1, "queue_timeout = \"300ms\"");
    Fd held = echoed(pool.port, "held\n");
    const auto waited = closed_by_sluice(pool.port, "never delivered");
    CHECK(waited >= 250ms);
    CHECK(waited < 5s);
    CHECK(pool.backend.accepted.load() == 1);
    REQUIRE(pool.logged_end("queue-timeout"));
    CHECK(queue_line(pool.admin).find("1 queued, 0 served, 1 timed out, 0 refused") != std::string::npos);
    CHECK(pool.admin.command("show stat json").find("\"queue_timeouts\":1,") != std::string::npos);
    // The wait is in the pool's queue-wait histogram: one client, over 0.25 s.
    const std::string metrics = http_get(pool.sluice.metrics_port(), "/metrics");
    INFO(metrics);
    CHECK(metrics.find("sluice_pool_queue_wait_seconds_count{pool=\"p\"} 1\n") != std::string::npos);
    CHECK(metrics.find("sluice_pool_queue_wait_seconds_bucket{pool=\"p\",le=\"0.25\"} 0\n") != std::string::npos);
    CHECK(metrics.find("sluice_pool_queue_wait_seconds_bucket{pool=\"p\",le=\"0.5\"} 1\n") != std::string::npos);
}

TEST_CASE("over max_queue a client is closed at once with end=queue-full and counted")
{
    CappedPool pool(1, "queue_timeout = \"20s\"\nmax_queue = 1");
    Fd held = echoed(pool.port, "held\n");
    Fd queued(connect_tcp(pool.port));
    send_all(queued, "q");
    REQUIRE(waiting(pool.admin, 1));
    CHECK(closed_by_sluice(pool.port, "refused") < 5s);
    REQUIRE(pool.logged_end("queue-full"));
    CHECK(queue_line(pool.admin).find("1 waiting, 1 queued, 0 served, 0 timed out, 1 refused") != std::string::npos);
    // The queued one is still served when the slot frees.
    end_politely(held);
    set_receive_timeout(queued, 10s);
    CHECK(recv_exact(queued, 1) == "q");
    CHECK(pool.backend.most.load() == 1);
}

TEST_CASE("slow start ramps a backend set ready from maint up to its share over slow_start")
{
    EchoBackend a("a", "whoami"), b("b", "whoami");
    Sluice sluice(fmt::format("[global]\nworkers = 2\n\n[admin]\nsocket = \"@DIR@/admin.sock\"\n\n"
                              "[[listeners]]\nname = \"front\"\nlisten = \"127.0.0.1:0\"\npool = \"p\"\n\n"
                              "[pools.p]\nslow_start = \"3s\"\nbackends = [{{ address = \"{}\", name = \"a\" }}, "
                              "{{ address = \"{}\", name = \"b\" }}]\n",
                              a.address(), b.address()));
    const std::uint16_t port = sluice.port("front");
    AdminClient admin(sluice.dir() + "/admin.sock");
    REQUIRE(admin.command("set server p/b state maint") == "p/b state maint");
    REQUIRE(admin.command("set server p/b state ready") == "p/b state ready");
    const auto up = Clock::now();

    // Short sessions one after another for 4 s; each reports who took it.
    struct Pick {
        std::chrono::milliseconds at;
        bool on_b;
    };
    std::vector<Pick> picks;
    while (Clock::now() - up < 4s) {
        Fd fd(connect_tcp(port));
        set_receive_timeout(fd, 5s);
        std::string who = recv_line(fd);
        REQUIRE((who == "a" || who == "b"));
        picks.push_back({std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - up), who == "b"});
    }
    auto share = [&](std::chrono::milliseconds from, std::chrono::milliseconds to) {
        int all = 0, on_b = 0;
        for (const Pick& p : picks)
            if (p.at >= from && p.at < to) {
                ++all;
                on_b += p.on_b ? 1 : 0;
            }
        INFO(fmt::format("{} sessions between {}ms and {}ms", all, from.count(), to.count()));
        REQUIRE(all >= 20);
        return static_cast<double>(on_b) / all;
    };
    const double first = share(0ms, 750ms);      // weight ramping 0 -> 25%: expected share ~11%
    const double third = share(1500ms, 2250ms);  // 50% -> 75%: ~37%
    const double after = share(3200ms, 4000ms);  // full weight: 50%
    UNSCOPED_INFO(fmt::format("share of b: {:.2f} in the first 0.75 s, {:.2f} at 1.5-2.25 s, {:.2f} after 3.2 s", first,
                              third, after));
    CHECK(first < 0.2);
    CHECK(third > first);
    CHECK(third < 0.45);
    CHECK(after > 0.4);
    CHECK(after < 0.6);
    WARN(fmt::format("measured share of b: {:.2f} / {:.2f} / {:.2f}", first, third, after));
}
