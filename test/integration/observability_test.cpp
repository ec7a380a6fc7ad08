// Logs and metrics as an operator sees them: JSON access lines for TCP
// sessions and UDP flows, sluice's own lines in JSON, the latency histograms
// counting exactly the sessions made, and the shipped Grafana dashboard
// asking only for metrics sluice exports.
#include "harness.h"
#include "json_check.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <arpa/inet.h>
#include <csignal>
#include <fmt/format.h>
#include <fstream>
#include <netinet/in.h>
#include <poll.h>
#include <regex>
#include <set>
#include <sstream>
#include <sys/socket.h>
#include <unistd.h>

using namespace sluice::test;

namespace {

std::string read_text(const std::string& path)
{
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::size_t line_count(const std::string& text) { return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n')); }

// Waits until the file holds at least `lines` lines; returns its text.
std::string wait_for_lines(const std::string& path, std::size_t lines)
{
    std::string text;
    wait_until([&] {
        text = read_text(path);
        return line_count(text) >= lines;
    });
    return text;
}

// A [global] with `workers` and an [admin] serving /metrics on a free port.
std::string with_metrics(int workers)
{
    return fmt::format("[global]\nworkers = {}\n\n[admin]\nmetrics = \"127.0.0.1:0\"\n\n", workers);
}

std::size_t occurrences(const std::string& text, const std::string& needle)
{
    std::size_t count = 0;
    for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1))
        ++count;
    return count;
}

// One echoed exchange on a new connection, closed cleanly by the client.
void echo_session(std::uint16_t port, const std::string& payload)
{
    Fd client(connect_tcp(port));
    send_all(client, payload);
    CHECK(recv_exact(client, payload.size()) == payload);
    ::shutdown(client, SHUT_WR);
    CHECK(recv_until_eof(client).empty());
}

// The value of the sample `name{labels}` in a Prometheus text, or -1.
double sample(const std::string& metrics, const std::string& name_and_labels)
{
    const std::string key = "\n" + name_and_labels + " ";
    auto at = metrics.find(key);
    if (at == std::string::npos)
        return -1;
    return std::stod(metrics.substr(at + key.size()));
}

// A connected UDP socket to sluice's listener: one client address, one flow.
class UdpClient {
public:
    explicit UdpClient(std::uint16_t port)
    {
        fd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        REQUIRE(fd_ >= 0);
        sockaddr_in to{};
        to.sin_family = AF_INET;
        to.sin_port = htons(port);
        to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&to), sizeof(to)) == 0);
    }
    ~UdpClient() { ::close(fd_); }
    UdpClient(const UdpClient&) = delete;
    UdpClient& operator=(const UdpClient&) = delete;

    // Sends `datagram` and waits for its echo (loopback does not drop).
    bool echo(const std::string& datagram)
    {
        if (::send(fd_, datagram.data(), datagram.size(), 0) != static_cast<ssize_t>(datagram.size()))
            return false;
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, 5000) != 1)
            return false;
        std::string buffer(65536, '\0');
        ssize_t n = ::recv(fd_, buffer.data(), buffer.size(), 0);
        return n == static_cast<ssize_t>(datagram.size());
    }

private:
    int fd_ = -1;
};

} // namespace

