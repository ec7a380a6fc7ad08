// The fault suite (issue 15): sluice under the faults a fault probe found it
// mishandling, and the ones an operator meets on a bad day.
//
// - Every one of many parallel half-closed streams ends, byte-exact.
// - A backend killed under load costs no new connection, and comes back.
// - At the descriptor limit no backend is blamed, and service resumes alone.
// - 9,000 idle sessions fit under the default cap at 20,000 descriptors.
// - A storm of reloads under load fails nothing.
//
// The CI variants take about 30 s on a shared 2-core machine.
// scripts/soak sets SLUICE_SOAK=1 (and SLUICE_SOAK_MINUTES) for the long
// ones; each test prints a "fault summary:" line with its figures.
#include "fault_support.h"
#include "operations_support.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <csignal>

using namespace sluice::test;

namespace {

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

std::size_t count_of(const std::string& text, const std::string& needle)
{
    std::size_t count = 0;
    for (std::size_t at = 0; (at = text.find(needle, at)) != std::string::npos; at += needle.size())
        ++count;
    return count;
}

// A pool "p" behind listener "front", with the given backends (and their
// names), pool keys and [global] keys; admin socket at @DIR@/admin.sock.
std::string fault_config(const std::vector<NamedBackend>& backends, const std::string& pool_extra,
                         const std::string& global_extra)
{
    std::string list;
    for (const auto& b : backends)
        list += fmt::format("  {{ address = \"{}\", name = \"{}\" }},\n", b.address, b.name);
    return fmt::format("[global]\n{}\n\n[admin]\nsocket = \"@DIR@/admin.sock\"\nmetrics = \"\"\n\n"
                       "[[listeners]]\nname = \"front\"\nlisten = \"127.0.0.1:0\"\npool = \"p\"\n\n"
                       "[pools.p]\n{}\nbackends = [\n{}]\n",
                       global_extra, pool_extra, list);
}

// The number after "KEY": in a JSON text (the first one), or -1.
double number_after(const std::string& json, const std::string& key)
{
    auto at = json.find("\"" + key + "\":");
    return at == std::string::npos ? -1.0 : std::atof(json.c_str() + at + key.size() + 3);
}

// One echo round trip of `byte` on an open client; false if the session is
// gone (closed, reset or silent).
bool echo_one_byte(int fd, char byte)
{
    if (::send(fd, &byte, 1, MSG_NOSIGNAL) != 1)
        return false;
    char back = 0;
    return ::recv(fd, &back, 1, 0) == 1 && back == byte;
}

} // namespace

// ---- 1. integrity ------------------------------------------------------------------

namespace {

// The figures of one round of checked streams.
struct IntegrityRound {
    int streams = 0, ended = 0, intact = 0;
    int small = 0, ended_small = 0;  // through the sluice with 64 KiB pipes
    std::uint64_t bytes = 0;
    double seconds = 0;
    std::string problems;
};

// Runs `plans` at once, each through the sluice `through` picks, against
// `backend`; every end gives up at `deadline_after` from the start.
template <typename Through>
IntegrityRound run_integrity_round(const std::vector<StreamPlan>& plans, StreamServer& backend, FinBoard& fins,
                                   Through through, Sluice& small_pipes, std::chrono::milliseconds deadline_after)
{
    IntegrityRound round;
    round.streams = static_cast<int>(plans.size());
    const auto started = Clock::now();
    const auto deadline = started + deadline_after;
    std::vector<EndResult> clients(plans.size());
    std::atomic<std::size_t> clients_done{0};
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < plans.size(); ++i) {
        const std::uint16_t port = through(plans[i]).port("front");
        threads.emplace_back([&, i, port] {
            clients[i] = run_stream_client(port, plans[i], deadline, fins);
            ++clients_done;
        });
    }
    // The ends give up at the deadline themselves; this wait only bounds it.
    wait_until([&] { return clients_done == plans.size() && backend.finished() == plans.size(); },
               deadline_after + 10s);
    for (auto& thread : threads)
        thread.join();
    round.seconds = seconds_since(started);
    wait_until([&] { return backend.finished() == plans.size(); }, 10s);
    const auto backends = backend.take_results();

