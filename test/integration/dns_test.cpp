// Backends by DNS name and pool discovery through the real binary, against a
// real DNS server: dnsmasq on a free loopback port, its records rewritten
// while sluice runs (A records: a hosts file and SIGHUP; SRV records: a
// restart, as dnsmasq reads them only at start). Backends are
// `sluice-echo --mode whoami` on 127.0.0.x, so a client learns who served it.
#include "harness.h"

#include <catch2/catch.hpp>

#include <csignal>
#include <fstream>
#include <set>

using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

// dnsmasq answering for *.test only: names from `hosts` (TTL 0, so sluice
// asks again every dns_min_ttl), SRV records from `srv-host` lines, NXDOMAIN
// for any other name under .test. Not --no-daemon: in that (debug) mode
// dnsmasq serves a TCP connection inline, and while c-ares keeps the one it
// opened for a truncated SRV answer, no UDP question is answered at all.
class Dnsmasq {
public:
    Dnsmasq() : port_(unused_port()) { start(); }

    std::uint16_t port() const noexcept { return port_; }
    std::string resolver() const { return "127.0.0.1:" + std::to_string(port_); }
    std::string resolver_v6() const { return "[::1]:" + std::to_string(port_); }

    // "IP NAME" lines; applied at once (SIGHUP re-reads the hosts file).
    void set_hosts(const std::string& lines)
    {
        dir_.write("hosts", lines);
        process_->send_signal(SIGHUP);
        REQUIRE(process_->wait_for_line("read " + dir_.path() + "/hosts", 10s));
    }
    // srv-host=... and host-record=... lines; applied by a restart.
    void set_records(const std::string& lines)
    {
        records_ = lines;
        process_.reset();
        start();
    }
    void pause() { process_->send_signal(SIGSTOP); }
    void resume() { process_->send_signal(SIGCONT); }

private:
    void start()
    {
        dir_.write("records.conf", records_);
        if (!std::ifstream(dir_.path() + "/hosts"))
            dir_.write("hosts", "");
        process_ = std::make_unique<Process>(
            "/usr/sbin/dnsmasq",
            std::vector<std::string>{"--keep-in-foreground", "--log-facility=-", "--no-resolv", "--no-hosts", "--port=" + std::to_string(port_),
                                     "--listen-address=127.0.0.1", "--listen-address=::1", "--bind-interfaces", "--local=/test/",
                                     "--addn-hosts=" + dir_.path() + "/hosts", "--conf-file=" + dir_.path() + "/records.conf",
                                     "--pid-file=", "--user=root", "--cache-size=0", "--local-ttl=0"});
        auto started = process_->wait_for_line("read " + dir_.path() + "/hosts", 10s);
        INFO(process_->output());
        REQUIRE(started);
    }

    TempDir dir_;
    std::uint16_t port_;
    std::string records_;
    std::unique_ptr<Process> process_;
};

// The backend's name (its whoami line), or "" when sluice had no backend.
std::string whoami(std::uint16_t port)
{
    Fd fd(connect_tcp(port));
    set_receive_timeout(fd, 5s);
    return recv_line(fd);
}

// Waits until `count` sessions in a row are served by exactly `expected`.
bool served_by(std::uint16_t port, const std::set<std::string>& expected, std::chrono::milliseconds timeout = 15s)
{
    return wait_until(
        [&] {
            std::set<std::string> seen;
            for (int i = 0; i < 12; ++i)
                seen.insert(whoami(port));
            return seen == expected;
        },
        timeout);
}

std::string config(const Dnsmasq& dns, const std::string& pool, const std::string& resolver = "")
{
    return "[global]\nworkers = 2\nresolvers = [\"" + (resolver.empty() ? dns.resolver() : resolver)
        + "\"]\ndns_min_ttl = \"100ms\"\n[admin]\nsocket = \"@DIR@/admin.sock\"\n"
          "[[listeners]]\nname = \"front\"\nlisten = \"127.0.0.1:0\"\npool = \"p\"\n"
          "[pools.p]\nconnect_timeout = \"1s\"\nmax_fails = 0\n"
        + pool;
}

std::string show_servers(Sluice& sluice)
{
    AdminClient admin(sluice.dir() + "/admin.sock");
    return admin.command("show servers");
}

double seconds_since(Clock::time_point start)
{
    return std::chrono::duration<double>(Clock::now() - start).count();
}

} // namespace