TEST_CASE("a JSON access log has one valid line per TCP session, with connect time and retries")
{
    EchoBackend echo("a");
    const std::uint16_t dead = unused_port();
    Sluice sluice(with_metrics(1) + fmt::format(R"([[listeners]]
name = "front"
listen = "127.0.0.1:0"
pool = "p"
access_log = "@DIR@/front.log"
access_log_format = "json"

[[listeners]]
name = "flaky"
listen = "127.0.0.1:0"
pool = "q"
access_log = "@DIR@/flaky.log"
access_log_format = "json"

[pools.p]
backends = [{{ address = "{}", name = "a" }}]

[pools.q]
max_fails = 0
backends = [{{ address = "127.0.0.1:{}", name = "dead" }}, {{ address = "{}", name = "a" }}]
)",
                              echo.address(), dead, echo.address()));
    constexpr int kSessions = 3;
    for (int i = 0; i < kSessions; ++i)
        echo_session(sluice.port("front"), "hello-" + std::to_string(i));
    std::string front = wait_for_lines(sluice.dir() + "/front.log", kSessions);
    INFO(front);
    REQUIRE(line_count(front) == kSessions);
    std::string error;
    const bool valid = json_lines_valid(front, &error);
    INFO(error);
    CHECK(valid);
    const std::regex tcp_line(
        R"(\{"time":"[0-9T:.Z-]+","listener":"front","protocol":"tcp","client":"127\.0\.0\.1:\d+",)"
        R"("backend":"p/a","connect_ms":\d+\.\d{3},"duration_ms":\d+,"bytes_in":7,"bytes_out":7,"retries":0,)"
        R"("end":"done"\})");
    std::istringstream lines(front);
    for (std::string line; std::getline(lines, line);)
        CHECK(std::regex_match(line, tcp_line));

    // Round robin over a refused backend and a live one: every session ends
    // on the live one, and those that met the refused one first say so.
    for (int i = 0; i < 2; ++i)
        echo_session(sluice.port("flaky"), "x");
    std::string flaky = wait_for_lines(sluice.dir() + "/flaky.log", 2);
    INFO(flaky);
    CHECK(json_lines_valid(flaky));
    const std::size_t retried = occurrences(flaky, R"("retries":1,)");
    CHECK(retried >= 1);
    CHECK(occurrences(flaky, R"("retries":0,)") + retried == 2);
    CHECK(occurrences(flaky, R"("backend":"q/a","connect_ms":)") == 2);
    const std::string metrics = http_get(sluice.metrics_port(), "/metrics");
    CHECK(sample(metrics, R"(sluice_pool_retries_total{pool="q"})") == static_cast<double>(retried));
}

TEST_CASE("a JSON access log has a line per UDP flow with datagrams each way")
{
    EchoBackend echo("u", "echo", "127.0.0.1:0", Transport::Udp);
    Sluice sluice(fmt::format(R"([global]
workers = 2

[[listeners]]
name = "dns"
listen = "127.0.0.1:0"
protocol = "udp"
pool = "p"
idle_timeout = "300ms"
access_log = "@DIR@/dns.log"
access_log_format = "json"

[pools.p]
backends = [{{ address = "{}", name = "u" }}]
)",
                              echo.address()));
    {
        UdpClient client(sluice.port("dns"));
        REQUIRE(client.echo("one"));
        REQUIRE(client.echo("three"));
        REQUIRE(client.echo("seven!!"));
    }
    std::string log = wait_for_lines(sluice.dir() + "/dns.log", 1);
    INFO(log);
    REQUIRE(line_count(log) == 1);
    CHECK(json_lines_valid(log));
    CHECK(std::regex_match(
        log, std::regex(R"(\{"time":"[0-9T:.Z-]+","listener":"dns","protocol":"udp","client":"127\.0\.0\.1:\d+",)"
                        R"("backend":"p/u","connect_ms":0\.000,"duration_ms":\d+,"bytes_in":15,"bytes_out":15,)"
                        R"("retries":0,"datagrams_in":3,"datagrams_out":3,"end":"idle-timeout"\}\n)")));
}

