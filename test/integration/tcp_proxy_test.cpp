// The TCP data plane through the real sluice binary: bytes, half-close,
// resets, concurrency, round robin, timeouts, limits, --check.
#include "harness.h"
#include "sha256.h"

#include <catch2/catch.hpp>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <fmt/format.h>
#include <map>
#include <sys/socket.h>
#include <unistd.h>

using namespace sluice::test;

namespace {

struct PoolSpec {
    PoolSpec(std::vector<std::string> backend_addresses, std::string pool_keys = "")
        : backends(std::move(backend_addresses)), extra(std::move(pool_keys))
    {
    }
    std::vector<std::string> backends;
    std::string extra;  // more pool keys, TOML lines
};

// A config with one listener "front" on 127.0.0.1:0 in front of `pool`.
std::string proxy_config(const PoolSpec& pool, const std::string& listener_extra = "",
                         const std::string& global_extra = "workers = 2")
{
    std::string backends;
    for (const auto& b : pool.backends)
        backends += fmt::format("  {{ address = \"{}\" }},\n", b);
    return fmt::format("[global]\n{}\n\n"
                       "[[listeners]]\nname = \"front\"\nlisten = \"127.0.0.1:0\"\npool = \"p\"\n{}\n\n"
                       "[pools.p]\n{}\nbackends = [\n{}]\n",
                       global_extra, listener_extra, pool.extra, backends);
}

// Streams `total` pseudo-random bytes through an echo backend while reading the
// echo back, and checks both directions' SHA-256.
void check_echoed_byte_exact(std::uint16_t port, std::size_t total)
{
    Fd client(connect_tcp(port));
    constexpr std::size_t kChunk = 1u << 20;
    Sha256 sent_hash;
    std::thread sender([&] {
        for (std::size_t off = 0; off < total; off += kChunk) {
            std::string chunk = random_bytes(kChunk, off / kChunk + 1);
            sent_hash.update(chunk.data(), chunk.size());
            send_all(client, chunk);
        }
        ::shutdown(client, SHUT_WR);
    });
    Sha256 received_hash;
    std::size_t received = 0;
    char buf[1 << 16];
    while (true) {
        ssize_t n = ::recv(client, buf, sizeof(buf), 0);
        if (n <= 0)
            break;
        received_hash.update(buf, static_cast<std::size_t>(n));
        received += static_cast<std::size_t>(n);
    }
    sender.join();
    CHECK(received == total);
    CHECK(received_hash.hex_digest() == sent_hash.hex_digest());
}

// Sockets sluice holds with no session open: one listening socket per worker.
constexpr std::size_t kIdleSockets = 2;

} // namespace

TEST_CASE("64 MiB each way arrive byte-exact through the proxy")
{
    EchoBackend echo("echo");
    Sluice sluice(proxy_config({{echo.address()}}));
    check_echoed_byte_exact(sluice.port("front"), 64u << 20);
}

TEST_CASE("with splice off, 16 MiB each way arrive byte-exact through the copy buffers")
{
    EchoBackend echo("echo");
    Sluice sluice(proxy_config({{echo.address()}}, "", "workers = 2\nsplice = false"));
    check_echoed_byte_exact(sluice.port("front"), 16u << 20);
}

TEST_CASE("small exchanges are copied, bulk transfers are spliced")
{
    // Splice moves bulk data without copying it, but for messages of a few
    // hundred bytes it costs as much as a copy and worsens request/response
    // tail latency; sluice copies small reads and splices once a direction
    // streams. Pipes are borrowed from the worker's pool and kept there once
    // made, so sluice's pipe descriptors show whether any splice happened.
    EchoBackend echo("echo");
    Sluice sluice(proxy_config({{echo.address()}}, "", "workers = 1"));
    pid_t pid = sluice.process().pid();
    std::size_t pipes_before = open_fd_count(pid, "pipe:");
    {
        Fd client(connect_tcp(sluice.port("front")));
        for (int i = 0; i < 200; ++i) {
            std::string request = fmt::format("request {:04} {}", i, std::string(100, 'x'));
            send_all(client, request);
            CHECK(recv_exact(client, request.size()) == request);
        }
    }
    CHECK(open_fd_count(pid, "pipe:") == pipes_before);
    check_echoed_byte_exact(sluice.port("front"), 8u << 20);
    // One pipe (two descriptors) per direction, back in the pool.
    CHECK(open_fd_count(pid, "pipe:") >= pipes_before + 2);
}

