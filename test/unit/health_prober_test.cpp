// HealthProber against real loopback sockets: listening, refusing, black-holed
// and UDP backends. Every wait polls for a condition with a deadline; no test
// sleeps for a fixed time and hopes.
//
// Until src/backend_table.cpp lands this links test/unit/health_table_shim.cpp
// (see there).
#include "sluice/health_prober.h"

#include "sluice/runtime.h"
#include "sluice/socket.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <optional>
#include <poll.h>
#include <string>
#include <sys/mman.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace sluice;
using namespace std::chrono_literals;

namespace {

// Polls `condition` every 2 ms until it holds; false after `limit`.
template <typename Condition>
bool eventually(Condition&& condition, std::chrono::milliseconds limit = 5000ms)
{
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (!condition()) {
        if (std::chrono::steady_clock::now() >= deadline)
            return false;
        std::this_thread::sleep_for(2ms);
    }
    return true;
}

SocketAddress loopback(std::uint16_t port = 0)
{
    SocketAddress address = *SocketAddress::parse("127.0.0.1:0");
    address.set_port(port);
    return address;
}

// Sends what sluice::log writes (fd 2) to a memfd while alive, so tests can
// assert the exact log lines.
class CapturedLog {
public:
    CapturedLog() : file_(::memfd_create("sluice-log", MFD_CLOEXEC)), saved_(::dup(STDERR_FILENO))
    {
        REQUIRE(file_ >= 0);
        REQUIRE(::dup2(file_, STDERR_FILENO) == STDERR_FILENO);
    }
    ~CapturedLog()
    {
        ::dup2(saved_, STDERR_FILENO);
        ::close(saved_);
        ::close(file_);
    }
    CapturedLog(const CapturedLog&) = delete;
    CapturedLog& operator=(const CapturedLog&) = delete;