TEST_CASE("with log_format json every line sluice writes to stderr is a JSON object, level included")
{
    EchoBackend echo("a");
    auto config = [&](const char* level, int workers) {
        return fmt::format(R"([global]
log_format = "json"
log_level = "{}"
workers = {}

[[listeners]]
name = "front"
listen = "127.0.0.1:0"
pool = "p"

[pools.p]
backends = [{{ address = "{}" }}]
)",
                           level, workers, echo.address());
    };
    Sluice sluice(config("info", 2));
    CHECK(sluice.process().count_lines(R"("level":"info","message":"sluice started: )") == 1);
    // A reload to warning level: info lines stop, warnings still come.
    sluice.rewrite_config(config("warning", 3));
    sluice.process().send_signal(SIGHUP);
    REQUIRE(sluice.process().wait_for_line(R"("level":"warning","message":"reload: [global] workers)"));
    sluice.process().send_signal(SIGTERM);
    REQUIRE(sluice.process().wait_exit() == 0);
    const std::string text = sluice.process().stderr_text();
    INFO(text);
    std::string error;
    const bool valid = json_lines_valid(text, &error);
    INFO(error);
    CHECK(valid);
    CHECK(text.find(R"("message":"reload ok)") == std::string::npos);  // info, dropped at level warning
    CHECK(text.find(R"("message":"sluice stopped")") == std::string::npos);
}

TEST_CASE("latency histograms count every session made: connect time per backend, duration per pool, checks")
{
    EchoBackend echo("a");
    Sluice sluice(with_metrics(2) + fmt::format(R"([[listeners]]
name = "front"
listen = "127.0.0.1:0"
pool = "p"
access_log = "@DIR@/access.log"

[pools.p]
health = {{ interval = "100ms", timeout = "1s" }}
backends = [{{ address = "{}", name = "a" }}]
)",
                              echo.address()));
    constexpr int kSessions = 5;
    for (int i = 0; i < kSessions; ++i)
        echo_session(sluice.port("front"), "ping");
    // A session is counted when it ends; its access line is written then too.
    REQUIRE(line_count(wait_for_lines(sluice.dir() + "/access.log", kSessions)) == kSessions);

    const std::string labels = fmt::format(R"(pool="p",backend="a",address="{}")", echo.address());
    std::string metrics;
    CHECK(wait_until([&] {
        metrics = http_get(sluice.metrics_port(), "/metrics");
        return sample(metrics, "sluice_backend_health_check_duration_seconds_count{" + labels + R"(,check="tcp"})")
            >= 2;
    }));
    INFO(metrics);
    CHECK(metrics.find("# TYPE sluice_backend_connect_duration_seconds histogram\n") != std::string::npos);
    CHECK(sample(metrics, "sluice_backend_connect_duration_seconds_count{" + labels + "}") == kSessions);
    CHECK(sample(metrics, "sluice_backend_connect_duration_seconds_bucket{" + labels + R"(,le="+Inf"})")
          == kSessions);
    // Loopback connects take well under a second.
    CHECK(sample(metrics, "sluice_backend_connect_duration_seconds_bucket{" + labels + R"(,le="1"})") == kSessions);
    CHECK(sample(metrics, "sluice_backend_connect_duration_seconds_sum{" + labels + "}") < kSessions * 1.0);
    CHECK(sample(metrics, R"(sluice_pool_session_duration_seconds_count{pool="p"})") == kSessions);
    CHECK(sample(metrics, R"(sluice_pool_session_duration_seconds_bucket{pool="p",le="+Inf"})") == kSessions);
    CHECK(sample(metrics, R"(sluice_pool_session_duration_seconds_bucket{pool="p",le="60"})") == kSessions);
    CHECK(sample(metrics, R"(sluice_pool_queue_wait_seconds_count{pool="p"})") == 0);
    // The sessions' backend counter agrees with the histograms.
    CHECK(sample(metrics, "sluice_backend_sessions_total{" + labels + "}") == kSessions);
}

TEST_CASE("every metric the Grafana dashboard queries is one sluice exports")
{
    const std::string dashboard_path = std::string(SLUICE_SOURCE_ROOT) + "/contrib/grafana/sluice.json";
    const std::string dashboard = read_text(dashboard_path);
    REQUIRE(!dashboard.empty());
    std::string error;
    const bool valid = json_lines_valid(
        std::regex_replace(dashboard, std::regex("\n"), " ") + "\n", &error);  // the whole file as one value
    INFO(error);
    CHECK(valid);

    // A configuration under which every family has samples: TCP and UDP
    // listeners, a checked pool, a session made.
    EchoBackend echo("a");
    EchoBackend udp_echo("u", "echo", "127.0.0.1:0", Transport::Udp);
    Sluice sluice(with_metrics(1) + fmt::format(R"([[listeners]]
name = "front"
listen = "127.0.0.1:0"
pool = "p"

[[listeners]]
name = "dns"
listen = "127.0.0.1:0"
protocol = "udp"
pool = "u"

[pools.p]
health = {{ interval = "100ms" }}
backends = [{{ address = "{}", name = "a" }}]

[pools.u]
backends = [{{ address = "{}", name = "u" }}]
)",
                              echo.address(), udp_echo.address()));
    echo_session(sluice.port("front"), "x");
    std::string metrics;
    REQUIRE(wait_until([&] {
        metrics = http_get(sluice.metrics_port(), "/metrics");
        return metrics.find("sluice_backend_check_status{") != std::string::npos;
    }));
    // Names that can be queried: every sample's name.
    std::set<std::string> exported;
    std::istringstream lines(metrics.substr(metrics.find("\r\n\r\n") + 4));
    for (std::string line; std::getline(lines, line);)
        if (!line.empty() && line[0] != '#')
            exported.insert(line.substr(0, line.find_first_of("{ ")));
    REQUIRE(exported.size() > 20);

    // Every metric name in the dashboard: in panel exprs and in the pool
    // variable's label_values query alike.
    std::set<std::string> used;
    const std::regex name(R"(\bsluice_[a-z0-9_]+)");
    for (auto it = std::sregex_iterator(dashboard.begin(), dashboard.end(), name); it != std::sregex_iterator(); ++it)
        used.insert(it->str());
    CHECK(used.size() >= 20);
    for (const std::string& metric : used) {
        INFO(metric);
        CHECK(exported.count(metric) == 1);
    }
    // The dashboard shows each histogram.
    for (const char* histogram : {"sluice_backend_connect_duration_seconds_bucket",
                                  "sluice_pool_session_duration_seconds_bucket",
                                  "sluice_backend_health_check_duration_seconds_bucket",
                                  "sluice_pool_queue_wait_seconds_bucket"})
        CHECK(used.count(histogram) == 1);
}