    // A stream ended when both ends saw EOF in time; it is intact when every
    // byte arrived in order (length and SHA-256 of each direction).
    for (const auto& plan : plans) {
        const EndResult& c = clients[plan.id];
        auto found = backends.find(plan.id);
        if (found == backends.end()) {
            round.problems += fmt::format("stream {}: the backend end never reported\n", plan.id);
            continue;
        }
        const EndResult& b = found->second;
        round.bytes += c.sent + b.sent;
        const bool both_ended = c.error.empty() && b.error.empty() && c.eof_seen && b.eof_seen;
        const bool up_ok = c.sent == plan.client.send_bytes && b.received == c.sent
            && b.received_sha256 == c.sent_sha256;
        const bool down_ok = b.sent == plan.backend.send_bytes && c.received == b.sent
            && c.received_sha256 == b.sent_sha256;
        round.ended += both_ended;
        round.intact += up_ok && down_ok;
        if (&through(plan) == &small_pipes) {
            ++round.small;
            round.ended_small += both_ended;
        }
        std::string what;
        if (!c.error.empty())
            what += " client: " + c.error + ";";
        if (!b.error.empty())
            what += " backend: " + b.error + ";";
        if (!up_ok)
            what += fmt::format(" upstream: sent {} of {}, backend got {}, SHA-256 {};", c.sent,
                                plan.client.send_bytes, b.received,
                                b.received_sha256 == c.sent_sha256 ? "equal" : "differs");
        if (!down_ok)
            what += fmt::format(" downstream: sent {} of {}, client got {}, SHA-256 {};", b.sent,
                                plan.backend.send_bytes, c.received,
                                c.received_sha256 == b.sent_sha256 ? "equal" : "differs");
        if (!what.empty())
            round.problems += fmt::format("stream {} ({} shuts first):{}\n", plan.id,
                                          plan.client.shut_first ? "client" : "backend", what);
    }
    return round;
}

} // namespace

TEST_CASE("every parallel half-closed stream ends byte-exact whichever side shuts first")
{
    // CI: 64 streams of up to 7 MiB each way: a held tail of 4 to 5 MiB is
    // more than the kernel buffers between sluice and the holding end take,
    // so sluice waits for room with the rest and the FIN queued (see
    // EndPlan). Soak: rounds of 96 streams of up to 64 MiB, the size at which
    // the fault probe saw 9 of 96 never end, for two fifths of the soak time
    // (one round at least).
    const bool soak = soak_enabled();
    const int streams = soak ? 96 : 64;
    const std::uint64_t bulk = (soak ? 64ull : 7ull) << 20;
    const auto deadline_after = soak ? std::chrono::milliseconds(600s) : std::chrono::milliseconds(60s);
    const auto soak_until = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                               std::chrono::duration<double>(soak_minutes() * 60 * 2 / 5));

    FinBoard fins(static_cast<std::size_t>(streams));
    StreamServer backend(deadline_after + 5s, fins);
    // Three groups of six streams in four go through a sluice with 64 KiB
    // pipes (the kernel's default pipe size): reads of at most 64 KiB make
    // many reads per event, so a FIN often lands on an event's last allowed
    // read (the hang of issue 15). The rest go through one with the default
    // 1 MiB pipes.
    Sluice small_pipes(fault_config({{"s", backend.address()}}, "", "workers = 2\npipe_size = 65536"));
    Sluice default_pipes(fault_config({{"s", backend.address()}}, "", "workers = 2"));
    auto through = [&](const StreamPlan& plan) -> Sluice& {
        return (plan.id / 6) % 4 == 3 ? default_pipes : small_pipes;
    };

    IntegrityRound total;
    int rounds = 0;
    do {
        fins.reset();
        const auto plans = integrity_plans(streams, bulk, 15 + static_cast<std::uint64_t>(rounds));
        IntegrityRound round = run_integrity_round(plans, backend, fins, through, small_pipes, deadline_after);
        ++rounds;
        total.streams += round.streams;
        total.ended += round.ended;
        total.intact += round.intact;
        total.small += round.small;
        total.ended_small += round.ended_small;
        total.bytes += round.bytes;
        total.seconds += round.seconds;
        if (!round.problems.empty())
            total.problems += fmt::format("round {}:\n{}", rounds, round.problems);
    } while (soak && Clock::now() < soak_until && total.problems.empty());

    print_summary(fmt::format("integrity: {}/{} streams ended (EOF at both ends; {}/{} through 64 KiB pipes, {}/{} "
                              "through 1 MiB pipes), {}/{} byte-exact both ways (SHA-256), {} round{} of {} x up "
                              "to {} MiB each way, {:.0f} MiB in {:.1f} s",
                              total.ended, total.streams, total.ended_small, total.small,
                              total.ended - total.ended_small, total.streams - total.small, total.intact, total.streams,
                              rounds, rounds == 1 ? "" : "s", streams, bulk >> 20,
                              static_cast<double>(total.bytes) / (1 << 20), total.seconds));
    INFO(total.problems);
    CHECK(total.ended == total.streams);
    CHECK(total.intact == total.streams);
}

