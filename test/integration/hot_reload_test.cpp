// Reloading a running sluice (SIGHUP, `reload` on the admin socket): nothing
// fails under load, sessions survive, counters and admin state carry over, a
// bad file changes nothing.
#include "operations_support.h"
#include "sluice/cpu_affinity.h"

#include <catch2/catch.hpp>

#include <atomic>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>

using namespace sluice::test;

namespace {

// Clients that connect, read the backend's whoami line, echo one line and
// close, in a loop, counting successes per backend and failures.
class LoadClients {
public:
    LoadClients(std::uint16_t port, int threads)
    {
        for (int t = 0; t < threads; ++t)
            threads_.emplace_back([this, port, t] { run(port, t); });
    }
    ~LoadClients() { stop(); }
    void stop()
    {
        stop_ = true;
        for (auto& thread : threads_)
            if (thread.joinable())
                thread.join();
    }
    std::uint64_t ok() const { return ok_a_ + ok_b_; }
    std::uint64_t ok_a() const { return ok_a_; }
    std::uint64_t ok_b() const { return ok_b_; }
    std::uint64_t failed() const { return failed_; }

private:
    void run(std::uint16_t port, int t)
    {
        std::uint64_t n = 0;
        while (!stop_) {
            int fd = try_connect(port);
            if (fd < 0) {
                ++failed_;
                continue;
            }
            Fd client(fd);
            std::string who = recv_line(client);
            std::string message = "client " + std::to_string(t) + " request " + std::to_string(n++) + "\n";
            if (::send(client, message.data(), message.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(message.size())
                || recv_line(client) + "\n" != message) {
                ++failed_;
                continue;
            }
            if (who == "a")
                ++ok_a_;
            else if (who == "b")
                ++ok_b_;
            else
                ++failed_;
        }
    }

    std::atomic<bool> stop_{false};
    std::atomic<std::uint64_t> ok_a_{0}, ok_b_{0}, failed_{0};
    std::vector<std::thread> threads_;
};

} // namespace

TEST_CASE("12 reloads adding and removing a backend under load fail no connection")
{
    EchoBackend a("a", "whoami"), b("b", "whoami");
    const std::string only_a = ops_config({{"a", a.address()}});
    const std::string both = ops_config({{"a", a.address()}, {"b", b.address()}});
    Sluice sluice(only_a);
    const std::uint16_t port = sluice.port("front");

    Fd long_lived(connect_tcp(port));
    CHECK(recv_line(long_lived) == "a");

    LoadClients load(port, 4);
    REQUIRE(wait_until([&] { return load.ok() >= 20; }));
    constexpr int kReloads = 12;
    for (int i = 1; i <= kReloads; ++i) {
        sluice.rewrite_config(i % 2 ? both : only_a);
        std::uint64_t before = load.ok();
        sluice.process().send_signal(SIGHUP);
        INFO(sluice.process().output());
        REQUIRE(sluice.process().wait_for_line(fmt::format("reload ok (generation {})", i + 1)));
        // Let traffic flow under each generation before the next reload.
        REQUIRE(wait_until([&] { return load.ok() >= before + 100; }));
    }
    load.stop();
    fmt::print(stderr, "reload under load: {} reloads, {} connections ok ({} to a, {} to b), {} failed\n", kReloads,
               load.ok(), load.ok_a(), load.ok_b(), load.failed());
    CHECK(load.failed() == 0);
    CHECK(load.ok_b() > 0);
    CHECK(load.ok() >= 100u * kReloads);
    send_all(long_lived, std::string("survived 12 reloads\n"));
    CHECK(recv_line(long_lived) == "survived 12 reloads");
    CHECK(sluice.process().count_lines("reload failed") == 0);

    AdminClient admin(admin_path(sluice));
    std::string stat = admin.command("json show stat");
    CHECK(stat.find(R"("generation":13,"reloads_ok":12,"reloads_failed":0)") != std::string::npos);
}

TEST_CASE("a reload keeps the admin state and counters of a backend that stays, and opens and closes listeners")
{
    EchoBackend a("a", "whoami"), b("b", "whoami");
    Sluice sluice(ops_config({{"a", a.address()}, {"b", b.address()}}, "", "workers = 1"));
    AdminClient admin(admin_path(sluice));
    for (int i = 0; i < 4; ++i) {
        Fd client(connect_tcp(sluice.port("front")));
        recv_line(client);
    }
    CHECK(admin.command("set server p/b state drain") == "p/b state drain");

    const std::string extra_listener = "\n[[listeners]]\nname = \"extra\"\nlisten = \"127.0.0.1:0\"\npool = \"p\"\n";
    sluice.rewrite_config(ops_config({{"a", a.address()}, {"b", b.address()}}, "", "workers = 1", "", extra_listener));
    CHECK(admin.command("reload") == "reload ok (generation 2)");
    auto line = sluice.process().wait_for_line("listener extra listening on ");
    REQUIRE(line);
    std::uint16_t extra_port = static_cast<std::uint16_t>(std::stoi(line->substr(line->rfind(':') + 1)));
    {
        Fd client(connect_tcp(extra_port));
        CHECK(recv_line(client) == "a");  // b is still drained
    }
    {
        Fd client(connect_tcp(sluice.port("front")));  // the kept listener, same port
        CHECK(recv_line(client) == "a");
    }
    // a: 2 sessions before the reload, 2 after; b: its 2 from before, and drained.
    std::string servers;
    CHECK(wait_until([&] {
        servers = admin.command("json show servers");
        return servers.find(R"("backend":"a",)") != std::string::npos
            && servers.find(R"("state":"ready","health":"up","why":"-","active":0,"total":4,)") != std::string::npos;
    }));
    INFO(servers);
    CHECK(servers.find(R"("state":"drain","health":"up","why":"-","active":0,"total":2,)") != std::string::npos);
    std::string stat = admin.command("json show stat");
    CHECK(stat.find(R"("name":"front","protocol":"tcp","address":"127.0.0.1:)" + std::to_string(sluice.port("front"))
                    + R"(","accepted":5,)")
          != std::string::npos);