    std::string text() const
    {
        std::string all;
        char chunk[4096];
        off_t offset = 0;
        for (ssize_t n; (n = ::pread(file_, chunk, sizeof(chunk), offset)) > 0; offset += n)
            all.append(chunk, static_cast<std::size_t>(n));
        return all;
    }
    int count(std::string_view needle) const
    {
        std::string all = text();
        int found = 0;
        for (auto at = all.find(needle); at != std::string::npos; at = all.find(needle, at + 1))
            ++found;
        return found;
    }

private:
    int file_;
    int saved_;
};

// The prober writes the table before it logs, so a test that has seen the
// table change waits for the line; then it must be there exactly once.
bool logged_once(const CapturedLog& log, std::string_view line)
{
    return eventually([&] { return log.count(line) >= 1; }) && log.count(line) == 1;
}

// A TCP backend on loopback that nobody serves: the kernel completes
// handshakes into the accept queue; accepted() drains and counts them, which
// counts the probes that reached it.
class TcpBackend {
public:
    explicit TcpBackend(const SocketAddress& at = loopback(), int backlog = 4096)
    {
        ListenOptions options;
        options.reuse_port = false;
        options.backlog = backlog;
        Result<UniqueFd> sock = open_tcp_listener(at, options);
        REQUIRE(sock.ok());
        fd_ = std::move(sock.value());
        address_ = local_address(fd_.get());
    }
    const SocketAddress& address() const noexcept { return address_; }
    int accepted()
    {
        while (accept_connection(fd_.get(), nullptr).ok())
            ++accepted_;
        return accepted_;
    }

private:
    UniqueFd fd_;
    SocketAddress address_;
    int accepted_ = 0;
};

// A loopback port with nothing listening (connects are refused).
SocketAddress closed_tcp_port()
{
    TcpBackend gone;
    return gone.address();
}

// A listener whose accept queue is full: the kernel drops further SYNs, so a
// connect neither succeeds nor fails — only a timeout ends it. Backlog 0 queues
// one connection; we connect until a handshake hangs.
class Blackhole {
public:
    Blackhole() : listener_(loopback(), 0)
    {
        for (int i = 0; i < 64; ++i) {
            Result<UniqueFd> client = start_connect(listener_.address());
            REQUIRE(client.ok());
            pollfd writable{client.value().get(), POLLOUT, 0};
            int ready = ::poll(&writable, 1, 200);
            fillers_.push_back(std::move(client.value()));
            if (ready == 0)
                return;
        }
        FAIL("could not fill the accept queue of a backlog-0 listener");
    }
    const SocketAddress& address() const noexcept { return listener_.address(); }

private:
    TcpBackend listener_;
    std::vector<UniqueFd> fillers_;
};

// A UDP backend; serve() answers every datagram with `reply` (when set) and
// returns how many it received.
class UdpBackend {
public:
    explicit UdpBackend(std::optional<std::string> reply) : reply_(std::move(reply))
    {
        Result<UniqueFd> sock = open_udp_socket(loopback(), false);
        REQUIRE(sock.ok());
        fd_ = std::move(sock.value());
        address_ = local_address(fd_.get());
    }
    const SocketAddress& address() const noexcept { return address_; }
    int serve()
    {
        char buffer[512];
        sockaddr_storage peer{};
        socklen_t length = sizeof(peer);
        for (;;) {
            ssize_t n = ::recvfrom(fd_.get(), buffer, sizeof(buffer), 0, reinterpret_cast<sockaddr*>(&peer), &length);
            if (n < 0)
                return received_;
            ++received_;
            if (reply_)
                ::sendto(fd_.get(), reply_->data(), reply_->size(), 0, reinterpret_cast<sockaddr*>(&peer), length);
            length = sizeof(peer);
        }
    }

private:
    UniqueFd fd_;
    SocketAddress address_;
    std::optional<std::string> reply_;
    int received_ = 0;
};

SocketAddress closed_udp_port()
{
    Result<UniqueFd> sock = open_udp_socket(loopback(), false);
    REQUIRE(sock.ok());
    return local_address(sock.value().get());
}

HealthCheckConfig fast_tcp_check()
{
    HealthCheckConfig check;
    check.interval = 50ms;
    check.timeout = 40ms;
    check.rise = 2;
    check.fall = 3;
    return check;
}

HealthCheckConfig fast_udp_check(std::string send, std::string expect)
{
    HealthCheckConfig check = fast_tcp_check();
    check.kind = HealthCheckConfig::Kind::Udp;
    // The test thread answers between polls: leave it room.
    check.interval = 100ms;
    check.timeout = 80ms;
    check.send = std::move(send);
    check.expect = std::move(expect);
    return check;
}

struct NamedBackend {
    std::string name;
    SocketAddress address;
};

PoolConfig make_pool(std::string name, std::vector<NamedBackend> backends,
                     std::optional<HealthCheckConfig> health, int max_fails = 3)
{
    PoolConfig pool;
    pool.name = std::move(name);
    pool.health = std::move(health);
    pool.max_fails = max_fails;
    for (auto& backend : backends) {
        BackendConfig config;
        config.name = std::move(backend.name);
        config.address = backend.address;
        pool.backends.push_back(std::move(config));
    }
    return pool;
}

// A table, a prober over it and the log, torn down prober first.
struct Probing {
    CapturedLog log;
    std::unique_ptr<BackendTable> table = std::make_unique<BackendTable>();
    std::shared_ptr<Runtime> runtime;
    HealthProber prober{*table};

    std::shared_ptr<Runtime> build(std::vector<PoolConfig> pools)
    {
        Config config;
        config.pools = std::move(pools);
        std::string error;
        auto built = build_runtime(std::move(config), *table, runtime.get(), &error);
        REQUIRE(built);
        return built;
    }
    void start(std::vector<PoolConfig> pools)
    {
        runtime = build(std::move(pools));
        prober.start(runtime);
    }
    void reload(std::vector<PoolConfig> pools)
    {
        runtime = build(std::move(pools));
        prober.update(runtime);
    }