// ---- 2. backend killed and restarted -------------------------------------------------

TEST_CASE("a backend killed under load costs no new connection and gets traffic again once restarted")
{
    std::vector<std::unique_ptr<EchoBackend>> backends;
    for (const char* name : {"b1", "b2", "b3"})
        backends.push_back(std::make_unique<EchoBackend>(name, "whoami"));
    std::vector<NamedBackend> named;
    for (int i = 0; i < 3; ++i)
        named.push_back({fmt::format("b{}", i + 1), backends[static_cast<std::size_t>(i)]->address()});
    // Passive marking off (max_fails = 0): until the probe's verdict (two
    // failed probes 200 ms apart), every connect that picks the dead backend
    // is refused and must be retried on another one.
    Sluice sluice(fault_config(named,
                               "retries = 2\nmax_fails = 0\n"
                               "health = { interval = \"200ms\", timeout = \"200ms\", rise = 2, fall = 2 }",
                               "workers = 2"));
    AdminClient admin(admin_path(sluice));
    auto healthy = [&] { return count_of(admin.command("json show servers"), R"("health":"up")"); };

    constexpr int kThreads = 6;
    ShortConnectionLoad load(sluice.port("front"), kThreads);
    REQUIRE(wait_until([&] { return load.ok() >= 200; }, 20s));

    // CI: two cycles, killing b2, then b3. Soak: cycles for a fifth of the
    // soak time, killing each backend in turn.
    const bool soak = soak_enabled();
    const auto soak_until = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                               std::chrono::duration<double>(soak_minutes() * 60 / 5));
    int cycles = 0;
    struct Kill {
        std::string victim;
        Clock::time_point sent, reaped;
    };
    std::vector<Kill> kills;
    double worst_back_s = 0;
    do {
        const auto victim = static_cast<std::size_t>((cycles + 1) % 3);
        const std::string name = fmt::format("b{}", victim + 1);
        const std::string address = backends[victim]->address();

        const auto sent = Clock::now();
        backends[victim]->stop();  // SIGKILL and reap
        kills.push_back({name, sent, Clock::now()});
        INFO(sluice.process().output());
        // Down by the probe or by traffic; the others carry the load meanwhile.
        REQUIRE(wait_until([&] { return healthy() == 2; }, 10s));
        std::uint64_t before = load.ok();
        REQUIRE(wait_until([&] { return load.ok() >= before + 300; }, 20s));

        const std::uint64_t victim_before = load.ok_by(name);
        const auto restarted = Clock::now();
        backends[victim] = std::make_unique<EchoBackend>(name, "whoami", address);
        REQUIRE(wait_until([&] { return healthy() == 3 && load.ok_by(name) > victim_before; }, 20s));
        worst_back_s = std::max(worst_back_s, seconds_since(restarted));
        ++cycles;
    } while (soak ? Clock::now() < soak_until : cycles < 2);
    const std::uint64_t after_last = load.ok();
    REQUIRE(wait_until([&] { return load.ok() >= after_last + 200; }, 20s));
    load.stop();

    // A connection in flight when a backend died may have been handed to it:
    // that session is cut, as it would be without sluice. A connection begun
    // after the dead backend was reaped meets a closed port, which sluice
    // retries on another backend: none of those may fail. (A connection lives
    // at most 5 s: its receive timeout.)
    std::size_t cut = 0, lost = 0;
    std::string lost_detail;
    for (const auto& failure : load.failures()) {
        bool in_flight = false;
        for (const Kill& kill : kills)
            in_flight = in_flight
                || (failure.started <= kill.reaped && failure.started + 6s >= kill.sent
                    && (failure.backend.empty() || failure.backend == kill.victim));
        if (in_flight) {
            ++cut;
        } else {
            ++lost;
            lost_detail += fmt::format("{} (backend '{}')\n", failure.why, failure.backend);
        }
    }
    std::string counts;
    for (const char* name : {"b1", "b2", "b3"})
        counts += fmt::format(" {} {}", name, load.ok_by(name));
    const std::string stat = admin.command("json show stat");
    const double refused = number_after(stat, "failed_connects");
    const double retried = number_after(stat, "retries");
    print_summary(fmt::format("kill/restart: {} cycle{}, {} connections ok ({}), {} failed new connections, "
                              "{:.0f} connects refused by a dead backend and {:.0f} retried on another, "
                              "{} in-flight sessions cut by the kills, restarted backend served again within {:.1f} s",
                              cycles, cycles == 1 ? "" : "s", load.ok(), counts.substr(1), lost, refused, retried,
                              cut, worst_back_s));
    INFO(lost_detail);
    CHECK(lost == 0);
    // The retry path was taken: connects did meet a dead backend.
    CHECK(retried >= cycles);
    // Each thread has one connection at a time, so a kill cuts at most that many.
    CHECK(cut <= static_cast<std::size_t>(kThreads * cycles));
}

