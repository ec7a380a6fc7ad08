// Several sluice instances as one service (issue 19): ip_hash sends each
// client to the same backend from every instance whatever the file order,
// other pools, restarts or reloads; and GET /health on the metrics address
// says whether this instance can serve (keepalived's vrrp_script, probes).
//
// Backends are `sluice-echo --mode whoami` named by their address only, so a
// backend's identity is its address text, the default.
#include "harness.h"

#include <catch2/catch.hpp>

#include <fmt/format.h>
#include <algorithm>
#include <csignal>
#include <map>
#include <memory>
#include <string>
#include <vector>

using namespace sluice::test;

namespace {

// One listener "front" on 127.0.0.1:0 in front of ip_hash pool "p" with
// `backends` in the given order; `extra_pool_backends` non-empty adds pool
// "other" before it (taking table slots first) with a listener of its own.
std::string instance_config(const std::vector<std::string>& backends,
                            const std::vector<std::string>& extra_pool_backends = {},
                            const std::string& more = "")
{
    auto list = [](const std::vector<std::string>& addresses) {
        std::string out;
        for (const auto& a : addresses)
            out += fmt::format("  {{ address = \"{}\" }},\n", a);
        return out;
    };
    std::string text = "[global]\nworkers = 2\n\n" + more;
    if (!extra_pool_backends.empty())
        text += fmt::format("[[listeners]]\nname = \"other\"\nlisten = \"127.0.0.1:0\"\npool = \"other\"\n\n"
                            "[pools.other]\nbalance = \"ip_hash\"\nbackends = [\n{}]\n\n",
                            list(extra_pool_backends));
    text += fmt::format("[[listeners]]\nname = \"front\"\nlisten = \"127.0.0.1:0\"\npool = \"p\"\n\n"
                        "[pools.p]\nbalance = \"ip_hash\"\nbackends = [\n{}]\n",
                        list(backends));
    return text;
}

// 300 client source addresses: 127.0.A.B is all loopback, and a client
// socket bound to one reaches sluice with that source IP.
std::vector<std::string> client_sources()
{
    std::vector<std::string> sources;
    for (int i = 0; i < 300; ++i)
        sources.push_back(fmt::format("127.0.{}.{}", 10 + i / 200, 1 + i % 200));
    return sources;
}

// The backend each source lands on through `port` (one session each).
std::vector<std::string> routes(std::uint16_t port, const std::vector<std::string>& sources)
{
    std::vector<std::string> out;
    for (const auto& source : sources) {
        int fd = connect_tcp(port, "127.0.0.1", source);
        set_receive_timeout(fd, 5s);
        out.push_back(recv_line(fd));
        ::close(fd);
    }
    return out;
}

std::vector<std::string> addresses_of(const std::vector<std::unique_ptr<EchoBackend>>& backends,
                                      std::initializer_list<int> order)
{
    std::vector<std::string> out;
    for (int i : order)
        out.push_back(backends[static_cast<std::size_t>(i)]->address());
    return out;
}

std::string status_line(const std::string& response) { return response.substr(0, response.find("\r\n")); }
std::string body_of(const std::string& response)
{
    auto end = response.find("\r\n\r\n");
    return end == std::string::npos ? "" : response.substr(end + 4);
}

} // namespace

TEST_CASE("three instances with the backends in different orders and another pool route 300 clients identically")
{
    std::vector<std::unique_ptr<EchoBackend>> backends;
    for (int i = 0; i < 6; ++i)
        backends.push_back(std::make_unique<EchoBackend>(fmt::format("be{}", i), "whoami"));
    std::vector<std::unique_ptr<EchoBackend>> others;
    for (int i = 0; i < 4; ++i)
        others.push_back(std::make_unique<EchoBackend>(fmt::format("other{}", i), "whoami"));

    Sluice first(instance_config(addresses_of(backends, {0, 1, 2, 3, 4, 5})));
    Sluice second(instance_config(addresses_of(backends, {5, 3, 1, 0, 4, 2})));
    // The other pool comes first in the file, so every backend of "p" sits in
    // another table slot than on the first two instances.
    Sluice third(instance_config(addresses_of(backends, {2, 4, 0, 5, 1, 3}), addresses_of(others, {0, 1, 2, 3})));

    const auto sources = client_sources();
    const auto expected = routes(first.port("front"), sources);
    std::map<std::string, int> per_backend;
    for (const auto& name : expected)
        ++per_backend[name];
    // Every client got a backend, and all six take clients.
    CHECK(per_backend.count("") == 0);
    CHECK(per_backend.size() == 6);

    CHECK(routes(second.port("front"), sources) == expected);
    CHECK(routes(third.port("front"), sources) == expected);

    SECTION("a restart with the order changed and the other pool gone moves no client")
    {
        second.process().send_signal(SIGTERM);
        REQUIRE(second.process().wait_exit(20s) == 0);
        Sluice restarted(instance_config(addresses_of(backends, {4, 2, 5, 3, 0, 1})));
        CHECK(routes(restarted.port("front"), sources) == expected);
    }

    SECTION("a reload that reorders the backends and drops the other pool moves no client")
    {
        third.rewrite_config(instance_config(addresses_of(backends, {1, 0, 3, 2, 5, 4})));
        third.process().send_signal(SIGHUP);
        REQUIRE(third.process().wait_for_line("reload ok", 20s));
        CHECK(routes(third.port("front"), sources) == expected);
    }
}