TEST_CASE("a backend that does not read stalls the client instead of growing sluice's memory")
{
    std::atomic<bool> release{false};
    ScriptedServer backend([&](int) { wait_until([&] { return release.load(); }, 60s); });
    Sluice sluice(proxy_config({{backend.address()}}));
    long rss_before = rss_kib(sluice.process().pid());
    Fd client(connect_tcp(sluice.port("front")));
    timeval tv{1, 0};  // a send blocked for a second means: stalled
    ::setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    const std::string chunk = random_bytes(1u << 20, 5);
    std::size_t accepted = 0;
    while (accepted < (256u << 20)) {
        ssize_t n = ::send(client, chunk.data(), chunk.size(), MSG_NOSIGNAL);
        if (n <= 0)
            break;
        accepted += static_cast<std::size_t>(n);
    }
    long rss_after = rss_kib(sluice.process().pid());
    release = true;
    INFO("accepted " << accepted << " bytes; sluice RSS " << rss_before << " -> " << rss_after << " KiB");
    // Socket buffers on three hops plus one pipe: tens of MiB at most.
    CHECK(accepted < (64u << 20));
    // The bytes in flight sit in kernel buffers and the pipe, not in sluice.
    CHECK(rss_after - rss_before < 8 * 1024);
}

TEST_CASE("many small writes arrive in order and complete")
{
    EchoBackend echo("echo");
    Sluice sluice(proxy_config({{echo.address()}}));
    Fd client(connect_tcp(sluice.port("front")));

    std::string expected;
    std::thread sender([&] {
        for (int i = 0; i < 20000; ++i) {
            std::string piece = random_bytes(1 + i % 97, static_cast<std::uint64_t>(i));
            send_all(client, piece);
        }
        ::shutdown(client, SHUT_WR);
    });
    for (int i = 0; i < 20000; ++i)
        expected += random_bytes(1 + i % 97, static_cast<std::uint64_t>(i));
    std::string got = recv_until_eof(client);
    sender.join();
    CHECK(got.size() == expected.size());
    CHECK(got == expected);
}

TEST_CASE("a client half-close reaches the backend while the backend keeps sending")
{
    // The backend reads until EOF, then answers with a large reply.
    std::atomic<std::size_t> backend_received{0};
    const std::string reply = random_bytes(3u << 20, 7);
    ScriptedServer backend([&](int fd) {
        std::string request = recv_until_eof(fd);
        backend_received = request.size();
        send_all(fd, reply);
    });
    Sluice sluice(proxy_config({{backend.address()}}));
    Fd client(connect_tcp(sluice.port("front")));
    const std::string request = random_bytes(100000, 3);
    send_all(client, request);
    ::shutdown(client, SHUT_WR);
    int error = 0;
    std::string got = recv_until_eof(client, &error);
    CHECK(error == 0);
    CHECK(backend_received == request.size());
    CHECK(got.size() == reply.size());
    CHECK(got == reply);
    // Both directions ended: sluice closed both sockets (nothing in CLOSE_WAIT).
    CHECK(wait_until([&] { return open_socket_count(sluice.process().pid()) == kIdleSockets; }));
}

TEST_CASE("a backend half-close reaches the client while the client keeps sending")
{
    // The backend greets, shuts its sending side at once, then reads the
    // client's upload until EOF.
    std::mutex mutex;
    std::string backend_got;
    std::atomic<bool> backend_done{false};
    ScriptedServer backend([&](int fd) {
        send_all(fd, std::string("hello\n"));
        ::shutdown(fd, SHUT_WR);
        std::string upload = recv_until_eof(fd);
        std::lock_guard lock(mutex);
        backend_got = upload;
        backend_done = true;
    });
    Sluice sluice(proxy_config({{backend.address()}}));
    Fd client(connect_tcp(sluice.port("front")));
    CHECK(recv_until_eof(client) == "hello\n");  // greeting, then EOF
    const std::string upload = random_bytes(2u << 20, 11);
    send_all(client, upload);  // the client->backend direction still flows
    ::shutdown(client, SHUT_WR);
    REQUIRE(wait_until([&] { return backend_done.load(); }));
    std::lock_guard lock(mutex);
    CHECK(backend_got.size() == upload.size());
    CHECK(backend_got == upload);
    CHECK(wait_until([&] { return open_socket_count(sluice.process().pid()) == kIdleSockets; }));
}