// ---- 3. descriptor exhaustion --------------------------------------------------------

TEST_CASE("at the descriptor limit no backend is marked down and service resumes by itself")
{
    EchoBackend b1("b1"), b2("b2"), b3("b3");
    // 200 descriptors, but room for 1,000 sessions: the limit that bites is
    // the descriptors, on the socket() for the backend connect.
    LimitedSluice sluice(fault_config({{"b1", b1.address()}, {"b2", b2.address()}, {"b3", b3.address()}},
                                      "retries = 2\nmax_fails = 3\nfail_timeout = \"30s\"",
                                      "workers = 1\nmax_connections = 1000"),
                         200);
    const std::uint16_t port = sluice.port("front");
    AdminClient admin(sluice.dir() + "/admin.sock");  // connected before descriptors run out

    // Idle sessions, each proven with one byte each way, until one is refused.
    std::vector<Fd> idle;
    int refused_at = -1;
    for (int i = 0; i < 400 && refused_at < 0; ++i) {
        int fd = connect_or_fail(port, 5s);
        REQUIRE(fd >= 0);
        Fd client(fd);
        if (echo_one_byte(client, 'x'))
            idle.push_back(std::move(client));
        else
            refused_at = i;
    }
    INFO("clients served before the first refusal: " << idle.size());
    REQUIRE(refused_at > 0);  // else the descriptor limit did not apply
    const auto exhausted = Clock::now();
    // More clients at the limit: each is closed, none served.
    int refused_more = 0;
    for (int i = 0; i < 20; ++i) {
        Fd client(connect_or_fail(port, 5s));
        if (client >= 0 && !echo_one_byte(client, 'y'))
            ++refused_more;
    }
    const bool warned = sluice.process().wait_for_line("out of local resources", 5s).has_value();
    const std::string servers_at_limit = admin.command("json show servers");
    const std::size_t up_at_limit = count_of(servers_at_limit, R"("health":"up")");

    // The idle clients leave; new ones are served again, without help.
    const std::size_t held = idle.size();
    idle.clear();
    const auto released = Clock::now();
    bool resumed = wait_until(
        [&] {
            Fd client(connect_or_fail(port, 2s));
            return client >= 0 && echo_one_byte(client, 'z');
        },
        5s);
    const double resume_s = seconds_since(released);
    int served_after = 0;
    for (int i = 0; i < 20 && resumed; ++i) {
        Fd client(connect_or_fail(port, 5s));
        if (client >= 0 && echo_one_byte(client, 'w'))
            ++served_after;
    }
    const std::size_t warnings = sluice.process().count_lines("out of local resources");
    const auto allowed_warnings = 1 + static_cast<std::size_t>(seconds_since(exhausted) / 10);
    const std::size_t marked_down = sluice.process().count_lines("is DOWN");
    print_summary(fmt::format("fd exhaustion (limit 200): {} idle sessions held, {} more clients refused, "
                              "{} of 3 backends up at the limit, {} marked DOWN, {} resource warning{}, "
                              "served again {:.2f} s after the idle clients left ({}/20)",
                              held, 1 + refused_more, up_at_limit, marked_down, warnings, warnings == 1 ? "" : "s",
                              resume_s, served_after));
    INFO(sluice.process().output());
    INFO(servers_at_limit);
    CHECK(refused_more == 20);
    CHECK(warned);
    CHECK(up_at_limit == 3);
    CHECK(marked_down == 0);
    CHECK(warnings >= 1);
    CHECK(warnings <= allowed_warnings);
    CHECK(resumed);
    CHECK(served_after == 20);
    CHECK(count_of(admin.command("json show servers"), R"("health":"up")") == 3);
}