TEST_CASE("a backend name follows its A record without a reload; a running session keeps its backend")
{
    Dnsmasq dns;
    EchoBackend a("a", "whoami", "127.0.0.2:0");
    EchoBackend b("b", "whoami", "127.0.0.3:" + std::to_string(a.port()));
    dns.set_hosts("127.0.0.2 db.test\n");
    Sluice sluice(config(dns, "backends = [{ address = \"db.test:" + std::to_string(a.port()) + "\" }]\n"));
    const std::uint16_t port = sluice.port("front");
    REQUIRE(served_by(port, {"a"}));

    Fd held(connect_tcp(port));
    set_receive_timeout(held, 5s);
    REQUIRE(recv_line(held) == "a");

    const auto changed = Clock::now();
    dns.set_hosts("127.0.0.3 db.test\n");
    REQUIRE(served_by(port, {"b"}));
    WARN("A record change converged in " << seconds_since(changed) << " s");
    CHECK(sluice.process().count_lines("reload") == 0);

    // The session that started on a is still on a: it echoes.
    send_all(held, "still here\n");
    CHECK(recv_line(held) == "still here");
}

TEST_CASE("AAAA answers: a name with only an IPv6 address, and name discovery over A and AAAA records")
{
    Dnsmasq dns;
    EchoBackend four("four", "whoami", "127.0.0.2:0");
    const std::string port = std::to_string(four.port());
    EchoBackend six("six", "whoami", "[::1]:" + port);
    dns.set_hosts("::1 v6only.test\n127.0.0.2 both.test\n::1 both.test\n");

    SECTION("a backend name that has only an AAAA record")
    {
        Sluice sluice(config(dns, "backends = [{ address = \"v6only.test:" + port + "\" }]\n"));
        CHECK(served_by(sluice.port("front"), {"six"}));
        const std::string servers = show_servers(sluice);
        INFO(servers);
        CHECK(servers.find("[::1]:" + port) != std::string::npos);
    }
    SECTION("a resolver on an IPv6 address")
    {
        Sluice sluice(config(dns, "backends = [{ address = \"both.test:" + port + "\" }]\n", dns.resolver_v6()));
        // Of several addresses the lowest is used: 127.0.0.2 sorts before ::1.
        CHECK(served_by(sluice.port("front"), {"four"}));
        CHECK(sluice.process().count_lines("resolver timeout") == 0);
    }
    SECTION("discover by name: one backend per A and per AAAA record")
    {
        Sluice sluice(config(dns, "discover = { name = \"both.test\", port = " + port + " }\n"));
        CHECK(served_by(sluice.port("front"), {"four", "six"}));
        const std::string servers = show_servers(sluice);
        INFO(servers);
        // Named ip:port, one row each.
        CHECK(servers.find("p     127.0.0.2:" + port + "  127.0.0.2:" + port) != std::string::npos);
        CHECK(servers.find("p     [::1]:" + port + "      [::1]:" + port) != std::string::npos);
    }
}

TEST_CASE("a name that does not resolve at start is down with NXDOMAIN and comes up once it resolves")
{
    Dnsmasq dns;
    EchoBackend a("a", "whoami", "127.0.0.2:0");
    Sluice sluice(config(dns, "backends = [{ address = \"late.test:" + std::to_string(a.port()) + "\" }]\n"));
    const std::uint16_t port = sluice.port("front");
    REQUIRE(wait_until([&] { return show_servers(sluice).find("unresolved: NXDOMAIN") != std::string::npos; }));
    CHECK(show_servers(sluice).find("late.test:" + std::to_string(a.port())) != std::string::npos);
    CHECK(whoami(port).empty());  // no backend: the client is closed

    const auto added = Clock::now();
    dns.set_hosts("127.0.0.2 late.test\n");
    REQUIRE(served_by(port, {"a"}));
    WARN("a late name came up in " << seconds_since(added) << " s");
    CHECK(show_servers(sluice).find("unresolved") == std::string::npos);
}

