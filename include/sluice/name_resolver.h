// NameResolver: DNS for backend names and pool discovery, with c-ares on the
// control thread's loop (never a worker's: a worker never waits for DNS).
//
// It asks for every name and SRV record the configuration needs, again when
// the answer's TTL (clamped to [dns_min_ttl, dns_max_ttl]) runs out, and keeps
// the answers in DnsAnswers. apply_answers() turns the file's configuration
// plus the answers into the configuration a generation is built from; the
// server publishes a new generation whenever an answer changes, so new
// sessions use the new address while running ones keep theirs.
//
// Failures: an authoritative "no such name" (NXDOMAIN) or "no record" empties
// the answer. A resolver that does not answer (timeout, refused, SERVFAIL)
// keeps the last good answer (logged once per name); a name that never had
// one carries the failure as its status, which the backend shows as its down
// reason. A truncated UDP answer is asked again over TCP by c-ares.
#pragma once

#include "sluice/config.h"
#include "sluice/event_loop.h"

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

namespace sluice {

struct NameAnswer {
    NameStatus status = NameStatus::Pending;
    // Sorted, so a resolver that rotates its records gives the same answer.
    std::vector<SocketAddress> addresses;  // port 0
    bool operator==(const NameAnswer&) const = default;
};

struct SrvTarget {
    std::string host;
    std::uint16_t port = 0;
    std::uint16_t priority = 0;
    std::uint16_t weight = 0;
    auto operator<=>(const SrvTarget&) const = default;
};

struct SrvAnswer {
    NameStatus status = NameStatus::Pending;
    std::vector<SrvTarget> targets;  // sorted
    bool operator==(const SrvAnswer&) const = default;
};

struct DnsAnswers {
    std::map<std::string, NameAnswer> names;  // host -> A/AAAA
    std::map<std::string, SrvAnswer> srv;     // SRV owner -> targets
};

// What a configuration asks DNS for: backend host names, discover names, SRV
// owners. (SRV targets' names are added by the resolver as answers come.)
struct DnsQuestions {
    std::set<std::string> names;
    std::set<std::string> srv;
    bool empty() const noexcept { return names.empty() && srv.empty(); }
};
DnsQuestions questions_of(const Config& config);

// Pure. `base` with every name backend's address and status taken from
// `answers`, and each discovering pool's backends appended: one per SRV target
// (port and weight from the record, weight 0 counted as 1; the lowest priority
// are primaries, the others backups; named "target:port") or one per address
// of `discover.name` (named "ip:port"). A target or address already listed in
// the pool's `backends` is not added twice. Discovered backends get no slot
// limit here: build_runtime reports a full table.
Config apply_answers(const Config& base, const DnsAnswers& answers);

// The smallest TTL of the answer section of a DNS reply, nullopt when it has
// no answer or is malformed. (c-ares 1.18 parses SRV replies without TTLs.)
std::optional<std::uint32_t> min_answer_ttl(const unsigned char* reply, int length);

class NameResolver {
public:
    // Calls `on_change` on `loop`'s thread when answers changed (coalesced:
    // at most once per 50 ms, so 1,000 targets answering build one generation).
    NameResolver(EventLoop& loop, std::function<void()> on_change);
    ~NameResolver();
    NameResolver(const NameResolver&) = delete;
    NameResolver& operator=(const NameResolver&) = delete;

    // Loop thread: the servers and TTL clamp from `global`, and what to ask.
    // New names are asked at once; names no longer asked are forgotten.
    // Returns false with `error` set when c-ares cannot start.
    bool configure(const GlobalConfig& global, const DnsQuestions& questions, std::string* error);

    // Loop thread.
    const DnsAnswers& answers() const noexcept { return answers_; }
    std::uint64_t queries_sent() const noexcept { return queries_sent_; }

private:
    struct Record {
        bool srv = false;
        ev_tstamp due = 0;       // when to ask next (loop time)
        bool in_flight = false;
        bool failure_logged = false;
        std::uint64_t asked = 0;  // ask number, to drop the answer of a forgotten record
    };
    struct Query;
    struct Socket;

    void on_tick();
    void on_ares_timer();
    void on_coalesce();
    void ask(const std::string& name, Record& record);
    void finish_name(const std::string& name, std::uint64_t asked, int status, std::vector<SocketAddress> addresses,
                     std::optional<std::uint32_t> ttl);
    void finish_srv(const std::string& name, std::uint64_t asked, int status, std::vector<SrvTarget> targets,
                    std::optional<std::uint32_t> ttl);
    // When to ask again: the TTL clamped, or dns_min_ttl after a failure.
    void schedule(Record& record, std::optional<std::uint32_t> ttl);
    bool keeps_last_answer(Record& record, const std::string& what, NameStatus status, bool have_last);
    void changed();
    void sync_target_names();
    void rearm_ares_timer();
    static void on_socket_state(void* data, int fd, int readable, int writable);
    void process_socket(int fd, int revents);

    EventLoop& loop_;
    std::function<void()> on_change_;
    void* channel_ = nullptr;  // ares_channel
    std::string servers_;      // the csv the channel was given
    double min_ttl_ = 1, max_ttl_ = 300;
    DnsQuestions questions_;
    std::map<std::string, Record> names_;
    std::map<std::string, Record> srv_;
    DnsAnswers answers_;
    std::unordered_map<int, std::unique_ptr<Socket>> sockets_;
    TimerWatcher tick_;
    TimerWatcher ares_timer_;
    TimerWatcher coalesce_;
    TimerWatcher pump_;  // asks due questions right after an answer freed a place
    int in_flight_ = 0;
    std::uint64_t queries_sent_ = 0;
    std::uint64_t next_ask_ = 1;
};

} // namespace sluice