// ---- 4. idle sessions at the default cap ---------------------------------------------

TEST_CASE("9000 idle sessions fit under the default cap at 20000 descriptors")
{
    constexpr long kFdLimit = 20000;
    constexpr int kSessions = 9000;
    if (hard_fd_limit() < kFdLimit) {
        WARN("SKIPPED: needs a hard descriptor limit of " << kFdLimit << " (ulimit -Hn), this machine has "
                                                            << hard_fd_limit());
        return;
    }
    // This process holds the 9,000 client sockets.
    REQUIRE(raise_own_fd_limit(kFdLimit) >= kSessions + 200);
    EchoBackend echo("e", "echo");
    LimitedSluice sluice(fault_config({{"e", echo.address()}}, "", "workers = 2"), kFdLimit);
    INFO(sluice.process().output());
    const long cap = started_max_sessions(sluice.process().output());
    const std::uint16_t port = sluice.port("front");

    // A few sessions first, so code and pools are paged in before the baseline.
    for (int i = 0; i < 16; ++i) {
        Fd client(connect_tcp(port));
        REQUIRE(echo_one_byte(client, 'w'));
    }
    const pid_t pid = sluice.process().pid();  // prlimit execs sluice in place
    const long rss_before = rss_kib(pid);

    const auto begin = Clock::now();
    std::vector<Fd> clients;
    clients.reserve(kSessions);
    int established = 0;
    std::string connect_error;
    // In batches, so no accept queue overflows and every byte is accounted.
    constexpr int kBatch = 250;
    for (int first = 0; first < kSessions && connect_error.empty(); first += kBatch) {
        const int count = std::min(kBatch, kSessions - first);
        for (int i = 0; i < count; ++i) {
            int fd = connect_or_fail(port, 10s);
            if (fd < 0) {
                connect_error = fmt::format("client {}: {}", first + i, std::strerror(errno));
                break;
            }
            clients.emplace_back(fd);
        }
        for (std::size_t i = static_cast<std::size_t>(first); i < clients.size(); ++i) {
            char byte = static_cast<char>('a' + i % 26);
            if (::send(clients[i], &byte, 1, MSG_NOSIGNAL) != 1)
                connect_error = fmt::format("client {}: send: {}", i, std::strerror(errno));
        }
        for (std::size_t i = static_cast<std::size_t>(first); i < clients.size(); ++i) {
            char back = 0;
            if (::recv(clients[i], &back, 1, 0) == 1 && back == static_cast<char>('a' + i % 26))
                ++established;
        }
    }
    const double open_s = seconds_since(begin);
    const long rss_after = rss_kib(pid);
    const double per_session_kib = static_cast<double>(rss_after - rss_before) / kSessions;
    const std::size_t sockets = open_socket_count(pid);
    print_summary(fmt::format("idle sessions: {}/{} established (one byte each way) in {:.1f} s under the default "
                              "cap of {} at {} descriptors; sluice RSS {} -> {} KiB = {:.2f} KiB per session, "
                              "{} sockets held",
                              established, kSessions, open_s, cap, kFdLimit, rss_before, rss_after, per_session_kib,
                              sockets));
    INFO(connect_error);
    CHECK(connect_error.empty());
    CHECK(cap >= kSessions);
    CHECK(established == kSessions);
    CHECK(sockets >= static_cast<std::size_t>(2 * kSessions));
    CHECK(sluice.process().count_lines("max_connections") == 0);  // no one turned away
    // An idle session holds two sockets and its bookkeeping, no buffer or pipe.
    CHECK(per_session_kib < 16.0);
}