TEST_CASE("a resolver that stops answering keeps the last answer; one that never answered shows resolver timeout")
{
    Dnsmasq dns;
    EchoBackend a("a", "whoami", "127.0.0.2:0");
    dns.set_hosts("127.0.0.2 db.test\n127.0.0.2 other.test\n");
    Sluice sluice(config(dns, "backends = [{ address = \"db.test:" + std::to_string(a.port()) + "\" }]\n"));
    const std::uint16_t port = sluice.port("front");
    REQUIRE(served_by(port, {"a"}));

    dns.pause();
    REQUIRE(sluice.process().wait_for_line("dns: db.test: resolver timeout; keeping the last answer", 15s));
    CHECK(served_by(port, {"a"}));
    CHECK(sluice.process().count_lines("dns: db.test: resolver timeout") == 1);  // logged once

    // A name added while the resolver is silent has no answer to keep.
    sluice.rewrite_config(config(dns, "backends = [{ address = \"db.test:" + std::to_string(a.port())
                                          + "\" }, { address = \"other.test:" + std::to_string(a.port()) + "\" }]\n"));
    sluice.process().send_signal(SIGHUP);
    REQUIRE(sluice.process().wait_for_line("reload ok"));
    REQUIRE(wait_until([&] { return show_servers(sluice).find("resolver timeout") != std::string::npos; }, 15s));
    CHECK(served_by(port, {"a"}));

    dns.resume();
    REQUIRE(wait_until([&] { return show_servers(sluice).find("resolver timeout") == std::string::npos; }, 15s));
    REQUIRE(sluice.process().wait_for_line("dns: db.test resolves again", 15s));
}

TEST_CASE("an SRV pool follows its records: replaced, shrunk to zero, regrown, with backups")
{
    Dnsmasq dns;
    EchoBackend a("a", "whoami"), b("b", "whoami"), c("c", "whoami");
    auto srv = [](const std::string& target, const EchoBackend& backend, int priority) {
        return "srv-host=_db._tcp.svc.test," + target + ".test," + std::to_string(backend.port()) + ","
            + std::to_string(priority) + ",10\nhost-record=" + target + ".test,127.0.0.1\n";
    };
    dns.set_records(srv("a", a, 0) + srv("b", b, 0));
    Sluice sluice(config(dns, "discover = { srv = \"_db._tcp.svc.test\" }\n"));
    const std::uint16_t port = sluice.port("front");
    REQUIRE(served_by(port, {"a", "b"}));

    auto converge = [&](const std::string& what, const std::string& records, const std::set<std::string>& expected) {
        const auto start = Clock::now();
        dns.set_records(records);
        REQUIRE(served_by(port, expected));
        WARN(what << " converged in " << seconds_since(start) << " s (including the dnsmasq restart)");
    };
    converge("every target replaced", srv("c", c, 0), {"c"});
    converge("shrink to zero", "", {""});
    CHECK(sluice.process().count_lines("SRV _db._tcp.svc.test: 0 targets") >= 1);
    converge("regrow from zero", srv("a", a, 0), {"a"});
    dns.set_records(srv("a", a, 0) + srv("b", b, 5));
    REQUIRE(wait_until([&] { return show_servers(sluice).find("b.test:" + std::to_string(b.port())) != std::string::npos; }));
    CHECK(served_by(port, {"a"}));  // b is a backup
    a.stop();  // the primary goes: the backup serves
    REQUIRE(served_by(port, {"b"}));
}

TEST_CASE("an SRV pool of 1,000 targets is built")
{
    Dnsmasq dns;
    EchoBackend a("a", "whoami");
    std::string records;
    for (int i = 0; i < 1000; ++i)
        records += "srv-host=_big._tcp.svc.test,t" + std::to_string(i) + ".test," + std::to_string(a.port())
            + ",0,1\nhost-record=t" + std::to_string(i) + ".test,127.0.0.1\n";
    dns.set_records(records);
    const auto start = Clock::now();
    Sluice sluice(config(dns, "discover = { srv = \"_big._tcp.svc.test\" }\n"));
    REQUIRE(sluice.process().wait_for_line("SRV _big._tcp.svc.test: 1000 targets", 20s));
    REQUIRE(wait_until([&] {
        std::string servers = show_servers(sluice);
        std::size_t up = 0;
        for (std::size_t at = servers.find(" up "); at != std::string::npos; at = servers.find(" up ", at + 1))
            ++up;
        return servers.find("unresolved") == std::string::npos && up == 1000;
    }, 30s));
    CHECK(sluice.process().count_lines("resolver timeout") == 0);
    WARN("1,000 SRV targets resolved and up in " << seconds_since(start) << " s");
    CHECK(whoami(sluice.port("front")) == "a");
}