    BackendId id(std::string_view pool, std::size_t index) const
    {
        return runtime->find_pool(pool)->backend_ids.at(index);
    }
    Health health(BackendId id) const { return table->slot(id).health.load(); }
    HealthReason reason(BackendId id) const { return table->slot(id).health_reason.load(); }
    bool down(BackendId id) const { return health(id) == Health::Down; }
    bool up(BackendId id) const { return health(id) == Health::Up; }
};

} // namespace

TEST_CASE("a backend that accepts connections stays up")
{
    TcpBackend backend;
    Probing p;
    p.start({make_pool("db", {{"pg-a", backend.address()}}, fast_tcp_check())});
    BackendId a = p.id("db", 0);

    // Well past `fall` probes, every one of them reached the backend.
    REQUIRE(eventually([&] { return backend.accepted() >= 6; }));
    CHECK(p.up(a));
    CHECK(p.reason(a) == HealthReason::None);
    INFO(p.log.text());
    CHECK(p.log.count("is DOWN") == 0);
}

TEST_CASE("a refused backend goes down after fall probes and up again after rise probes")
{
    SocketAddress address = closed_tcp_port();
    Probing p;
    p.start({make_pool("db", {{"pg-a", address}}, fast_tcp_check())});
    BackendId a = p.id("db", 0);

    REQUIRE(eventually([&] { return p.down(a); }));
    CHECK(p.reason(a) == HealthReason::ConnectionRefused);
    INFO(p.log.text());
    CHECK(logged_once(p.log, "db/pg-a is DOWN (connection refused, 3/3)"));

    TcpBackend revived(address);
    REQUIRE(eventually([&] { return p.up(a); }));
    // It took `rise` passing probes, each of which reached the backend.
    CHECK(revived.accepted() >= 2);
    CHECK(p.reason(a) == HealthReason::None);
    CHECK(logged_once(p.log, "db/pg-a is UP (2/2 checks passed: connected)"));
    CHECK(logged_once(p.log, "is DOWN"));
}

TEST_CASE("a backend whose handshake never completes goes down by timeout")
{
    Blackhole hole;
    Probing p;
    p.start({make_pool("db", {{"pg-a", hole.address()}}, fast_tcp_check())});
    BackendId a = p.id("db", 0);

    REQUIRE(eventually([&] { return p.down(a); }));
    CHECK(p.reason(a) == HealthReason::Timeout);
    INFO(p.log.text());
    CHECK(logged_once(p.log, "db/pg-a is DOWN (timed out after "));
}

TEST_CASE("traffic failures mark a checked backend down until rise probes pass")
{
    TcpBackend backend;
    Probing p;
    p.start({make_pool("db", {{"pg-a", backend.address()}}, fast_tcp_check(), 2)});
    BackendId a = p.id("db", 0);
    REQUIRE(eventually([&] { return backend.accepted() >= 1; }));

    // What a worker does after two failed connects (max_fails = 2); the mark
    // alone would last 10 s.
    std::int64_t now = monotonic_ms();
    CHECK_FALSE(p.table->record_connect_failure(a, now, 2, 10000));
    REQUIRE(p.table->record_connect_failure(a, now, 2, 10000));

    REQUIRE(eventually([&] { return p.down(a); }));
    CHECK(p.reason(a) == HealthReason::PassiveFailures);
    REQUIRE(eventually([&] { return p.table->slot(a).passive_down_until_ms.load() == 0; }));
    int accepted_when_down = backend.accepted();

    // Probes, not the 10 s expiry, bring it back.
    REQUIRE(eventually([&] { return p.up(a); }));
    CHECK(backend.accepted() >= accepted_when_down + 1);
    INFO(p.log.text());
    CHECK(logged_once(p.log, "db/pg-a is DOWN (2 connect failures from traffic)"));
    CHECK(logged_once(p.log, "db/pg-a is UP (2/2 checks passed: connected)"));
}