    // Remove the extra listener again: its port stops accepting.
    sluice.rewrite_config(ops_config({{"a", a.address()}, {"b", b.address()}}, "", "workers = 1"));
    CHECK(admin.command("json reload") == R"({"ok":true,"generation":3,"errors":[]})");
    CHECK(sluice.process().wait_for_line("listener extra on 127.0.0.1:" + std::to_string(extra_port) + " closed"));
    CHECK(wait_until([&] {
        int fd = try_connect(extra_port);
        if (fd >= 0)
            ::close(fd);
        return fd < 0;
    }));
}

TEST_CASE("a bad config on reload is rejected with file:line:col and the old one keeps serving")
{
    EchoBackend a("a");
    Sluice sluice(ops_config({{"a", a.address()}}));
    sluice.rewrite_config("[global]\nworkers = 2\n\n[[listeners]]\nlisten = \"127.0.0.1:0\"\npool = \"nope\"\n\n"
                          "[pools.p]\nbackends = [ { address = \"127.0.0.1:9\", weight = 300 } ]\n");
    sluice.process().send_signal(SIGHUP);
    INFO(sluice.process().output());
    REQUIRE(sluice.process().wait_for_line("reload failed"));
    CHECK(sluice.process().count_lines(sluice.config_path() + ":6:8: unknown pool \"nope\"") == 1);
    CHECK(sluice.process().count_lines(sluice.config_path() + ":9:") == 1);

    Fd client(connect_tcp(sluice.port("front")));
    send_all(client, std::string("old config\n"));
    CHECK(recv_line(client) == "old config");

    AdminClient admin(admin_path(sluice));
    std::string reply = admin.command("reload");
    CHECK(reply.rfind("error: reload failed, the running configuration stays (generation 1)\n" + sluice.config_path()
                          + ":6:8: unknown pool \"nope\"",
                      0)
          == 0);
    CHECK(admin.command("json show stat").find(R"("generation":1,"reloads_ok":0,"reloads_failed":2)")
          != std::string::npos);
    CHECK(metric_value(http_get(sluice.metrics_port(), "/metrics"), "sluice_reloads_total{result=\"failed\"}") == 2);

    // A listener whose address is taken fails the reload as a whole.
    Fd blocker(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(blocker, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    REQUIRE(::listen(blocker, 1) == 0);
    socklen_t len = sizeof(addr);
    ::getsockname(blocker, reinterpret_cast<sockaddr*>(&addr), &len);
    sluice.rewrite_config(ops_config({{"a", a.address()}}, "", "workers = 2", "",
                                     fmt::format("\n[[listeners]]\nname = \"taken\"\nlisten = \"127.0.0.1:{}\"\n"
                                                 "pool = \"p\"\n",
                                                 ntohs(addr.sin_port))));
    CHECK(admin.command("reload").rfind("error: reload failed", 0) == 0);
    CHECK(admin.command("json show stat").find(R"("generation":1,"reloads_ok":0,"reloads_failed":3)")
          != std::string::npos);
    Fd again(connect_tcp(sluice.port("front")));
    send_all(again, std::string("still old\n"));
    CHECK(recv_line(again) == "still old");
}

namespace {

// The CPUs of each of sluice's worker threads ("sluice-w0", ...), worker 0 first.
std::vector<std::vector<int>> worker_cpus(pid_t pid)
{
    std::map<std::string, std::vector<int>> by_name;
    for (const auto& task : std::filesystem::directory_iterator(fmt::format("/proc/{}/task", pid))) {
        std::ifstream comm(task.path() / "comm");
        std::string name;
        std::getline(comm, name);
        if (name.rfind("sluice-w", 0) == 0)
            by_name[name] = sluice::allowed_cpus(std::stoi(task.path().filename()));
    }
    std::vector<std::vector<int>> cpus;
    for (auto& [name, set] : by_name)
        cpus.push_back(std::move(set));
    return cpus;
}

} // namespace

TEST_CASE("cpu_affinity binds one worker per CPU; a reload rebinds or frees them, and a CPU not here fails it")
{
    const std::vector<int> allowed = sluice::allowed_cpus();
    REQUIRE_FALSE(allowed.empty());
    const int first = allowed.front();
    const int second = allowed[1 % allowed.size()];
    const int last = allowed.back();

    EchoBackend a("a");
    Sluice sluice(ops_config({{"a", a.address()}}, "", "workers = 2\ncpu_affinity = \"auto\""));
    const pid_t pid = sluice.process().pid();
    INFO(sluice.process().output());
    using Layout = std::vector<std::vector<int>>;
    CHECK(wait_until([&] { return worker_cpus(pid) == Layout{{first}, {second}}; }));
    CHECK(sluice.process().count_lines(fmt::format("workers bound to CPUs {},{}", first, second)) == 1);
    Fd client(connect_tcp(sluice.port("front")));
    send_all(client, std::string("bound\n"));
    CHECK(recv_line(client) == "bound");

    sluice.rewrite_config(ops_config({{"a", a.address()}}, "", fmt::format("workers = 2\ncpu_affinity = [{}]", last)));
    sluice.process().send_signal(SIGHUP);
    REQUIRE(sluice.process().wait_for_line("reload ok (generation 2)"));
    CHECK(wait_until([&] { return worker_cpus(pid) == Layout{{last}, {last}}; }));

    // A CPU this process may not use: the reload fails and the binding stays.
    sluice.rewrite_config(ops_config({{"a", a.address()}}, "", "workers = 2\ncpu_affinity = [1023]"));
    sluice.process().send_signal(SIGHUP);
    REQUIRE(sluice.process().wait_for_line("reload failed"));
    CHECK(sluice.process().count_lines("cpu_affinity: CPU 1023 is not available to this process") == 1);
    CHECK(worker_cpus(pid) == Layout{{last}, {last}});

    // A worker count needs a restart: the reload says so and keeps two.
    sluice.rewrite_config(ops_config({{"a", a.address()}}, "", "workers = 3\ncpu_affinity = \"none\""));
    sluice.process().send_signal(SIGHUP);
    REQUIRE(sluice.process().wait_for_line("reload ok (generation 3)"));
    CHECK(wait_until([&] { return worker_cpus(pid) == Layout{allowed, allowed}; }));
    CHECK(sluice.process().count_lines("workers run on any CPU") == 1);
    CHECK(sluice.process().count_lines(
              "reload: [global] workers, max_connections, pipe_size, backlog and splice take effect at the next restart")
          == 1);

    send_all(client, std::string("still here\n"));
    CHECK(recv_line(client) == "still here");
}
