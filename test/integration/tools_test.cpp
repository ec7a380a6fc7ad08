// sluice-echo and sluice-bench, run as real processes on loopback.
#include "harness.h"
#include "sluice/addr.h"
#include "sluice/fd.h"

#include <catch2/catch.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <csignal>
#include <random>
#include <regex>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using sluice::SocketAddress;
using sluice::UniqueFd;
using sluice::test::Process;
using sluice::test::binary_from_env;

namespace {

// Socket operations in these tests block, but never for more than this: a
// broken tool fails the test instead of hanging it.
constexpr int kIoTimeoutSeconds = 10;

struct RunningEcho {
    std::unique_ptr<Process> process;
    SocketAddress address;
};

// Starts sluice-echo on 127.0.0.1:0 and waits for its "listening on" line.
RunningEcho start_echo(std::vector<std::string> extra_args = {})
{
    std::vector<std::string> argv{"--listen", "127.0.0.1:0"};
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    RunningEcho echo;
    echo.process = std::make_unique<Process>(binary_from_env("SLUICE_ECHO_BIN"), argv);
    auto line = echo.process->wait_for_line("listening on", 10s);
    INFO("stderr: " << echo.process->stderr_text());
    REQUIRE(line);
    const std::string prefix = "listening on ";
    REQUIRE(line->rfind(prefix, 0) == 0);
    auto address = SocketAddress::parse(line->substr(prefix.size()));
    REQUIRE(address);
    REQUIRE(address->port() != 0);
    echo.address = *address;
    return echo;
}

void set_timeouts(int fd)
{
    timeval tv{kIoTimeoutSeconds, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

// A blocking TCP connection, with timeouts.
UniqueFd connect_tcp(const SocketAddress& address)
{
    UniqueFd fd(::socket(address.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(fd.valid());
    set_timeouts(fd.get());
    REQUIRE(::connect(fd.get(), address.sockaddr_ptr(), address.length()) == 0);
    return fd;
}

UniqueFd connect_udp(const SocketAddress& address)
{
    UniqueFd fd(::socket(address.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0));
    REQUIRE(fd.valid());
    set_timeouts(fd.get());
    REQUIRE(::connect(fd.get(), address.sockaddr_ptr(), address.length()) == 0);
    return fd;
}

// Returns false if the socket failed (not a REQUIRE: runs on writer threads).
bool send_all(int fd, const std::string& data)
{
    std::size_t sent = 0;
    while (sent < data.size()) {
        ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
        if (n <= 0)
            return false;
        sent += static_cast<std::size_t>(n);
    }
    return true;
}

// Reads exactly `count` bytes, or fewer if EOF, an error or the timeout
// comes first.
std::string receive_exactly(int fd, std::size_t count)
{
    std::string data(count, '\0');
    std::size_t got = 0;
    while (got < count) {
        ssize_t n = ::recv(fd, data.data() + got, count - got, 0);
        if (n <= 0)
            break;
        got += static_cast<std::size_t>(n);
    }
    data.resize(got);
    return data;
}

// Reads until EOF. `saw_eof` is false if it stopped on an error or timeout.
std::string receive_until_eof(int fd, bool& saw_eof)
{
    std::string data;
    char buffer[65536];
    for (;;) {
        ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
        if (n == 0) {
            saw_eof = true;
            return data;
        }
        if (n < 0) {
            saw_eof = false;
            return data;
        }
        data.append(buffer, static_cast<std::size_t>(n));
    }
}

std::string random_bytes(std::size_t count, unsigned seed)
{
    std::mt19937 random(seed);
    std::string data(count, '\0');
    for (auto& c : data)
        c = static_cast<char>(random() & 0xff);
    return data;
}

// The number after "key": in a flat or nested JSON text; nullopt if absent.
std::optional<double> json_number(const std::string& json, const std::string& key)
{
    std::smatch match;
    if (!std::regex_search(json, match, std::regex("\"" + key + "\":(-?[0-9.]+)")))
        return std::nullopt;
    return std::stod(match[1].str());
}

// The "errors":{...} object's entries.
std::vector<std::pair<std::string, double>> json_errors(const std::string& json)
{
    std::vector<std::pair<std::string, double>> entries;
    std::smatch object;
    if (!std::regex_search(json, object, std::regex("\"errors\":\\{([^}]*)\\}")))
        return entries;
    const std::string body = object[1].str();
    std::regex entry("\"([a-z_]+)\":([0-9]+)");
    for (auto it = std::sregex_iterator(body.begin(), body.end(), entry); it != std::sregex_iterator(); ++it)
        entries.emplace_back((*it)[1].str(), std::stod((*it)[2].str()));
    return entries;
}

struct BenchRun {
    int exit_code = -1;
    std::string stdout_text;
    std::string stderr_text;
};

// Sends `data` to an echo at `address` and then a FIN, reading meanwhile:
// every byte must come back, in order, followed by EOF.
void check_echo_through_half_close(const SocketAddress& address, const std::string& data)
{
    UniqueFd fd = connect_tcp(address);
    bool sent = false;
    std::thread writer([&] {
        sent = send_all(fd.get(), data);
        ::shutdown(fd.get(), SHUT_WR);
    });
    bool saw_eof = false;
    const std::string back = receive_until_eof(fd.get(), saw_eof);
    writer.join();
    CHECK(sent);
    CHECK(saw_eof);
    REQUIRE(back.size() == data.size());
    CHECK(back == data);
}

BenchRun run_bench(std::vector<std::string> args)
{
    Process bench(binary_from_env("SLUICE_BENCH_BIN"), args);
    auto code = bench.wait_exit(60s);
    REQUIRE(code);
    return BenchRun{*code, bench.stdout_text(), bench.stderr_text()};
}

} // namespace

TEST_CASE("sluice-echo prints the port it bound and echoes 1 MiB byte-exact")
{
    auto echo = start_echo();
    UniqueFd fd = connect_tcp(echo.address);
    const std::string data = random_bytes(1 << 20, 1);
    // The echo stops reading while its 64 KiB are unsent, so write and read
    // at the same time.
    bool sent = false;
    std::thread writer([&] { sent = send_all(fd.get(), data); });
    const std::string back = receive_exactly(fd.get(), data.size());
    writer.join();
    CHECK(sent);
    REQUIRE(back.size() == data.size());
    CHECK(back == data);
}

TEST_CASE("sluice-echo whoami sends its name first, then echoes")
{
    auto echo = start_echo({"--mode", "whoami", "--name", "backend-a"});
    UniqueFd fd = connect_tcp(echo.address);
    CHECK(receive_exactly(fd.get(), 10) == "backend-a\n");
    REQUIRE(send_all(fd.get(), "hello"));
    CHECK(receive_exactly(fd.get(), 5) == "hello");
}

TEST_CASE("sluice-echo whoami defaults its name to the bound address")
{
    auto echo = start_echo({"--mode", "whoami"});
    UniqueFd fd = connect_tcp(echo.address);
    const std::string expected = echo.address.to_string() + "\n";
    CHECK(receive_exactly(fd.get(), expected.size()) == expected);
}

TEST_CASE("sluice-echo echoes everything after a client's half-close, then sends EOF")
{
    auto echo = start_echo();
    // More than the echo's buffer, so the FIN arrives while data is pending.
    check_echo_through_half_close(echo.address, random_bytes(512 * 1024, 2));
}

TEST_CASE("sluice-echo echoes a 65507-byte UDP datagram whole")
{
    auto echo = start_echo({"--udp"});
    UniqueFd fd = connect_udp(echo.address);
    const std::string data = random_bytes(65507, 3);
    REQUIRE(::send(fd.get(), data.data(), data.size(), 0) == static_cast<ssize_t>(data.size()));
    std::string back(70000, '\0');
    ssize_t n = ::recv(fd.get(), back.data(), back.size(), 0);
    REQUIRE(n == static_cast<ssize_t>(data.size()));
    back.resize(static_cast<std::size_t>(n));
    CHECK(back == data);
}

TEST_CASE("sluice-echo whoami over UDP puts the name before each reply")
{
    auto echo = start_echo({"--udp", "--mode", "whoami", "--name", "u1"});
    UniqueFd fd = connect_udp(echo.address);
    for (const std::string query : {"first", "second"}) {
        REQUIRE(::send(fd.get(), query.data(), query.size(), 0) == static_cast<ssize_t>(query.size()));
        char buffer[256];
        ssize_t n = ::recv(fd.get(), buffer, sizeof(buffer), 0);
        REQUIRE(n > 0);
        CHECK(std::string(buffer, static_cast<std::size_t>(n)) == "u1\n" + query);
    }
}

TEST_CASE("sluice-echo source streams a..z repeated for as long as the client reads")
{
    auto echo = start_echo({"--mode", "source"});
    UniqueFd fd = connect_tcp(echo.address);
    const std::string back = receive_exactly(fd.get(), 1 << 20);
    REQUIRE(back.size() == 1u << 20);
    bool pattern_holds = true;
    for (std::size_t i = 0; i < back.size() && pattern_holds; ++i)
        pattern_holds = back[i] == static_cast<char>('a' + i % 26);
    CHECK(pattern_holds);
}

TEST_CASE("sluice-echo sink reads everything and answers a FIN with EOF and no data")
{
    auto echo = start_echo({"--mode", "sink"});
    UniqueFd fd = connect_tcp(echo.address);
    REQUIRE(send_all(fd.get(), random_bytes(1 << 20, 4)));
    ::shutdown(fd.get(), SHUT_WR);
    bool saw_eof = false;
    CHECK(receive_until_eof(fd.get(), saw_eof).empty());
    CHECK(saw_eof);
}

TEST_CASE("sluice-echo with several threads serves every connection")
{
    auto echo = start_echo({"--threads", "3"});
    std::vector<UniqueFd> connections;
    for (int i = 0; i < 24; ++i)
        connections.push_back(connect_tcp(echo.address));
    for (std::size_t i = 0; i < connections.size(); ++i) {
        const std::string message = "ping " + std::to_string(i);
        REQUIRE(send_all(connections[i].get(), message));
        CHECK(receive_exactly(connections[i].get(), message.size()) == message);
    }
}

TEST_CASE("sluice-echo exits 0 on SIGTERM with connections open")
{
    auto echo = start_echo({"--threads", "2"});
    UniqueFd fd = connect_tcp(echo.address);
    REQUIRE(send_all(fd.get(), "x"));
    REQUIRE(receive_exactly(fd.get(), 1) == "x");
    echo.process->send_signal(SIGTERM);
    CHECK(echo.process->wait_exit(10s) == 0);
}

TEST_CASE("sluice-bench rr against sluice-echo reports requests and no errors")
{
    auto echo = start_echo();
    auto run = run_bench({"--target", echo.address.to_string(), "--mode", "rr", "--concurrency", "8",
                          "--duration", "1s", "--json"});
    INFO("stdout: " << run.stdout_text << "\nstderr: " << run.stderr_text);
    CHECK(run.exit_code == 0);
    CHECK(json_number(run.stdout_text, "requests").value_or(0) > 0);
    CHECK(json_number(run.stdout_text, "rate").value_or(0) > 0);
    CHECK(json_number(run.stdout_text, "errors_total") == 0);
    CHECK(json_number(run.stdout_text, "p99").value_or(0) > 0);
    CHECK(json_number(run.stdout_text, "duration_s").value_or(0) == Approx(1.0).epsilon(0.05));
    const auto errors = json_errors(run.stdout_text);
    CHECK(errors.size() >= 8);
    for (const auto& [kind, count] : errors) {
        INFO(kind);
        CHECK(count == 0);
    }
}

TEST_CASE("sluice-bench rr at a fixed rate sends about that many requests")
{
    auto echo = start_echo();
    auto run = run_bench({"--target", echo.address.to_string(), "--mode", "rr", "--concurrency", "4",
                          "--rate", "400", "--duration", "1s", "--json"});
    INFO("stdout: " << run.stdout_text << "\nstderr: " << run.stderr_text);
    CHECK(run.exit_code == 0);
    CHECK(json_number(run.stdout_text, "requests").value_or(0) == Approx(400).epsilon(0.1));
    CHECK(json_number(run.stdout_text, "target_rate") == 400);
    CHECK(json_number(run.stdout_text, "errors_total") == 0);
}

TEST_CASE("sluice-bench connect, stream and udp modes run clean against sluice-echo")
{
    auto tcp = start_echo();
    auto udp = start_echo({"--udp"});

    auto connect = run_bench({"--target", tcp.address.to_string(), "--mode", "connect", "--concurrency", "4",
                              "--duration", "1s", "--json"});
    INFO("connect: " << connect.stdout_text << connect.stderr_text);
    CHECK(connect.exit_code == 0);
    CHECK(json_number(connect.stdout_text, "requests").value_or(0) > 0);
    // One connection per request; those still under way when the window
    // closed were opened but not completed: at most one per client.
    const double connect_requests = json_number(connect.stdout_text, "requests").value_or(0);
    const double connections = json_number(connect.stdout_text, "connections").value_or(0);
    CHECK(connections >= connect_requests);
    CHECK(connections <= connect_requests + 4);
    CHECK(json_number(connect.stdout_text, "errors_total") == 0);

    auto stream = run_bench({"--target", tcp.address.to_string(), "--mode", "stream", "--concurrency", "2",
                             "--duration", "1s", "--json"});
    INFO("stream: " << stream.stdout_text << stream.stderr_text);
    CHECK(stream.exit_code == 0);
    CHECK(json_number(stream.stdout_text, "bytes").value_or(0) > 0);
    CHECK(json_number(stream.stdout_text, "gbit_per_s").value_or(0) > 0);
    CHECK(json_number(stream.stdout_text, "errors_total") == 0);

    auto datagrams = run_bench({"--target", udp.address.to_string(), "--mode", "udp", "--concurrency", "4",
                                "--size", "512", "--duration", "1s", "--json"});
    INFO("udp: " << datagrams.stdout_text << datagrams.stderr_text);
    CHECK(datagrams.exit_code == 0);
    CHECK(json_number(datagrams.stdout_text, "requests").value_or(0) > 0);
    CHECK(json_number(datagrams.stdout_text, "errors_total") == 0);
}

// bench/floor-proxy is only a yardstick, but scripts/compare --floor reports
// its rates next to sluice's: they mean something only if it proxies
// correctly, so the same byte-exact and half-close checks apply to it.
TEST_CASE("floor-proxy relays 1 MiB byte-exact through a half-close, and sluice-bench's loads without errors")
{
    auto echo = start_echo();
    const std::uint16_t port = sluice::test::unused_port();
    Process floor(binary_from_env("FLOOR_PROXY_BIN"),
                  {"--listen", std::to_string(port), "--backend", std::to_string(echo.address.port())});
    auto address = SocketAddress::parse("127.0.0.1:" + std::to_string(port));
    REQUIRE(address);
    INFO("floor-proxy: " << floor.output());
    REQUIRE(sluice::test::wait_until([&] {
        UniqueFd probe(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        return ::connect(probe.get(), address->sockaddr_ptr(), address->length()) == 0;
    }));

    check_echo_through_half_close(*address, random_bytes(1 << 20, 9));

    for (const char* mode : {"connect", "rr"}) {
        auto run = run_bench({"--target", address->to_string(), "--mode", mode, "--concurrency", "8",
                              "--duration", "1s", "--json"});
        INFO(mode << ": " << run.stdout_text << run.stderr_text);
        CHECK(run.exit_code == 0);
        CHECK(json_number(run.stdout_text, "requests").value_or(0) > 0);
        CHECK(json_number(run.stdout_text, "errors_total") == 0);
    }
    CHECK(floor.running());
}

TEST_CASE("sluice-bench counts refused connections and still exits 0")
{
    // A bound but not listening socket holds a port nobody accepts on.
    UniqueFd holder(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    auto any = SocketAddress::parse("127.0.0.1:0");
    REQUIRE(::bind(holder.get(), any->sockaddr_ptr(), any->length()) == 0);
    sockaddr_storage bound{};
    socklen_t length = sizeof(bound);
    REQUIRE(::getsockname(holder.get(), reinterpret_cast<sockaddr*>(&bound), &length) == 0);
    auto target = SocketAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&bound), length);

    auto run = run_bench({"--target", target.to_string(), "--mode", "rr", "--concurrency", "2", "--duration",
                          "300ms", "--json"});
    INFO("stdout: " << run.stdout_text << "\nstderr: " << run.stderr_text);
    CHECK(run.exit_code == 0);
    CHECK(json_number(run.stdout_text, "requests") == 0);
    CHECK(json_number(run.stdout_text, "connect_refused").value_or(0) > 0);
}

TEST_CASE("sluice-bench rejects a bad flag with exit code 2 and names it")
{
    auto run = run_bench({"--target", "127.0.0.1:9", "--concurrency", "zero"});
    CHECK(run.exit_code == 2);
    CHECK(run.stderr_text.find("--concurrency") != std::string::npos);
    CHECK(run.stdout_text.empty());
}