TEST_CASE("a backend without active checks keeps its passive mark")
{
    TcpBackend checked;
    TcpBackend plain;
    Probing p;
    p.start({make_pool("checked", {{"a", checked.address()}}, fast_tcp_check(), 1),
             make_pool("plain", {{"b", plain.address()}}, std::nullopt, 1)});
    BackendId a = p.id("checked", 0);
    BackendId b = p.id("plain", 0);

    std::int64_t now = monotonic_ms();
    REQUIRE(p.table->record_connect_failure(a, now, 1, 10000));
    REQUIRE(p.table->record_connect_failure(b, now, 1, 10000));

    // One scan handles every checked backend; once `a` is taken over, `b`
    // would have been too, were it the prober's business.
    REQUIRE(eventually([&] { return p.down(a) && p.table->slot(a).passive_down_until_ms.load() == 0; }));
    CHECK(p.table->slot(b).passive_down_until_ms.load() == now + 10000);
    CHECK(p.up(b));
    CHECK(plain.accepted() == 0);
    INFO(p.log.text());
    CHECK(p.log.count("plain/b") == 0);
}

TEST_CASE("maint pauses probes and keeps the last verdict")
{
    SocketAddress address = closed_tcp_port();
    TcpBackend witness;  // keeps being probed, to show time passing
    Probing p;
    p.start({make_pool("db", {{"a", address}, {"w", witness.address()}}, fast_tcp_check())});
    BackendId a = p.id("db", 0);
    REQUIRE(eventually([&] { return p.down(a); }));

    p.table->set_admin(a, AdminState::Maint);
    TcpBackend revived(address);
    int witnessed = witness.accepted();
    // Six intervals: `a` would have passed `rise` probes if it were probed.
    REQUIRE(eventually([&] { return witness.accepted() >= witnessed + 6; }));
    CHECK(p.down(a));
    CHECK(revived.accepted() <= 1);  // at most a probe that began before maint

    p.table->set_admin(a, AdminState::Ready);
    REQUIRE(eventually([&] { return p.up(a); }));
    INFO(p.log.text());
    CHECK(logged_once(p.log, "db/a is UP (2/2 checks passed: connected)"));
}

TEST_CASE("a reload keeps the verdict of a backend that stays and probes only the new set")
{
    SocketAddress refused = closed_tcp_port();
    TcpBackend removed;
    TcpBackend added;
    Probing p;
    p.start({make_pool("db", {{"a", refused}, {"c", removed.address()}}, fast_tcp_check())});
    BackendId a = p.id("db", 0);
    REQUIRE(eventually([&] { return p.down(a) && removed.accepted() >= 1; }));

    p.reload({make_pool("db", {{"a", refused}, {"b", added.address()}}, fast_tcp_check())});
    REQUIRE(p.id("db", 0) == a);  // build_runtime kept the slot
    REQUIRE(eventually([&] { return added.accepted() >= 1; }));
    int removed_before = removed.accepted();
    REQUIRE(eventually([&] { return added.accepted() >= 6; }));
    CHECK(removed.accepted() == removed_before);
    // A fresh target would have started up; the kept one is still down.
    CHECK(p.down(a));
    INFO(p.log.text());
    CHECK(logged_once(p.log, "db/a is DOWN"));

    // Health checks removed from the pool: nobody else would lift the verdict.
    p.reload({make_pool("db", {{"a", refused}, {"b", added.address()}}, std::nullopt)});
    REQUIRE(eventually([&] { return p.up(a); }));
    CHECK(logged_once(p.log, "db/a is UP (health checks removed)"));
}

TEST_CASE("the first probes of many backends are spread across one interval")
{
    constexpr int kBackends = 20;
    std::vector<std::unique_ptr<TcpBackend>> backends;
    std::vector<NamedBackend> named;
    for (int i = 0; i < kBackends; ++i) {
        backends.push_back(std::make_unique<TcpBackend>());
        named.push_back({"b" + std::to_string(i), backends.back()->address()});
    }
    HealthCheckConfig check = fast_tcp_check();
    check.interval = 1000ms;
    check.timeout = 500ms;
    Probing p;
    p.start({make_pool("many", named, check)});

    std::vector<std::optional<std::chrono::steady_clock::time_point>> first(kBackends);
    REQUIRE(eventually([&] {
        bool all = true;
        for (int i = 0; i < kBackends; ++i) {
            if (!first[i] && backends[i]->accepted() > 0)
                first[i] = std::chrono::steady_clock::now();
            all = all && first[i].has_value();
        }
        return all;
    }));
    auto [earliest, latest] = std::minmax_element(first.begin(), first.end());
    // Uniform over 1 s: 20 draws within 300 ms of each other is ~1e-9 likely.
    CHECK(**latest - **earliest >= 300ms);
}