// ---- 5. reload storm -------------------------------------------------------------------

TEST_CASE("a storm of reloads under load fails no connection")
{
    EchoBackend a("a"), b("b"), c("c");
    const std::string three = fault_config({{"a", a.address()}, {"b", b.address()}, {"c", c.address()}},
                                           "balance = \"round_robin\"", "workers = 2");
    const std::string two = fault_config({{"a", a.address()}, {"b", b.address()}}, "balance = \"least_conn\"",
                                         "workers = 2");
    Sluice sluice(three);
    // CI: 50 reloads in about 10 s. Soak: the same pace for a fifth of the soak.
    const bool soak = soak_enabled();
    const int reloads = soak ? static_cast<int>(soak_minutes() * 60 / 5 * 5) : 50;  // 5 a second
    constexpr auto kPace = 200ms;

    AdminClient admin(admin_path(sluice));
    auto accepted = [&] { return number_after(admin.command("json show stat"), "accepted"); };
    Process bench(binary_from_env("SLUICE_BENCH_BIN"),
                  {"--target", fmt::format("127.0.0.1:{}", sluice.port("front")), "--mode", "connect",
                   "--concurrency", "8", "--duration", "3600s", "--timeout", "5s", "--json"});
    REQUIRE(wait_until([&] { return accepted() >= 200; }, 20s));  // the load is on

    const long rss_before = rss_kib(sluice.process().pid());
    const auto begin = Clock::now();
    for (int i = 1; i <= reloads; ++i) {
        sluice.rewrite_config(i % 2 ? two : three);
        sluice.process().send_signal(SIGHUP);
        if (!sluice.process().wait_for_line(fmt::format("reload ok (generation {})", i + 1), 10s)) {
            INFO(sluice.process().output());
            FAIL("reload " << i << " did not complete");
        }
        std::this_thread::sleep_until(begin + i * kPace);  // pacing, not waiting for a condition
    }
    const long rss_after = rss_kib(sluice.process().pid());
    const double storm_s = seconds_since(begin);
    REQUIRE(bench.running());
    bench.send_signal(SIGINT);  // stop and report
    REQUIRE(bench.wait_exit(20s) == 0);
    const std::string report = bench.stdout_text();
    INFO(report);
    const double ok = number_after(report, "requests");
    const double errors = number_after(report, "errors_total");
    print_summary(fmt::format("reload storm: {} SIGHUP reloads in {:.1f} s under sluice-bench connect load, "
                              "{:.0f} connections, {:.0f} failed, {} reload failures, sluice RSS {} -> {} KiB",
                              reloads, storm_s, ok, errors, sluice.process().count_lines("reload failed"), rss_before,
                              rss_after));
    CHECK(errors == 0);
    CHECK(ok > 0);
    CHECK(sluice.process().count_lines("reload failed") == 0);
}
