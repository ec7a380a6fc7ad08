#include "sluice/name_resolver.h"

#include "sluice/log.h"

#include <ares.h>
#include <arpa/nameser.h>

#include <algorithm>
#include <cassert>
#include <cmath>
#include <mutex>

namespace sluice {

namespace {

// How often due records are looked for; the floor of re-resolution timing.
constexpr double kTickInterval = 0.1;
// Questions in flight at once. A burst of thousands (an SRV answer's targets)
// overflows socket buffers on either side and turns into timeouts; a window
// keeps the server busy without losing any.
constexpr int kMaxInFlight = 64;
// Answers arriving within this long of the first change build one generation.
constexpr double kCoalesceDelay = 0.05;

NameStatus status_of(int ares_status) noexcept
{
    switch (ares_status) {
    case ARES_SUCCESS: return NameStatus::Resolved;
    case ARES_ENOTFOUND: return NameStatus::NxDomain;
    case ARES_ENODATA: return NameStatus::NoAddress;
    case ARES_ETIMEOUT:
    case ARES_ECONNREFUSED: return NameStatus::Timeout;
    default: return NameStatus::Failed;
    }
}

// NXDOMAIN and "no record" are answers; the rest says nothing about the name.
bool is_answer(NameStatus status) noexcept
{
    return status == NameStatus::Resolved || status == NameStatus::NxDomain || status == NameStatus::NoAddress;
}

void backend_from_name(BackendConfig& backend, const DnsAnswers& answers)
{
    auto it = answers.names.find(backend.host);
    if (it == answers.names.end() || it->second.addresses.empty()) {
        backend.status = it == answers.names.end() || it->second.status == NameStatus::Resolved ? NameStatus::Pending
                                                                                                : it->second.status;
        backend.address = SocketAddress();
        return;
    }
    backend.status = NameStatus::Resolved;
    backend.address = it->second.addresses.front();
    backend.address.set_port(backend.port);
}

} // namespace

DnsQuestions questions_of(const Config& config)
{
    DnsQuestions questions;
    for (const PoolConfig& pool : config.pools) {
        for (const BackendConfig& backend : pool.backends)
            if (!backend.host.empty())
                questions.names.insert(backend.host);
        if (pool.discover && !pool.discover->srv.empty())
            questions.srv.insert(pool.discover->srv);
        if (pool.discover && !pool.discover->name.empty())
            questions.names.insert(pool.discover->name);
    }
    return questions;
}

Config apply_answers(const Config& base, const DnsAnswers& answers)
{
    Config config = base;
    for (PoolConfig& pool : config.pools) {
        std::set<std::string> listed;
        for (BackendConfig& backend : pool.backends) {
            if (!backend.host.empty())
                backend_from_name(backend, answers);
            listed.insert(backend.identity());
        }
        if (!pool.discover)
            continue;
        auto add = [&](BackendConfig backend) {
            if (listed.insert(backend.identity()).second)
                pool.backends.push_back(std::move(backend));
        };
        if (!pool.discover->srv.empty()) {
            auto it = answers.srv.find(pool.discover->srv);
            if (it == answers.srv.end() || it->second.targets.empty())
                continue;
            std::uint16_t primary = it->second.targets.front().priority;
            for (const SrvTarget& t : it->second.targets)
                primary = std::min(primary, t.priority);
            for (const SrvTarget& t : it->second.targets) {
                BackendConfig backend;
                backend.host = t.host;
                backend.port = t.port;
                backend.weight = std::clamp<int>(t.weight, 1, 256);
                backend.backup = t.priority != primary;
                backend.name = backend.identity();
                backend_from_name(backend, answers);
                add(std::move(backend));
            }
        } else {
            auto it = answers.names.find(pool.discover->name);
            if (it == answers.names.end())
                continue;
            for (SocketAddress address : it->second.addresses) {
                BackendConfig backend;
                address.set_port(pool.discover->port);
                backend.address = address;
                backend.weight = pool.discover->weight;
                backend.name = address.to_string();
                add(std::move(backend));
            }
        }
    }
    return config;
}

std::optional<std::uint32_t> min_answer_ttl(const unsigned char* reply, int length)
{
    if (length < HFIXEDSZ)
        return std::nullopt;
    auto u16 = [](const unsigned char* at) { return (at[0] << 8) | at[1]; };
    const int questions = u16(reply + 4);
    const int records = u16(reply + 6);
    const unsigned char* p = reply + HFIXEDSZ;
    auto skip_name = [&]() -> bool {
        char* name = nullptr;
        long used = 0;
        if (ares_expand_name(p, reply, length, &name, &used) != ARES_SUCCESS)
            return false;
        ares_free_string(name);
        p += used;
        return true;
    };
    for (int i = 0; i < questions; ++i) {
        if (!skip_name() || p + QFIXEDSZ > reply + length)
            return std::nullopt;
        p += QFIXEDSZ;
    }
    std::optional<std::uint32_t> smallest;
    for (int i = 0; i < records; ++i) {
        if (!skip_name() || p + RRFIXEDSZ > reply + length)
            return std::nullopt;
        // TYPE(2) CLASS(2) TTL(4) RDLENGTH(2), RFC 1035 4.1.3
        const std::uint32_t ttl = (static_cast<std::uint32_t>(u16(p + 4)) << 16) | static_cast<std::uint32_t>(u16(p + 6));
        const int data = u16(p + 8);
        p += RRFIXEDSZ + data;
        if (p > reply + length)
            return std::nullopt;
        smallest = smallest ? std::min(*smallest, ttl) : ttl;
    }
    return smallest;
}

// One question in flight. c-ares calls back with ARES_EDESTRUCTION when the
// channel goes away, after which the resolver must not be touched.
struct NameResolver::Query {
    NameResolver* resolver;
    std::string name;
    std::uint64_t asked;
};

struct NameResolver::Socket {
    NameResolver* resolver;
    int fd;
    IoWatcher io;
    void on_io(int revents) { resolver->process_socket(fd, revents); }
};

NameResolver::NameResolver(EventLoop& loop, std::function<void()> on_change)
    : loop_(loop), on_change_(std::move(on_change))
{
    tick_.bind<NameResolver, &NameResolver::on_tick>(loop_, this);
    ares_timer_.bind<NameResolver, &NameResolver::on_ares_timer>(loop_, this);
    coalesce_.bind<NameResolver, &NameResolver::on_coalesce>(loop_, this);
    pump_.bind<NameResolver, &NameResolver::on_tick>(loop_, this);
}

NameResolver::~NameResolver()
{
    tick_.stop();
    ares_timer_.stop();
    coalesce_.stop();
    pump_.stop();
    if (channel_)
        ares_destroy(static_cast<ares_channel>(channel_));  // queries end with ARES_EDESTRUCTION
    sockets_.clear();
}

bool NameResolver::configure(const GlobalConfig& global, const DnsQuestions& questions, std::string* error)
{
    loop_.assert_loop_thread();
    min_ttl_ = static_cast<double>(global.dns_min_ttl.count()) / 1000.0;
    max_ttl_ = static_cast<double>(global.dns_max_ttl.count()) / 1000.0;
    questions_ = questions;
    if (questions_.empty() && !channel_)
        return true;  // no names: c-ares is not even started

    std::string servers;
    for (const SocketAddress& server : global.resolvers)
        servers += (servers.empty() ? "" : ",") + server.to_string();
    if (!channel_) {
        static std::once_flag library;
        std::call_once(library, [] { ares_library_init(ARES_LIB_INIT_ALL); });
        ares_options options{};
        options.sock_state_cb = &NameResolver::on_socket_state;
        options.sock_state_cb_data = this;
        options.timeout = 1000;  // ms per try
        options.tries = 2;
        ares_channel channel = nullptr;
        int status = ares_init_options(&channel, &options, ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
        if (status != ARES_SUCCESS) {
            if (error)
                *error = std::string("cannot start the DNS resolver: ") + ares_strerror(status);
            return false;
        }
        channel_ = channel;
        servers_.clear();
        if (servers.empty())
            log::info("dns: resolving backend names with the servers of /etc/resolv.conf");
    }
    if (servers != servers_ && !servers.empty()) {
        int status = ares_set_servers_ports_csv(static_cast<ares_channel>(channel_), servers.c_str());
        if (status != ARES_SUCCESS) {
            if (error)
                *error = "resolvers " + servers + ": " + ares_strerror(status);
            return false;
        }
        log::info("dns: resolving backend names with {}", servers);
    }
    servers_ = servers;

    for (const std::string& name : questions_.srv)
        srv_.try_emplace(name, Record{true});
    for (auto it = srv_.begin(); it != srv_.end();) {
        if (questions_.srv.count(it->first) == 0) {
            answers_.srv.erase(it->first);
            it = srv_.erase(it);
        } else {
            ++it;
        }
    }
    sync_target_names();
    if (!tick_.active())
        tick_.start(0., kTickInterval);
    return true;
}

// The names to ask: the configuration's, and every current SRV target's.
void NameResolver::sync_target_names()
{
    std::set<std::string> wanted = questions_.names;
    for (const auto& [owner, answer] : answers_.srv)
        for (const SrvTarget& target : answer.targets)
            wanted.insert(target.host);
    for (const std::string& name : wanted)
        names_.try_emplace(name, Record{false});
    for (auto it = names_.begin(); it != names_.end();) {
        if (wanted.count(it->first) == 0) {
            answers_.names.erase(it->first);
            it = names_.erase(it);
        } else {
            ++it;
        }
    }
}

void NameResolver::on_tick()
{
    const ev_tstamp now = loop_.now();
    for (auto* records : {&srv_, &names_})
        for (auto& [name, record] : *records) {
            if (in_flight_ >= kMaxInFlight)
                break;
            if (!record.in_flight && record.due <= now)
                ask(name, record);
        }
    rearm_ares_timer();
}

void NameResolver::ask(const std::string& name, Record& record)
{
    auto* channel = static_cast<ares_channel>(channel_);
    record.in_flight = true;
    ++in_flight_;
    record.asked = next_ask_++;
    ++queries_sent_;
    auto* query = new Query{this, name, record.asked};
    if (record.srv) {
        ares_query(
            channel, name.c_str(), ns_c_in, ns_t_srv,
            [](void* arg, int status, int, unsigned char* reply, int length) {
                std::unique_ptr<Query> q(static_cast<Query*>(arg));
                if (status == ARES_EDESTRUCTION)
                    return;
                std::vector<SrvTarget> targets;
                std::optional<std::uint32_t> ttl;
                if (status == ARES_SUCCESS) {
                    ares_srv_reply* srv = nullptr;
                    status = ares_parse_srv_reply(reply, length, &srv);
                    for (ares_srv_reply* r = srv; r; r = r->next)
                        targets.push_back(SrvTarget{r->host, r->port, r->priority, r->weight});
                    if (srv)
                        ares_free_data(srv);
                    ttl = min_answer_ttl(reply, length);
                }
                q->resolver->finish_srv(q->name, q->asked, status, std::move(targets), ttl);
            },
            query);
        return;
    }
    ares_addrinfo_hints hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_flags = ARES_AI_NOSORT;
    ares_getaddrinfo(
        channel, name.c_str(), nullptr, &hints,
        [](void* arg, int status, int, ares_addrinfo* info) {
            std::unique_ptr<Query> q(static_cast<Query*>(arg));
            if (status == ARES_EDESTRUCTION) {
                if (info)
                    ares_freeaddrinfo(info);
                return;
            }
            std::vector<SocketAddress> addresses;
            std::optional<std::uint32_t> ttl;
            if (info) {
                for (ares_addrinfo_node* node = info->nodes; node; node = node->ai_next) {
                    addresses.push_back(
                        SocketAddress::from_sockaddr(node->ai_addr, static_cast<socklen_t>(node->ai_addrlen)));
                    addresses.back().set_port(0);
                    const auto node_ttl = static_cast<std::uint32_t>(std::max(node->ai_ttl, 0));
                    ttl = ttl ? std::min(*ttl, node_ttl) : node_ttl;
                }
                ares_freeaddrinfo(info);
            }
            q->resolver->finish_name(q->name, q->asked, status, std::move(addresses), ttl);
        },
        query);
}

void NameResolver::schedule(Record& record, std::optional<std::uint32_t> ttl)
{
    record.in_flight = false;
    --in_flight_;
    pump_.start(0.);  // the next due questions, once this answer is handled
    double wait = ttl ? std::clamp(static_cast<double>(*ttl), min_ttl_, max_ttl_) : min_ttl_;
    record.due = loop_.now() + wait;
}

// A failure that says nothing about the name (timeout, SERVFAIL) is logged
// once per run of failures; true when a last good answer stays instead.
bool NameResolver::keeps_last_answer(Record& record, const std::string& what, NameStatus status, bool have_last)
{
    if (is_answer(status)) {
        if (record.failure_logged && status == NameStatus::Resolved)
            log::info("dns: {} resolves again", what);
        record.failure_logged = status != NameStatus::Resolved;
        return false;
    }
    if (!record.failure_logged)
        log::warning("dns: {}: {}{}", what, to_string(status), have_last ? "; keeping the last answer" : "");
    record.failure_logged = true;
    return have_last;
}

void NameResolver::finish_name(const std::string& name, std::uint64_t asked, int status,
                               std::vector<SocketAddress> addresses, std::optional<std::uint32_t> ttl)
{
    auto it = names_.find(name);
    if (it == names_.end() || it->second.asked != asked) {
        --in_flight_;  // forgotten meanwhile
        return;
    }
    Record& record = it->second;
    schedule(record, status == ARES_SUCCESS ? ttl : std::nullopt);
    NameAnswer answer;
    answer.status = status_of(status);
    if (status == ARES_SUCCESS && addresses.empty())
        answer.status = NameStatus::NoAddress;
    std::sort(addresses.begin(), addresses.end(),
              [](const SocketAddress& a, const SocketAddress& b) { return a.to_string() < b.to_string(); });
    addresses.erase(std::unique(addresses.begin(), addresses.end()), addresses.end());
    answer.addresses = std::move(addresses);
    NameAnswer& kept = answers_.names[name];
    if (keeps_last_answer(record, name, answer.status, !kept.addresses.empty()))
        return;
    if (answer == kept)
        return;
    // Names of the file are logged one by one; SRV targets (thousands) only
    // through their SRV record's line and show servers.
    const bool configured = questions_.names.count(name) != 0;
    if (configured && answer.status == NameStatus::Resolved)
        log::info("dns: {} is {}{}", name, answer.addresses.front().ip_string(),
                  answer.addresses.size() > 1 ? fmt::format(" (+{} more)", answer.addresses.size() - 1) : "");
    else if (configured && is_answer(answer.status))
        log::warning("dns: {}: {}", name, to_string(answer.status));
    kept = std::move(answer);
    changed();
}

void NameResolver::finish_srv(const std::string& name, std::uint64_t asked, int status, std::vector<SrvTarget> targets,
                              std::optional<std::uint32_t> ttl)
{
    auto it = srv_.find(name);
    if (it == srv_.end() || it->second.asked != asked) {
        --in_flight_;
        return;
    }
    Record& record = it->second;
    schedule(record, status == ARES_SUCCESS ? ttl : std::nullopt);
    SrvAnswer answer;
    answer.status = status_of(status);
    std::sort(targets.begin(), targets.end());
    answer.targets = std::move(targets);
    SrvAnswer& kept = answers_.srv[name];
    if (keeps_last_answer(record, "SRV " + name, answer.status, !kept.targets.empty()))
        return;
    if (answer == kept)
        return;
    log::info("dns: SRV {}: {} targets", name, answer.targets.size());
    kept = std::move(answer);
    sync_target_names();
    on_tick();  // new targets are asked at once
    changed();
}

void NameResolver::changed()
{
    if (!coalesce_.active())
        coalesce_.start(kCoalesceDelay);
}

void NameResolver::on_coalesce()
{
    if (on_change_)
        on_change_();
}

void NameResolver::on_socket_state(void* data, int fd, int readable, int writable)
{
    auto* self = static_cast<NameResolver*>(data);
    if (!readable && !writable) {
        self->sockets_.erase(fd);
        return;
    }
    auto& socket = self->sockets_[fd];
    if (!socket) {
        socket = std::make_unique<Socket>();
        socket->resolver = self;
        socket->fd = fd;
        socket->io.bind<Socket, &Socket::on_io>(self->loop_, socket.get(), fd);
    }
    socket->io.set_events((readable ? EV_READ : 0) | (writable ? EV_WRITE : 0));
}

void NameResolver::process_socket(int fd, int revents)
{
    ares_process_fd(static_cast<ares_channel>(channel_), (revents & EV_READ) ? fd : ARES_SOCKET_BAD,
                    (revents & EV_WRITE) ? fd : ARES_SOCKET_BAD);
    rearm_ares_timer();
}

void NameResolver::on_ares_timer()
{
    ares_process_fd(static_cast<ares_channel>(channel_), ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    rearm_ares_timer();
}

// c-ares's own retransmit and timeout clock.
void NameResolver::rearm_ares_timer()
{
    if (!channel_)
        return;
    timeval tv{};
    if (ares_timeout(static_cast<ares_channel>(channel_), nullptr, &tv) == nullptr) {
        ares_timer_.stop();
        return;
    }
    ares_timer_.start(static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6);
}

} // namespace sluice
