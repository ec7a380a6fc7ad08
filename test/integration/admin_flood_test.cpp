// The admin plane under abuse, through the real binary: idle floods of the
// admin socket and of /metrics, a client that never reads its replies, a
// stalled HTTP head, the descriptor limit, and sluicectl against a server
// that hangs up.
#include "operations_support.h"

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <poll.h>
#include <set>
#include <sstream>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/un.h>

using namespace sluice::test;

namespace {

// A connected client of a unix socket, or -1.
int connect_unix(const std::string& path)
{
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
    if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
        if (fd >= 0)
            ::close(fd);
        return -1;
    }
    set_receive_timeout(fd, 10s);
    return fd;
}

// The peer closed (EOF or reset), without consuming anything.
bool peer_closed(int fd)
{
    char c;
    ssize_t n = ::recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

std::vector<std::size_t> closed_indexes(const std::vector<Fd>& clients)
{
    std::vector<std::size_t> closed;
    for (std::size_t i = 0; i < clients.size(); ++i)
        if (peer_closed(clients[i]))
            closed.push_back(i);
    return closed;
}

std::vector<std::size_t> first_n(std::size_t n)
{
    std::vector<std::size_t> v(n);
    for (std::size_t i = 0; i < n; ++i)
        v[i] = i;
    return v;
}

double seconds_since(Clock::time_point start)
{
    return std::chrono::duration<double>(Clock::now() - start).count();
}

// The thread of `pid` named `name` (pthread_setname_np), or -1.
long thread_id(pid_t pid, const std::string& name)
{
    for (const auto& entry : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task")) {
        std::ifstream comm(entry.path() / "comm");
        std::string line;
        std::getline(comm, line);
        if (line == name)
            return std::stol(entry.path().filename().string());
    }
    return -1;
}

// User plus system CPU time of one thread, in clock ticks (1/100 s).
long thread_cpu_ticks(pid_t pid, long tid)
{
    std::ifstream stat("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/stat");
    std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    std::istringstream fields(text.substr(text.rfind(')') + 2));  // from field 3, the state
    std::string field;
    long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && fields >> field; ++i) {
        if (i == 14)
            utime = std::stol(field);
        if (i == 15)
            stime = std::stol(field);
    }
    return utime + stime;
}

// The lowest descriptor number `pid` does not use: with RLIMIT_NOFILE at
// this value, its next open/accept fails with EMFILE.
int lowest_free_fd(pid_t pid)
{
    std::set<int> used;
    for (const auto& entry : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd"))
        used.insert(std::stoi(entry.path().filename().string()));
    int fd = 0;
    while (used.count(fd))
        ++fd;
    return fd;
}

// The highest descriptor of `pid` whose /proc link is `target`, or -1.
int highest_fd_to(pid_t pid, const std::string& target)
{
    int highest = -1;
    for (const auto& entry : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
        std::error_code error;
        if (std::filesystem::read_symlink(entry.path(), error).string() == target)
            highest = std::max(highest, std::stoi(entry.path().filename().string()));
    }
    return highest;
}

void set_fd_limit(pid_t pid, rlim_t soft)
{
    rlimit old{};
    REQUIRE(::prlimit(pid, RLIMIT_NOFILE, nullptr, &old) == 0);
    rlimit lowered{soft, old.rlim_max};
    REQUIRE(::prlimit(pid, RLIMIT_NOFILE, &lowered, nullptr) == 0);
}

int run_sluicectl(const std::string& socket, const std::vector<std::string>& command, std::string* out = nullptr,
                  std::chrono::milliseconds timeout = 5s)
{
    std::vector<std::string> args{"-s", socket};
    args.insert(args.end(), command.begin(), command.end());
    Process p(binary_from_env("SLUICECTL_BIN"), args);
    std::optional<int> status = p.wait_exit(timeout);
    if (out)
        *out = p.stdout_text() + p.stderr_text();
    return status.value_or(-1);
}

} // namespace

