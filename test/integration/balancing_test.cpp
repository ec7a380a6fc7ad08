// Balancing, health and retries through the real sluice binary (issue 3):
// least_conn with held sessions, ip_hash from many source addresses, active
// health checks that see a backend die and come back, retries and passive
// marking without health checks, backup takeover and hand-back, and a pool
// with no usable backend.
//
// Backends are `sluice-echo --mode whoami`: each session's first line names
// the backend that took it. Sessions are opened one after another and each
// waits for that line, so by the time the next one is picked the previous
// pick is counted in the backend table (acquire() happens at pick time):
// least_conn counts are then exact even with two workers.
#include "harness.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cerrno>
#include <fmt/format.h>
#include <map>
#include <memory>
#include <set>
#include <sys/socket.h>
#include <unistd.h>

using namespace sluice::test;

namespace {

struct BackendSpec {
    std::string address;
    std::string name;
    int weight = 1;
    bool backup = false;
};

// One listener "front" on 127.0.0.1:0 in front of pool "p". `pool_keys` are
// more TOML lines for the pool (balance, health, retries...).
std::string balancing_config(const std::vector<BackendSpec>& backends, const std::string& pool_keys,
                             int workers = 2)
{
    std::string list;
    for (const auto& b : backends)
        list += fmt::format("  {{ address = \"{}\", name = \"{}\", weight = {}, backup = {} }},\n", b.address,
                            b.name, b.weight, b.backup ? "true" : "false");
    return fmt::format("[global]\nworkers = {}\n\n"
                       "[[listeners]]\nname = \"front\"\nlisten = \"127.0.0.1:0\"\npool = \"p\"\n\n"
                       "[pools.p]\n{}\nbackends = [\n{}]\n",
                       workers, pool_keys, list);
}

// Probes fast enough for a test; the budgets below are derived from it.
constexpr auto kHealth = "health = { interval = \"200ms\", timeout = \"200ms\", rise = 2, fall = 2 }";
constexpr auto kInterval = 200ms;
constexpr auto kProbeTimeout = 200ms;
constexpr int kFall = 2;
constexpr int kRise = 2;
// Probes run interval ±10% apart: fall probes, the last one may take the
// whole timeout.
constexpr auto kDownBudget = kInterval * kFall * 11 / 10 + kProbeTimeout;
constexpr auto kUpBudget = kInterval * kRise * 11 / 10 + kProbeTimeout;
// The CI machine is shared and often loaded: room for scheduling delays
// (sluice's threads, the log reader), never for a missed deadline by design.
constexpr auto kSlack = 2s;

// A session that stays open, and the backend that answered it.
struct Held {
    Fd fd;
    std::string backend;
};

Held hold_session(std::uint16_t port, const std::string& source_ip = "")
{
    Fd fd(connect_tcp(port, "127.0.0.1", source_ip));
    std::string backend = recv_line(fd);
    return {std::move(fd), std::move(backend)};
}

// One short session: the backend's name, or "" when sluice closed the client
// without a backend.
std::string whoami(std::uint16_t port, const std::string& source_ip = "")
{
    return hold_session(port, source_ip).backend;
}

// Ends a held session the polite way and waits until sluice has passed the
// backend's FIN back: the session is then over on sluice's side too.
void finish_session(Held& held)
{
    ::shutdown(held.fd, SHUT_WR);
    int error = 0;
    recv_until_eof(held.fd, &error);
    REQUIRE(error == 0);
    held.fd = Fd(-1);
}

std::map<std::string, int> count_backends(const std::vector<Held>& sessions)
{
    std::map<std::string, int> counts;
    for (const auto& s : sessions)
        if (s.fd >= 0)
            ++counts[s.backend];
    return counts;
}

// Waits until `needle` was logged at least `times` times. (Order-free, unlike
// Process::wait_for_line, which consumes every line before its match: two
// backends' lines may come in either order.)
bool wait_logged(Process& log, const std::string& needle, std::chrono::milliseconds timeout,
                 std::size_t times = 1)
{
    return wait_until([&] { return log.count_lines(needle) >= times; }, timeout);
}

template <typename Duration>
long long ms(Duration d)
{
    return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

// `count` clients in a row are each closed by sluice, without a byte and
// within a second.
void expect_turned_away(std::uint16_t port, int count)
{
    for (int i = 0; i < count; ++i) {
        Fd client(connect_tcp(port));
        set_receive_timeout(client, 5s);
        auto start = Clock::now();
        int error = 0;
        std::string got = recv_until_eof(client, &error);
        auto waited = Clock::now() - start;
        INFO("client " << i << " closed after " << ms(waited) << " ms, errno " << error);
        CHECK(got.empty());
        CHECK((error == 0 || error == ECONNRESET));  // closed by sluice, not by our timeout
        CHECK(waited < 1s);
    }
}

} // namespace

TEST_CASE("least_conn sends each new session to the backend with the fewest active sessions across workers")
{
    EchoBackend a("a", "whoami"), b("b", "whoami"), c("c", "whoami");
    Sluice sluice(balancing_config({{a.address(), "a"}, {b.address(), "b"}, {c.address(), "c"}},
                                   "balance = \"least_conn\""));
    const std::uint16_t port = sluice.port("front");

    std::vector<Held> sessions;
    for (int i = 0; i < 9; ++i)
        sessions.push_back(hold_session(port));
    auto counts = count_backends(sessions);
    CHECK(counts["a"] == 3);
    CHECK(counts["b"] == 3);
    CHECK(counts["c"] == 3);

    // Two sessions of "b" end: it is now the least loaded, by two.
    int ended = 0;
    for (auto& s : sessions)
        if (s.backend == "b" && ended < 2) {
            finish_session(s);
            ++ended;
        }
    REQUIRE(ended == 2);
    for (int i = 0; i < 2; ++i) {
        sessions.push_back(hold_session(port));
        CHECK(sessions.back().backend == "b");
    }
    // All at three again: the tenth goes anywhere, the next two elsewhere.
    sessions.push_back(hold_session(port));
    const std::string tenth = sessions.back().backend;
    for (int i = 0; i < 2; ++i) {
        sessions.push_back(hold_session(port));
        CHECK(sessions.back().backend != tenth);
    }
    counts = count_backends(sessions);
    CHECK(counts["a"] == 4);
    CHECK(counts["b"] == 4);
    CHECK(counts["c"] == 4);
}

TEST_CASE("least_conn fills backends in proportion to their weights")
{
    EchoBackend a("a", "whoami"), b("b", "whoami");
    Sluice sluice(balancing_config({{a.address(), "a", 2}, {b.address(), "b", 1}}, "balance = \"least_conn\""));
    const std::uint16_t port = sluice.port("front");

    // Weight 2 is "as loaded" with twice the sessions: 6 sessions are 4 and 2,
    // 12 are 8 and 4, whatever the order of the ties.
    std::vector<Held> sessions;
    for (int i = 0; i < 6; ++i)
        sessions.push_back(hold_session(port));
    auto counts = count_backends(sessions);
    CHECK(counts["a"] == 4);
    CHECK(counts["b"] == 2);
    for (int i = 0; i < 6; ++i)
        sessions.push_back(hold_session(port));
    counts = count_backends(sessions);
    CHECK(counts["a"] == 8);
    CHECK(counts["b"] == 4);
}

TEST_CASE("ip_hash keeps each of 150 client addresses on one backend across connections")
{
    EchoBackend a("a", "whoami"), b("b", "whoami"), c("c", "whoami");
    Sluice sluice(balancing_config({{a.address(), "a"}, {b.address(), "b"}, {c.address(), "c"}},
                                   "balance = \"ip_hash\""));
    const std::uint16_t port = sluice.port("front");

    // 127.0.0.0/8 is all loopback: a client socket bound to any of these
    // addresses reaches sluice with that source IP (and a fresh source port
    // per connection, which ip_hash ignores). Two workers share the mapping.
    std::vector<std::string> sources;
    for (int i = 1; i <= 75; ++i) {
        sources.push_back(fmt::format("127.0.0.{}", i + 1));
        sources.push_back(fmt::format("127.0.1.{}", i));
    }
    REQUIRE(sources.size() == 150);

    std::map<std::string, int> clients_per_backend;
    int unstable = 0;
    for (const auto& source : sources) {
        std::set<std::string> seen;
        for (int round = 0; round < 3; ++round)
            seen.insert(whoami(port, source));
        INFO(source);
        CHECK(seen.size() == 1);
        unstable += seen.size() == 1 ? 0 : 1;
        ++clients_per_backend[*seen.begin()];
    }
    CHECK(unstable == 0);
    CHECK(clients_per_backend[""] == 0);  // no client was turned away
    CHECK(clients_per_backend["a"] + clients_per_backend["b"] + clients_per_backend["c"] == 150);
    // Equal weights: 50 each expected; Maglev over 150 hashed addresses stays
    // well within half of that.
    CHECK(clients_per_backend["a"] >= 25);
    CHECK(clients_per_backend["b"] >= 25);
    CHECK(clients_per_backend["c"] >= 25);
}

namespace {

// 60 client source addresses (127.0.30.x is all loopback) and the backend
// each lands on, one session each.
std::vector<std::string> ip_hash_sources()
{
    std::vector<std::string> sources;
    for (int i = 1; i <= 60; ++i)
        sources.push_back(fmt::format("127.0.30.{}", i));
    return sources;
}

std::vector<std::string> routes(std::uint16_t port, const std::vector<std::string>& sources)
{
    std::vector<std::string> out;
    for (const auto& source : sources)
        out.push_back(whoami(port, source));
    return out;
}

// ip_hash pool "p" of a, b, c with `pool_keys`, an admin socket, and debug
// logging: the control thread logs each ip_hash table it rebuilds.
std::string ip_hash_rebuild_config(const std::vector<BackendSpec>& backends, const std::string& pool_keys)
{
    std::string config = balancing_config(backends, "balance = \"ip_hash\"\n" + pool_keys);
    return "[admin]\nsocket = \"@DIR@/admin.sock\"\n\n" + config.replace(config.find("workers"), 0, "log_level = \"debug\"\n");
}

} // namespace

TEST_CASE("ip_hash: the control thread rebuilds the shared table when a backend leaves and returns; only its clients move")
{
    EchoBackend a("a", "whoami"), b("b", "whoami"), c("c", "whoami");
    Sluice sluice(ip_hash_rebuild_config({{a.address(), "a"}, {b.address(), "b"}, {c.address(), "c"}}, ""));
    const std::uint16_t port = sluice.port("front");
    Process& log = sluice.process();
    AdminClient admin(sluice.dir() + "/admin.sock");
    const auto sources = ip_hash_sources();
    const auto before = routes(port, sources);
    REQUIRE(std::count(before.begin(), before.end(), "c") > 0);

    // Set to maint from the admin thread: the table's change listener wakes
    // the control thread, which rebuilds once for both workers (no worker
    // builds; without the wake-up nothing would be logged).
    REQUIRE(admin.command("set server p/c state maint") == "p/c state maint");
    INFO(log.output());
    REQUIRE(log.wait_for_line("pool p: ip_hash primaries table rebuilt: 2 of 3 backends in it", 5s));
    const auto during = routes(port, sources);
    for (std::size_t i = 0; i < sources.size(); ++i) {
        INFO(sources[i] << " was on " << before[i]);
        if (before[i] == "c")
            CHECK((during[i] == "a" || during[i] == "b"));
        else
            CHECK(during[i] == before[i]);
    }

    REQUIRE(admin.command("set server p/c state ready") == "p/c state ready");
    REQUIRE(log.wait_for_line("pool p: ip_hash primaries table rebuilt: 3 of 3 backends in it", 5s));
    CHECK(routes(port, sources) == before);
    CHECK(log.count_lines("ip_hash primaries table rebuilt") == 2);
}

TEST_CASE("ip_hash: when a passive mark-down runs out the table is rebuilt with the backend and its clients return")
{
    // No version moves when the mark expires: the control thread's timer for
    // the lookup's next expiry must rebuild, or c's clients would stay away.
    EchoBackend a("a", "whoami"), b("b", "whoami");
    auto c = std::make_unique<EchoBackend>("c", "whoami");
    const std::string c_address = c->address();
    Sluice sluice(ip_hash_rebuild_config({{a.address(), "a"}, {b.address(), "b"}, {c_address, "c"}},
                                         "retries = 2\nmax_fails = 1\nfail_timeout = \"1500ms\""));
    const std::uint16_t port = sluice.port("front");
    Process& log = sluice.process();
    const auto sources = ip_hash_sources();
    const auto before = routes(port, sources);
    REQUIRE(std::count(before.begin(), before.end(), "c") > 0);

    c->stop();
    // c's first client fails over and marks c down; nobody is turned away.
    const auto during = routes(port, sources);
    INFO(log.output());
    // Either line may come first: the worker logs DOWN, the control thread the
    // rebuild it was woken for.
    REQUIRE(wait_until([&] { return log.count_lines("p/c is DOWN") == 1; }, 5s));
    REQUIRE(wait_until(
        [&] { return log.count_lines("pool p: ip_hash primaries table rebuilt: 2 of 3 backends in it") == 1; }, 5s));
    for (std::size_t i = 0; i < sources.size(); ++i)
        CHECK(during[i] == (before[i] == "c" ? during[i] : before[i]));
    CHECK(std::count(during.begin(), during.end(), "") == 0);
    CHECK(std::count(during.begin(), during.end(), "c") == 0);

    c = std::make_unique<EchoBackend>("c", "whoami", c_address);
    REQUIRE(wait_until(
        [&] { return log.count_lines("pool p: ip_hash primaries table rebuilt: 3 of 3 backends in it") == 1; },
        1500ms + kSlack));
    CHECK(routes(port, sources) == before);
}

TEST_CASE("a stopped backend is marked down within fall x interval + timeout and up again after it restarts")
{
    EchoBackend a("a", "whoami"), b("b", "whoami");
    auto c = std::make_unique<EchoBackend>("c", "whoami");
    const std::string c_address = c->address();
    // least_conn: with held sessions the choice of every new one is exact.
    Sluice sluice(balancing_config({{a.address(), "a"}, {b.address(), "b"}, {c_address, "c"}},
                                   std::string("balance = \"least_conn\"\n") + kHealth));
    const std::uint16_t port = sluice.port("front");
    Process& log = sluice.process();

    auto killed_at = Clock::now();
    c->stop();
    auto down = log.wait_for_line("p/c is DOWN", kDownBudget + kSlack);
    auto down_after = Clock::now() - killed_at;
    INFO(log.output());
    REQUIRE(down);
    CHECK(down->find("connection refused, 2/2") != std::string::npos);
    INFO("DOWN logged " << ms(down_after) << " ms after the kill; budget " << ms(kDownBudget) << " ms + slack");
    CHECK(down_after <= kDownBudget + kSlack);

    // New sessions avoid it: four held sessions fill a and b, none reach c
    // (which, being unreachable, would have made a client see "").
    std::vector<Held> sessions;
    for (int i = 0; i < 4; ++i)
        sessions.push_back(hold_session(port));
    auto counts = count_backends(sessions);
    CHECK(counts["a"] == 2);
    CHECK(counts["b"] == 2);
    CHECK(counts["c"] == 0);
    CHECK(counts[""] == 0);

    // Back on the same address: rise passing probes bring it up, and being
    // the least loaded (0 against 2 and 2) it takes the next two sessions.
    auto restarted_at = Clock::now();
    c = std::make_unique<EchoBackend>("c", "whoami", c_address);
    REQUIRE(c->address() == c_address);
    auto up = log.wait_for_line("p/c is UP", kUpBudget + kSlack);
    auto up_after = Clock::now() - restarted_at;
    REQUIRE(up);
    CHECK(up->find("2/2 checks passed") != std::string::npos);
    INFO("UP logged " << ms(up_after) << " ms after the restart");
    CHECK(up_after <= kUpBudget + kSlack);
    for (int i = 0; i < 2; ++i) {
        sessions.push_back(hold_session(port));
        CHECK(sessions.back().backend == "c");
    }
    CHECK(log.count_lines("is DOWN") == 1);
    CHECK(log.count_lines("is UP") == 1);
}

TEST_CASE("without health checks a refusing backend causes no client errors thanks to retries")
{
    EchoBackend a("a", "whoami"), b("b", "whoami");
    const std::string refusing = fmt::format("127.0.0.1:{}", unused_port());
    // max_fails = 0: never marked down, so every pick of it is a failed
    // connect that must be retried elsewhere.
    Sluice sluice(balancing_config({{refusing, "dead"}, {a.address(), "a"}, {b.address(), "b"}},
                                   "retries = 2\nmax_fails = 0"));
    const std::uint16_t port = sluice.port("front");

    std::map<std::string, int> served;
    for (int i = 0; i < 60; ++i)
        ++served[whoami(port)];
    CHECK(served[""] == 0);
    CHECK(served["a"] + served["b"] == 60);
    // Each worker's rotation puts "dead" first in line every third pick; its
    // sessions are served by the other two, which still both get traffic.
    CHECK(served["a"] > 0);
    CHECK(served["b"] > 0);
    CHECK(sluice.process().count_lines("is DOWN") == 0);
}

TEST_CASE("failed connects mark a backend down passively and it gets traffic again after fail_timeout")
{
    EchoBackend a("a", "whoami");
    const std::string c_address = fmt::format("127.0.0.1:{}", unused_port());
    constexpr auto kFailTimeout = 1500ms;
    // One worker, so every failed connect is counted by the same rotation.
    Sluice sluice(balancing_config({{c_address, "c"}, {a.address(), "a"}},
                                   "max_fails = 2\nfail_timeout = \"1500ms\"", 1));
    const std::uint16_t port = sluice.port("front");
    Process& log = sluice.process();

    // The mark is set after the first connection started, so it lasts at
    // least until first_attempt + fail_timeout.
    const auto first_attempt = Clock::now();
    int clients = 0;
    while (log.count_lines("p/c is DOWN") == 0) {
        INFO(log.output());
        REQUIRE(clients < 20);  // two failures need three sessions at most
        CHECK(whoami(port) == "a");
        ++clients;
    }
    CHECK(log.count_lines("p/c is DOWN (2 connect failures within 1500ms") == 1);

    // c listens now, but the mark holds until fail_timeout is over; then the
    // rotation reaches c again.
    EchoBackend c("c", "whoami", c_address);
    std::optional<Clock::time_point> c_served_at;
    REQUIRE(wait_until(
        [&] {
            std::string backend = whoami(port);
            if (backend == "c")
                c_served_at = Clock::now();
            else
                CHECK(backend == "a");
            return c_served_at.has_value();
        },
        kFailTimeout + 10s));
    INFO("c served again " << ms(*c_served_at - first_attempt) << " ms after the first failing client");
    CHECK(*c_served_at - first_attempt >= kFailTimeout);
    CHECK(log.count_lines("is DOWN") == 1);
}

TEST_CASE("a backup takes over when every primary stops and hands back when they return")
{
    EchoBackend z("z", "whoami");
    auto a = std::make_unique<EchoBackend>("a", "whoami");
    auto b = std::make_unique<EchoBackend>("b", "whoami");
    const std::string a_address = a->address(), b_address = b->address();
    Sluice sluice(balancing_config({{a_address, "a"}, {b_address, "b"}, {z.address(), "z", 1, true}},
                                   std::string("retries = 2\n") + kHealth));
    const std::uint16_t port = sluice.port("front");
    Process& log = sluice.process();

    std::map<std::string, int> served;
    for (int i = 0; i < 10; ++i)
        ++served[whoami(port)];
    CHECK(served["a"] + served["b"] == 10);
    CHECK(served["z"] == 0);

    // Both primaries stop. Until the checks (or failed connects) mark them
    // down, a session that tried both is retried on the backup; after that
    // the backup is picked at once. Either way no client sees an error.
    a->stop();
    b->stop();
    served.clear();
    int clients = 0;
    while (log.count_lines("p/a is DOWN") == 0 || log.count_lines("p/b is DOWN") == 0) {
        INFO(log.output());
        REQUIRE(clients < 5000);
        ++served[whoami(port)];
        ++clients;
    }
    for (int i = 0; i < 10; ++i)
        ++served[whoami(port)];
    CHECK(served["z"] == clients + 10);
    CHECK(served[""] == 0);

    // The primaries return on their addresses: once the checks bring them up,
    // new sessions go back to them.
    a = std::make_unique<EchoBackend>("a", "whoami", a_address);
    b = std::make_unique<EchoBackend>("b", "whoami", b_address);
    INFO(log.output());
    REQUIRE(wait_logged(log, "p/a is UP", kUpBudget + kSlack));
    REQUIRE(wait_logged(log, "p/b is UP", kUpBudget + kSlack));
    served.clear();
    for (int i = 0; i < 20; ++i)
        ++served[whoami(port)];
    CHECK(served["a"] + served["b"] == 20);
    CHECK(served["a"] > 0);
    CHECK(served["b"] > 0);
    CHECK(served["z"] == 0);
    // Whether the probes or the failed connects saw it first, each primary's
    // fall was one transition, logged once (checked last, when any second
    // line would long have been written).
    CHECK(log.count_lines("p/a is DOWN") == 1);
    CHECK(log.count_lines("p/b is DOWN") == 1);
}

TEST_CASE("with every backend down a client is closed at once and the pool state is logged once")
{
    auto a = std::make_unique<EchoBackend>("a", "whoami");
    EchoBackend b("b", "whoami");
    const std::string a_address = a->address();
    Sluice sluice(balancing_config({{a_address, "a"}, {b.address(), "b"}}, kHealth));
    const std::uint16_t port = sluice.port("front");
    Process& log = sluice.process();

    a->stop();
    b.stop();
    INFO(log.output());
    REQUIRE(wait_logged(log, "p/a is DOWN", kDownBudget + kSlack));
    REQUIRE(wait_logged(log, "p/b is DOWN", kDownBudget + kSlack));

    expect_turned_away(port, 20);
    // Twenty clients turned away, one state: one line. (The log reader runs
    // on its own thread; the line was written before the first close.)
    REQUIRE(wait_until([&] { return log.count_lines("pool p has no usable backend") >= 1; }));
    CHECK(log.count_lines("pool p has no usable backend") == 1);

    // One backend returns: the next client is served, and that is logged once.
    a = std::make_unique<EchoBackend>("a", "whoami", a_address);
    REQUIRE(wait_logged(log, "p/a is UP", kUpBudget + kSlack));
    CHECK(whoami(port) == "a");
    CHECK(whoami(port) == "a");
    REQUIRE(wait_until([&] { return log.count_lines("pool p has a usable backend again") >= 1; }));
    CHECK(log.count_lines("pool p has a usable backend again") == 1);
    CHECK(log.count_lines("pool p has no usable backend") == 1);
}

TEST_CASE("without health checks clients of a pool whose backends all refuse are closed at once and the state is logged once")
{
    const std::string a_address = fmt::format("127.0.0.1:{}", unused_port());
    const std::string b_address = fmt::format("127.0.0.1:{}", unused_port());
    // Marks last a minute: the state cannot change during the test.
    Sluice sluice(balancing_config({{a_address, "a"}, {b_address, "b"}},
                                   "retries = 2\nmax_fails = 3\nfail_timeout = \"60s\""));
    const std::uint16_t port = sluice.port("front");
    Process& log = sluice.process();

    // The first clients try both backends (and give up on retries: their
    // own bad luck, not yet the pool's state); three failures each mark them
    // down, and from then on no backend is usable.
    expect_turned_away(port, 20);
    INFO(log.output());
    REQUIRE(wait_logged(log, "pool p has no usable backend", 5s));
    CHECK(log.count_lines("p/a is DOWN (3 connect failures within 60000ms") == 1);
    CHECK(log.count_lines("p/b is DOWN (3 connect failures within 60000ms") == 1);
    CHECK(log.count_lines("pool p has no usable backend") == 1);
    CHECK(log.count_lines("usable backend again") == 0);
}