TEST_CASE("a backend reset reaches the client as a reset")
{
    ScriptedServer backend([](int fd) {
        recv_exact(fd, 4);
        linger lg{1, 0};
        ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        // handler returns; the harness closes fd -> RST
    });
    Sluice sluice(proxy_config({{backend.address()}}));
    Fd client(connect_tcp(sluice.port("front")));
    send_all(client, std::string("ping"));
    int error = 0;
    recv_until_eof(client, &error);
    CHECK(error == ECONNRESET);
    CHECK(wait_until([&] { return open_socket_count(sluice.process().pid()) == kIdleSockets; }));
}

TEST_CASE("a client reset reaches the backend as a reset")
{
    std::atomic<int> backend_error{-1};
    ScriptedServer backend([&](int fd) {
        recv_exact(fd, 4);
        int error = 0;
        recv_until_eof(fd, &error);
        backend_error = error;
    });
    Sluice sluice(proxy_config({{backend.address()}}));
    {
        Fd client(connect_tcp(sluice.port("front")));
        send_all(client, std::string("ping"));
        REQUIRE(wait_until([&] { return true; }));
        linger lg{1, 0};
        ::setsockopt(client, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    REQUIRE(wait_until([&] { return backend_error.load() != -1; }));
    CHECK(backend_error == ECONNRESET);
}

TEST_CASE("2000 concurrent sessions are each echoed")
{
    EchoBackend a("a"), b("b");
    Sluice sluice(proxy_config({{a.address(), b.address()}}));
    std::vector<std::unique_ptr<Fd>> clients;
    for (int i = 0; i < 2000; ++i)
        clients.push_back(std::make_unique<Fd>(connect_tcp(sluice.port("front"))));
    for (int i = 0; i < 2000; ++i)
        send_all(*clients[i], fmt::format("session {:04}\n", i));
    int echoed = 0;
    for (int i = 0; i < 2000; ++i)
        echoed += recv_line(*clients[i]) == fmt::format("session {:04}", i);
    CHECK(echoed == 2000);
}

TEST_CASE("round robin spreads 30 connections 10/10/10")
{
    EchoBackend a("a", "whoami"), b("b", "whoami"), c("c", "whoami");
    // One worker: round-robin position is per worker (no lock), so exact
    // counts are a property of one worker's balancer.
    Sluice sluice(proxy_config({{a.address(), b.address(), c.address()}}, "", "workers = 1"));
    std::map<std::string, int> hits;
    for (int i = 0; i < 30; ++i) {
        Fd client(connect_tcp(sluice.port("front")));
        ++hits[recv_line(client)];
    }
    CHECK(hits["a"] == 10);
    CHECK(hits["b"] == 10);
    CHECK(hits["c"] == 10);
}

TEST_CASE("an idle session is closed by idle_timeout")
{
    EchoBackend echo("echo");
    Sluice sluice(proxy_config({{echo.address()}}, "idle_timeout = \"300ms\""));
    Fd client(connect_tcp(sluice.port("front")));
    send_all(client, std::string("x"));
    CHECK(recv_exact(client, 1) == "x");
    auto start = Clock::now();
    int error = 0;
    CHECK(recv_until_eof(client, &error).empty());
    auto waited = Clock::now() - start;
    CHECK(error == 0);  // a clean close, not a 10 s receive timeout
    CHECK(waited >= 250ms);
    CHECK(waited < 5s);
}

TEST_CASE("a session with traffic outlives idle_timeout")
{
    EchoBackend echo("echo");
    Sluice sluice(proxy_config({{echo.address()}}, "idle_timeout = \"400ms\""));
    Fd client(connect_tcp(sluice.port("front")));
    auto until = Clock::now() + 1200ms;
    while (Clock::now() < until) {
        send_all(client, std::string("y"));
        REQUIRE(recv_exact(client, 1) == "y");
        std::this_thread::sleep_for(100ms);  // pacing the client, not waiting for sluice
    }
}

TEST_CASE("a backend that never answers the SYN hits connect_timeout")
{
    BlackholeServer blackhole;
    Sluice sluice(proxy_config({{blackhole.address()}, "connect_timeout = \"300ms\"\nretries = 0\nmax_fails = 0"}));
    Fd client(connect_tcp(sluice.port("front")));
    auto start = Clock::now();
    int error = 0;
    recv_until_eof(client, &error);
    auto waited = Clock::now() - start;
    CHECK(error != EAGAIN);  // closed by sluice, not by our 10 s receive timeout
    CHECK(waited >= 250ms);
    CHECK(waited < 5s);
}

TEST_CASE("max_connections refuses sessions beyond the limit and serves the rest")
{
    EchoBackend echo("echo");
    Sluice sluice(proxy_config({{echo.address()}}, "", "workers = 1\nmax_connections = 2"));
    Fd first(connect_tcp(sluice.port("front")));
    Fd second(connect_tcp(sluice.port("front")));
    send_all(first, std::string("1"));
    send_all(second, std::string("2"));
    CHECK(recv_exact(first, 1) == "1");
    CHECK(recv_exact(second, 1) == "2");
    Fd third(connect_tcp(sluice.port("front")));
    int error = 0;
    CHECK(recv_until_eof(third, &error).empty());
    // Still serving the first two.
    send_all(first, std::string("3"));
    CHECK(recv_exact(first, 1) == "3");
}

TEST_CASE("an IPv6 listener proxies to an IPv4 backend")
{
    EchoBackend echo("echo");
    std::string config = proxy_config({{echo.address()}});
    auto at = config.find("127.0.0.1:0");
    config.replace(at, 11, "[::1]:0");
    Sluice sluice(config);
    Fd client(connect_tcp(sluice.port("front"), "::1"));
    send_all(client, std::string("over v6\n"));
    CHECK(recv_line(client) == "over v6");
}

TEST_CASE("SIGTERM stops accepting and exits 0")
{
    EchoBackend echo("echo");
    Sluice sluice(proxy_config({{echo.address()}}));
    sluice.process().send_signal(SIGTERM);
    auto status = sluice.process().wait_exit(10s);
    REQUIRE(status);
    CHECK(*status == 0);
}

TEST_CASE("--check accepts a valid file and exits 0")
{
    TempDir dir;
    std::string path = dir.write("ok.toml", proxy_config({{"127.0.0.1:9"}}));
    Process check(binary_from_env("SLUICE_BIN"), {"-c", path, "--check"});
    auto status = check.wait_exit();
    REQUIRE(status);
    CHECK(*status == 0);
}

TEST_CASE("--check reports each error with file, line and column and exits 1")
{
    TempDir dir;
    std::string path = dir.write("bad.toml",
                                 "[global]\nworkers = 2\n\n[[listeners]]\nlisten = \"127.0.0.1:0\"\npool = \"nope\"\n\n"
                                 "[pools.p]\nbackends = [ { address = \"127.0.0.1:9\", weight = 300 } ]\n");
    Process check(binary_from_env("SLUICE_BIN"), {"-t", "-c", path});
    auto status = check.wait_exit();
    REQUIRE(status);
    CHECK(*status == 1);
    CHECK(check.wait_for_line(path + ":6:"));  // unknown pool
    CHECK(check.wait_for_line(path + ":9:"));  // weight out of range
}

TEST_CASE("--version and --help exit 0")
{
    Process version(binary_from_env("SLUICE_BIN"), {"--version"});
    CHECK(version.wait_exit() == 0);
    CHECK(version.wait_for_line("sluice "));
    Process help(binary_from_env("SLUICE_BIN"), {"--help"});
    CHECK(help.wait_exit() == 0);
    CHECK(help.wait_for_line("usage: sluice"));
}