TEST_CASE("GET /health answers 200 while every pool has a backend and 503 naming the pool that has none")
{
    auto a = std::make_unique<EchoBackend>("a", "whoami");
    EchoBackend b("b", "whoami");
    const std::string a_address = a->address();
    const std::string config =
        fmt::format("[global]\nworkers = 1\n\n[admin]\nsocket = \"\"\nmetrics = \"127.0.0.1:0\"\n\n"
                    "[[listeners]]\nname = \"one\"\nlisten = \"127.0.0.1:0\"\npool = \"one\"\n\n"
                    "[[listeners]]\nname = \"two\"\nlisten = \"127.0.0.1:0\"\npool = \"two\"\n\n"
                    "[pools.one]\nhealth = {{ interval = \"100ms\", timeout = \"100ms\", rise = 1, fall = 1 }}\n"
                    "backends = [{{ address = \"{}\" }}]\n\n"
                    "[pools.two]\nbackends = [{{ address = \"{}\" }}]\n",
                    a_address, b.address());
    Sluice sluice(config);
    const std::uint16_t metrics = sluice.metrics_port();

    std::string response = http_get(metrics, "/health");
    CHECK(status_line(response) == "HTTP/1.1 200 OK");
    CHECK(body_of(response) == "ok\n");

    a->stop();
    REQUIRE(wait_until([&] { return status_line(http_get(metrics, "/health")) != "HTTP/1.1 200 OK"; }, 10s));
    response = http_get(metrics, "/health");
    CHECK(status_line(response) == "HTTP/1.1 503 Service Unavailable");
    CHECK(body_of(response) == "pool \"one\": no usable backend\n");

    // The backend returns on its address: healthy again.
    EchoBackend again("a", "whoami", a_address);
    CHECK(wait_until([&] { return status_line(http_get(metrics, "/health")) == "HTTP/1.1 200 OK"; }, 10s));
}

TEST_CASE("GET /health answers 503 once sluice drains, before it exits")
{
    EchoBackend a("a", "whoami");
    const std::string config =
        fmt::format("[global]\nworkers = 1\ndrain_timeout = \"10s\"\n\n[admin]\nsocket = \"\"\n"
                    "metrics = \"127.0.0.1:0\"\n\n"
                    "[[listeners]]\nname = \"front\"\nlisten = \"127.0.0.1:0\"\npool = \"p\"\n\n"
                    "[pools.p]\nbackends = [{{ address = \"{}\" }}]\n",
                    a.address());
    Sluice sluice(config);
    const std::uint16_t metrics = sluice.metrics_port();
    REQUIRE(status_line(http_get(metrics, "/health")) == "HTTP/1.1 200 OK");

    // A session held open keeps the drain (and the admin thread) going.
    int held = connect_tcp(sluice.port("front"));
    set_receive_timeout(held, 5s);
    REQUIRE(recv_line(held) == "a");
    sluice.process().send_signal(SIGTERM);
    REQUIRE(sluice.process().wait_for_line("draining", 10s));
    std::string response;
    REQUIRE(wait_until(
        [&] {
            response = http_get(metrics, "/health");
            return status_line(response) == "HTTP/1.1 503 Service Unavailable";
        },
        5s));
    CHECK(body_of(response) == "draining: listeners closed, no new sessions\n");
    ::close(held);
    CHECK(sluice.process().wait_exit(20s) == 0);
}