TEST_CASE("when stderr is the journal each line starts with its syslog priority; elsewhere not")
{
    EchoBackend echo("a");
    TempDir dir;
    const std::string config = dir.write("sluice.toml", fmt::format(R"([global]
workers = 1

[[listeners]]
name = "front"
listen = "127.0.0.1:0"
pool = "p"

[pools.p]
max_fails = 1
backends = [{{ address = "127.0.0.1:{}" }}, {{ address = "{}" }}]
)",
                                                                       unused_port(), echo.address()));
    // What systemd does: JOURNAL_STREAM names the stream on stderr (here the
    // harness's pipe, found through /proc once the child has it).
    Process journal("/bin/sh", {"-c", "JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2) exec \""
                                          + binary_from_env("SLUICE_BIN") + "\" -c " + config});
    auto started = journal.wait_for_line("sluice started");
    INFO(journal.output());
    REQUIRE(started);
    CHECK(started->rfind("<6>", 0) == 0);
    // A refused connect marks the first backend down: a warning, <4>.
    {
        auto port_line = journal.output();
        auto at = port_line.find("listening on 127.0.0.1:");
        REQUIRE(at != std::string::npos);
        const auto port = static_cast<std::uint16_t>(std::stoi(port_line.substr(at + 23)));
        for (int i = 0; i < 2; ++i)
            echo_session(port, "x");
    }
    auto down = journal.wait_for_line("is DOWN");
    REQUIRE(down);
    CHECK(down->rfind("<4>", 0) == 0);
    journal.send_signal(SIGTERM);
    CHECK(journal.wait_exit() == 0);

    // The same binary on a plain pipe: no prefixes.
    Sluice plain(fmt::format("[[listeners]]\nname = \"front\"\nlisten = \"127.0.0.1:0\"\npool = \"p\"\n\n"
                             "[pools.p]\nbackends = [{{ address = \"{}\" }}]\n",
                             echo.address()));
    CHECK(plain.process().stderr_text().find("<6>") == std::string::npos);
    CHECK(plain.process().stderr_text().rfind("20", 0) == 0);
}
