// Stopping sluice (SIGTERM drain, drain_timeout, second signal) and the
// systemd notifications it sends on the way.
#include "operations_support.h"

#include <catch2/catch.hpp>

#include <csignal>
#include <cstring>
#include <ctime>
#include <poll.h>
#include <sys/un.h>

using namespace sluice::test;

TEST_CASE("SIGTERM refuses new clients at once and lets a live session finish, then exits 0")
{
    EchoBackend a("a");
    Sluice sluice(ops_config({{"a", a.address()}}));
    const std::uint16_t port = sluice.port("front");
    int fd = connect_tcp(port);
    send_all(fd, std::string("before\n"));
    CHECK(recv_line(fd) == "before");

    sluice.process().send_signal(SIGTERM);
    REQUIRE(sluice.process().wait_for_line("stopping: listeners closed, draining 1 sessions"));
    CHECK(wait_until([&] {
        int probe = try_connect(port);
        if (probe >= 0)
            ::close(probe);
        return probe < 0;
    }));
    // The session keeps working while draining.
    auto until = Clock::now() + 500ms;
    while (Clock::now() < until) {
        send_all(fd, std::string("during drain\n"));
        CHECK(recv_line(fd) == "during drain");
        std::this_thread::sleep_for(50ms);
    }
    CHECK(sluice.process().running());
    ::close(fd);  // the last session ends: sluice exits well before drain_timeout (30s)
    auto status = sluice.process().wait_exit(5s);
    REQUIRE(status);
    CHECK(*status == 0);
    CHECK(sluice.process().count_lines("sluice stopped") == 1);
}

TEST_CASE("drain_timeout closes the sessions still open and sluice exits 0")
{
    EchoBackend a("a");
    Sluice sluice(ops_config({{"a", a.address()}}, "", "workers = 2\ndrain_timeout = \"500ms\""));
    Fd client(connect_tcp(sluice.port("front")));
    send_all(client, std::string("x\n"));
    CHECK(recv_line(client) == "x");
    auto start = Clock::now();
    sluice.process().send_signal(SIGTERM);
    auto status = sluice.process().wait_exit(10s);
    REQUIRE(status);
    CHECK(*status == 0);
    CHECK(Clock::now() - start >= 450ms);
    CHECK(sluice.process().count_lines("drain timeout: closing 1 remaining sessions") == 1);
    CHECK(recv_until_eof(client).empty());
}

TEST_CASE("a second SIGTERM exits at once")
{
    EchoBackend a("a");
    Sluice sluice(ops_config({{"a", a.address()}}));
    Fd client(connect_tcp(sluice.port("front")));
    send_all(client, std::string("x\n"));
    CHECK(recv_line(client) == "x");
    sluice.process().send_signal(SIGTERM);
    REQUIRE(sluice.process().wait_for_line("stopping:"));
    auto start = Clock::now();
    sluice.process().send_signal(SIGTERM);
    auto status = sluice.process().wait_exit(10s);
    REQUIRE(status);
    CHECK(*status == 0);
    CHECK(Clock::now() - start < 5s);
    CHECK(sluice.process().count_lines("second stop signal: exiting now") == 1);
}

TEST_CASE("sd_notify: READY=1 at start, RELOADING=1 with MONOTONIC_USEC then READY=1 on reload, STOPPING=1")
{
    TempDir dir;
    const std::string path = dir.path() + "/notify.sock";
    Fd sock(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
    REQUIRE(::bind(sock, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
    auto next_message = [&]() -> std::string {
        pollfd p{sock, POLLIN, 0};
        if (::poll(&p, 1, 10000) != 1)
            return "<timeout>";
        char buf[1024];
        ssize_t n = ::recv(sock, buf, sizeof(buf), 0);
        return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "<error>";
    };

    EchoBackend a("a");
    Sluice sluice(ops_config({{"a", a.address()}}), {}, {"NOTIFY_SOCKET=" + path});
    CHECK(next_message().rfind("READY=1", 0) == 0);

    timespec now{};
    ::clock_gettime(CLOCK_MONOTONIC, &now);
    const std::uint64_t before_us = static_cast<std::uint64_t>(now.tv_sec) * 1000000u + now.tv_nsec / 1000;
    sluice.process().send_signal(SIGHUP);
    std::string reloading = next_message();
    REQUIRE(reloading.rfind("RELOADING=1\nMONOTONIC_USEC=", 0) == 0);
    std::uint64_t usec = std::stoull(reloading.substr(reloading.find('=', 12) + 1));
    ::clock_gettime(CLOCK_MONOTONIC, &now);
    CHECK(usec >= before_us);
    CHECK(usec <= static_cast<std::uint64_t>(now.tv_sec) * 1000000u + now.tv_nsec / 1000);
    CHECK(next_message() == "READY=1");

    sluice.process().send_signal(SIGTERM);
    CHECK(next_message() == "STOPPING=1");
    CHECK(sluice.process().wait_exit(10s) == 0);
}