TEST_CASE("70 idle clients on the admin socket and on /metrics lock out neither sluicectl nor a scrape")
{
    EchoBackend a("a");
    // A long header timeout, so only the caps close the idle HTTP clients here.
    Sluice sluice(ops_config({{"a", a.address()}}), {}, {"SLUICE_TEST_HTTP_HEADER_TIMEOUT=60"});
    const std::string socket = admin_path(sluice);
    constexpr std::size_t kFlood = 70;
    std::vector<Fd> admin_flood, http_flood;
    for (std::size_t i = 0; i < kFlood; ++i) {
        admin_flood.emplace_back(connect_unix(socket));
        REQUIRE(admin_flood.back().fd >= 0);
        http_flood.emplace_back(connect_tcp(sluice.metrics_port()));
    }
    // Each client past the 64th made room by closing the oldest idle one.
    CHECK(wait_until([&] { return closed_indexes(admin_flood).size() >= kFlood - 64; }));
    CHECK(wait_until([&] { return closed_indexes(http_flood).size() >= kFlood - 64; }));

    const auto start = Clock::now();
    std::string out;
    CHECK(run_sluicectl(socket, {"show", "servers"}, &out) == 0);
    CHECK(out.rfind("pool  backend", 0) == 0);
    const double ctl_seconds = seconds_since(start);
    std::string metrics = http_get(sluice.metrics_port(), "/metrics");
    CHECK(metrics.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
    CHECK(metrics.find("sluice_backend_up{") != std::string::npos);
    CHECK(ctl_seconds < 3);

    // Exactly the oldest idle ones went, one more for each newcomer.
    CHECK(wait_until([&] { return closed_indexes(admin_flood) == first_n(kFlood - 64 + 1); }));
    CHECK(wait_until([&] { return closed_indexes(http_flood) == first_n(kFlood - 64 + 1); }));
    CHECK(wait_until([&] {
        const std::string log = sluice.process().output();
        const std::string line = " clients, the limit; closed the oldest idle one (1 time)";
        return log.find("admin socket: 64" + line) != std::string::npos
            && log.find("metrics: 64" + line) != std::string::npos;
    }));
}

TEST_CASE("a client that pipelines commands and never reads costs bounded memory, and gets every reply later")
{
    EchoBackend a("a");
    Sluice sluice(ops_config({{"a", a.address()}}));
    const pid_t pid = sluice.process().pid();
    AdminClient other(admin_path(sluice));
    const std::string expected = other.command("json show servers");
    REQUIRE(expected.rfind(R"({"servers":[)", 0) == 0);
    const long rss_before = rss_kib(pid);

    Fd flood(connect_unix(admin_path(sluice)));
    REQUIRE(flood.fd >= 0);
    const std::string command = "json show servers\n";
    std::string burst;
    while (burst.size() < 4 * 1024 * 1024)
        burst += command;
    // Send until sluice stops taking more (its reads pause while replies
    // are unsent), or all of it has gone.
    std::size_t sent = 0;
    const auto deadline = Clock::now() + 20s;
    while (sent < burst.size() && Clock::now() < deadline) {
        ssize_t n = ::send(flood, burst.data() + sent, burst.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            sent += static_cast<std::size_t>(n);
            continue;
        }
        REQUIRE((errno == EAGAIN || errno == EINTR));
        pollfd p{flood.fd, POLLOUT, 0};
        if (::poll(&p, 1, 500) == 0)
            break;  // half a second without room: sluice stopped reading
    }
    INFO("sent " << sent << " bytes");
    CHECK(sent < burst.size() / 4);

    // Other clients are still answered, and what sluice holds is bounded.
    CHECK(other.command("json show servers") == expected);
    const long rss_after = rss_kib(pid);
    INFO("VmRSS " << rss_before << " -> " << rss_after << " KiB");
    CHECK(rss_after - rss_before < 10 * 1024);

    // Reading now gets one reply for each complete command, in order.
    const std::size_t commands = sent / command.size();
    const std::string reply = expected + "\n\n";
    std::string pending;
    std::size_t replies = 0;
    char buffer[65536];
    while (replies < commands) {
        ssize_t n = ::recv(flood, buffer, sizeof(buffer), 0);
        if (n <= 0)
            break;
        pending.append(buffer, static_cast<std::size_t>(n));
        std::size_t whole = pending.size() / reply.size();
        for (std::size_t i = 0; i < whole; ++i)
            if (pending.compare(i * reply.size(), reply.size(), reply) != 0)
                FAIL("reply " << replies + i << " differs");
        replies += whole;
        pending.erase(0, whole * reply.size());
    }
    CHECK(replies == commands);
    CHECK(pending.empty());
}

TEST_CASE("a stalled HTTP head is closed at the header timeout, an idle admin client at the idle timeout")
{
    EchoBackend a("a");
    Sluice sluice(ops_config({{"a", a.address()}}), {},
                  {"SLUICE_TEST_HTTP_HEADER_TIMEOUT=1", "SLUICE_TEST_ADMIN_IDLE_TIMEOUT=1.5"});
    const auto start = Clock::now();
    Fd half(connect_tcp(sluice.metrics_port()));
    send_all(half, std::string("GET /metrics HTTP/1.1\r\nHost: loc"));
    // Trickling a byte now and then does not extend the deadline.
    Fd trickle(connect_tcp(sluice.metrics_port()));
    Fd idle(connect_unix(admin_path(sluice)));
    REQUIRE(idle.fd >= 0);
    AdminClient chatty(admin_path(sluice));
    std::size_t answers = 0;
    double http_closed = 0, trickle_closed = 0, idle_closed = 0;
    auto all_closed = [&] { return http_closed && trickle_closed && idle_closed; };
    while (seconds_since(start) < 3.2 || (!all_closed() && seconds_since(start) < 6)) {
        if (!trickle_closed)
            ::send(trickle, "G", 1, MSG_NOSIGNAL);
        answers += chatty.command("help").rfind("commands:", 0) == 0;
        if (!http_closed && peer_closed(half))
            http_closed = seconds_since(start);
        if (!trickle_closed && peer_closed(trickle))
            trickle_closed = seconds_since(start);
        if (!idle_closed && peer_closed(idle))
            idle_closed = seconds_since(start);
        std::this_thread::sleep_for(100ms);  // the pace of the chatty client
    }
    CHECK(answers > 10);
    INFO("closed after " << http_closed << " s, " << trickle_closed << " s, " << idle_closed << " s");
    CHECK(http_closed >= 0.9);
    CHECK(http_closed < 3.0);
    CHECK(trickle_closed >= 0.9);
    CHECK(trickle_closed < 3.0);
    CHECK(idle_closed >= 1.4);
    CHECK(idle_closed < 4.0);
    CHECK(recv_until_eof(half).empty());  // closed without an answer
    CHECK_FALSE(peer_closed(chatty.fd()));  // talking all along: never idle
}

TEST_CASE("a reload in progress does not count as idle time")
{
    EchoBackend a("a");
    Sluice sluice(ops_config({{"a", a.address()}}), {}, {"SLUICE_TEST_ADMIN_IDLE_TIMEOUT=0.5"});
    // A FIFO as the config file: the reload blocks reading it until the test
    // writes the text, much longer than the idle timeout.
    std::string text;
    {
        std::ifstream in(sluice.config_path());
        text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    const std::string fifo = sluice.dir() + "/fifo.toml";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    REQUIRE(::rename(fifo.c_str(), sluice.config_path().c_str()) == 0);

    Fd reloading(connect_unix(admin_path(sluice)));
    Fd idle(connect_unix(admin_path(sluice)));
    REQUIRE(reloading.fd >= 0);
    send_all(reloading, std::string("reload\n"));
    REQUIRE(sluice.process().wait_for_line("reloading " + sluice.config_path()));
    // The idle one is closed; the one waiting for its reload is not.
    CHECK(wait_until([&] { return peer_closed(idle); }, 5s));
    const auto waited = Clock::now();
    while (Clock::now() - waited < 1500ms)
        std::this_thread::sleep_for(50ms);
    CHECK_FALSE(peer_closed(reloading));

    {
        std::ofstream out(sluice.config_path());  // opens once sluice is reading
        out << text;
    }
    CHECK(recv_exact(reloading, 26) == "reload ok (generation 2)\n\n");
}

TEST_CASE("at the descriptor limit the admin thread neither spins nor locks out sluicectl")
{
    EchoBackend a("a");
    Sluice sluice(ops_config({{"a", a.address()}}));
    const pid_t pid = sluice.process().pid();
    const std::string socket = admin_path(sluice);
    const long admin_tid = thread_id(pid, "sluice-admin");
    REQUIRE(admin_tid > 0);
    rlimit original{};
    REQUIRE(::prlimit(pid, RLIMIT_NOFILE, nullptr, &original) == 0);

    // Three idle clients, then no descriptor to spare.
    std::vector<Fd> idle;
    for (int i = 0; i < 3; ++i) {
        idle.emplace_back(connect_unix(socket));
        REQUIRE(idle.back().fd >= 0);
    }
    std::size_t sockets = 0;
    {
        AdminClient sync(socket);  // all three are accepted once this is answered
        CHECK(sync.command("help").rfind("commands:", 0) == 0);
        sockets = open_socket_count(pid) - 1;
    }
    REQUIRE(wait_until([&] { return open_socket_count(pid) == sockets; }));
    set_fd_limit(pid, static_cast<rlim_t>(lowest_free_fd(pid)));

    // sluicectl gets in by closing the oldest idle client.
    std::string out;
    CHECK(run_sluicectl(socket, {"show", "servers"}, &out) == 0);
    CHECK(out.rfind("pool  backend", 0) == 0);
    CHECK(closed_indexes(idle) == std::vector<std::size_t>{0});
    CHECK(sluice.process().wait_for_line("admin socket: out of file descriptors; closed the oldest idle client"));

    // With no idle client left, a newcomer is told why and closed, at once,
    // and a waiting one costs no CPU: the admin thread does not spin.
    // (Descriptors as the kernel hands them out: every one below the limit
    // taken, the reserve among them. Closing the idle clients left holes
    // below the reserve, which now sits where idle client 0 was; sessions
    // through the proxy fill them.)
    idle.clear();
    REQUIRE(wait_until([&] { return open_socket_count(pid) == sockets - 3; }));
    REQUIRE(::prlimit(pid, RLIMIT_NOFILE, &original, nullptr) == 0);
    std::vector<Fd> sessions;
    while (lowest_free_fd(pid) <= highest_fd_to(pid, "/dev/null") && sessions.size() < 20) {
        sessions.emplace_back(connect_tcp(sluice.port("front")));
        send_all(sessions.back(), std::string("ping\n"));
        REQUIRE(recv_line(sessions.back()) == "ping");
    }
    set_fd_limit(pid, static_cast<rlim_t>(lowest_free_fd(pid)));
    const long ticks_before = thread_cpu_ticks(pid, admin_tid);
    const auto start = Clock::now();
    {
        Fd refused(connect_unix(socket));
        REQUIRE(refused.fd >= 0);
        CHECK(recv_until_eof(refused) == "error: sluice is out of file descriptors, try again later\n\n");
    }
    CHECK(run_sluicectl(socket, {"show", "servers"}, &out) == 1);
    CHECK(out == "error: sluice is out of file descriptors, try again later\n");
    std::string refused_http = http_get(sluice.metrics_port(), "/metrics");
    CHECK(refused_http.find("200 OK") == std::string::npos);
    Fd waiting(connect_unix(socket));
    while (seconds_since(start) < 1.0)
        std::this_thread::sleep_for(50ms);
    const long ticks = thread_cpu_ticks(pid, admin_tid) - ticks_before;
    INFO("admin thread CPU over " << seconds_since(start) << " s: " << ticks << " ticks");
    CHECK(ticks < 20);
    CHECK(sluice.process().wait_for_line("admin socket: out of file descriptors, no client idle; refused a new one"));

    // With descriptors back, admin works as before.
    REQUIRE(::prlimit(pid, RLIMIT_NOFILE, &original, nullptr) == 0);
    CHECK(run_sluicectl(socket, {"show", "servers"}, &out) == 0);
    CHECK(out.rfind("pool  backend", 0) == 0);
    CHECK(http_get(sluice.metrics_port(), "/metrics").rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
}

TEST_CASE("sluicectl reports a server that hangs up instead of dying of SIGPIPE")
{
    TempDir dir;
    const std::string path = dir.path() + "/hangup.sock";
    int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(listener >= 0);
    Fd owner(listener);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
    REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
    REQUIRE(::listen(listener, 4) == 0);
    std::thread server([listener] {
        int fd = ::accept(listener, nullptr, nullptr);
        if (fd >= 0)
            ::close(fd);  // without reading a byte
    });
    // A megabyte of command: more than the socket buffers hold, so sluicectl
    // is still sending when the server hangs up.
    std::vector<std::string> command(10, std::string(100000, 'x'));
    std::string out;
    const int status = run_sluicectl(path, command, &out, 10s);
    server.join();
    INFO(out);
    CHECK(status == 2);
    CHECK(out.find("sluicectl: cannot send to " + path + ": Broken pipe") != std::string::npos);
}