TEST_CASE("a udp backend that answers with the expected prefix stays up")
{
    UdpBackend backend(std::string("PONG ready"));
    Probing p;
    p.start({make_pool("dns", {{"ns1", backend.address()}}, fast_udp_check("PING", "PONG"))});
    BackendId a = p.id("dns", 0);

    REQUIRE(eventually([&] { return backend.serve() >= 6; }));
    CHECK(p.up(a));
    INFO(p.log.text());
    CHECK(p.log.count("is DOWN") == 0);
}

TEST_CASE("a closed udp port goes down as connection refused")
{
    SocketAddress address = closed_udp_port();
    Probing p;
    p.start({make_pool("dns", {{"ns1", address}}, fast_udp_check("PING", ""))});
    BackendId a = p.id("dns", 0);

    REQUIRE(eventually([&] { return p.down(a); }));
    CHECK(p.reason(a) == HealthReason::ConnectionRefused);
    INFO(p.log.text());
    CHECK(logged_once(p.log, "dns/ns1 is DOWN (connection refused, 3/3)"));
}

TEST_CASE("a silent udp backend goes down by timeout")
{
    UdpBackend backend(std::nullopt);
    Probing p;
    p.start({make_pool("dns", {{"ns1", backend.address()}}, fast_udp_check("PING", ""))});
    BackendId a = p.id("dns", 0);

    REQUIRE(eventually([&] { return p.down(a); }));
    CHECK(p.reason(a) == HealthReason::Timeout);
    CHECK(backend.serve() >= 3);
    INFO(p.log.text());
    CHECK(logged_once(p.log, "dns/ns1 is DOWN (timed out after "));
}

TEST_CASE("a udp backend that answers something else goes down")
{
    UdpBackend backend(std::string("NOPE"));
    Probing p;
    p.start({make_pool("dns", {{"ns1", backend.address()}}, fast_udp_check("PING", "PONG"))});
    BackendId a = p.id("dns", 0);

    REQUIRE(eventually([&] {
        backend.serve();
        return p.down(a);
    }));
    CHECK(p.reason(a) == HealthReason::BadReply);
    INFO(p.log.text());
    CHECK(logged_once(p.log, "dns/ns1 is DOWN (expect mismatch: got "));
}

TEST_CASE("a backend failing for the same reason is logged once; a new reason once more; reports carry the words")
{
    UdpBackend backend(std::string("NOPE"));
    Probing p;
    HealthCheckConfig check = fast_udp_check("PING", "PONG");
    check.fall = 1;
    p.start({make_pool("dns", {{"ns1", backend.address()}}, check)});
    BackendId a = p.id("dns", 0);

    REQUIRE(eventually([&] {
        backend.serve();
        return p.down(a);
    }));
    // Ten more failing probes, same reason: no further line.
    const int seen = backend.serve();
    REQUIRE(eventually([&] { return backend.serve() >= seen + 10; }));
    CHECK(p.log.count("dns/ns1 is DOWN") == 1);
    CHECK(p.log.count("still DOWN") == 0);
    std::optional<HealthReport> report = p.prober.reports().get(a);
    REQUIRE(report);
    CHECK(report->checked);
    CHECK_FALSE(report->passed);
    CHECK(report->kind == HealthCheckConfig::Kind::Udp);
    CHECK(report->detail == R"(expect mismatch: got "NOPE")");
    CHECK(report->duration_seconds >= 0.0);
    CHECK(report->duration_seconds < 1.0);
}

TEST_CASE("a backend that changes reason while down is logged once for the new reason")
{
    std::optional<UdpBackend> backend(std::in_place, std::string("NOPE"));
    const SocketAddress address = backend->address();
    Probing p;
    HealthCheckConfig check = fast_udp_check("PING", "PONG");
    check.fall = 1;
    p.start({make_pool("dns", {{"ns1", address}}, check)});
    BackendId a = p.id("dns", 0);
    REQUIRE(eventually([&] {
        backend->serve();
        return p.down(a);
    }));
    backend.reset();  // the port closes: ICMP port unreachable from now on
    REQUIRE(eventually([&] { return p.reason(a) == HealthReason::ConnectionRefused; }));
    INFO(p.log.text());
    CHECK(logged_once(p.log, "dns/ns1 is still DOWN, now: connection refused"));
    // A few more refused probes (interval 100 ms) add nothing.
    std::this_thread::sleep_for(500ms);
    CHECK(p.log.count("still DOWN") == 1);
    CHECK(p.log.count("is DOWN") == 1);
}

TEST_CASE("the check's port replaces the backend's port for probes only")
{
    TcpBackend health_port;
    Probing p;
    HealthCheckConfig check = fast_tcp_check();
    check.port = health_port.address().port();
    // The backend's own port is closed: only the check's port answers.
    p.start({make_pool("db", {{"pg-a", closed_tcp_port()}}, check)});
    BackendId a = p.id("db", 0);
    REQUIRE(eventually([&] { return health_port.accepted() >= 4; }));
    CHECK(p.up(a));
    std::optional<HealthReport> report = p.prober.reports().get(a);
    REQUIRE(report);
    CHECK(report->passed);
    CHECK(report->detail == "connected");
}

namespace {

// A backend addressed by name, with the resolver's verdict so far.
// `resolved`: the address when status is Resolved; its port is the backend's.
PoolConfig named_pool(std::optional<HealthCheckConfig> health, NameStatus status, const SocketAddress& resolved)
{
    PoolConfig pool = make_pool("db", {{"db", status == NameStatus::Resolved ? resolved : SocketAddress()}},
                                std::move(health));
    BackendConfig& backend = pool.backends[0];
    backend.host = "db.internal";
    backend.port = resolved.port();  // the identity, db.internal:PORT, stays the same
    backend.status = status;
    return pool;
}

} // namespace

TEST_CASE("a name without an answer is down for that reason, never probed, and up once it resolves")
{
    TcpBackend backend;
    Probing p;
    p.start({named_pool(fast_tcp_check(), NameStatus::Pending, backend.address())});
    BackendId a = p.id("db", 0);
    CHECK(p.reason(a) == HealthReason::UnresolvedPending);  // build_runtime allocated it so
    CHECK(p.runtime->pools[0].primaries.empty());           // and no balancer picks it

    p.reload({named_pool(fast_tcp_check(), NameStatus::NxDomain, backend.address())});
    REQUIRE(p.id("db", 0) == a);
    REQUIRE(eventually([&] { return p.reason(a) == HealthReason::UnresolvedNxDomain; }));
    CHECK(to_string(p.reason(a)) == "unresolved: NXDOMAIN");
    CHECK(p.down(a));

    // Resolved, in a checked pool: up after `rise` passing probes, not before.
    p.reload({named_pool(fast_tcp_check(), NameStatus::Resolved, backend.address())});
    REQUIRE(p.id("db", 0) == a);
    REQUIRE(eventually([&] { return p.up(a); }));
    CHECK(backend.accepted() >= fast_tcp_check().rise);

    // Resolved again after a resolver timeout, in an unchecked pool: up at once.
    p.reload({named_pool(std::nullopt, NameStatus::Timeout, backend.address())});
    REQUIRE(eventually([&] { return p.reason(a) == HealthReason::ResolverTimeout; }));
    p.reload({named_pool(std::nullopt, NameStatus::Resolved, backend.address())});
    REQUIRE(eventually([&] { return p.up(a); }));
}
