#include "sluice/dashboard.h"

#include "sluice/admin_render.h"
#include "sluice/http_request.h"
#include "sluice/json.h"

#include "dashboard_page.h"  // generated from src/dashboard/index.html (src/meson.build)

#include <algorithm>
#include <cmath>
#include <fmt/format.h>

namespace sluice {

std::string_view dashboard_page() noexcept { return kDashboardPage; }

// ---- history ----------------------------------------------------------------------

void RateRing::push(double value)
{
    if (values_.size() == kCapacity)
        values_.pop_front();
    values_.push_back(value);
}

std::vector<double> RateRing::values() const { return {values_.begin(), values_.end()}; }

void DashboardHistory::add_event(DashboardEvent event)
{
    if (events_.size() == kMaxEvents)
        events_.pop_front();
    events_.push_back(std::move(event));
}

namespace {

// Counters only grow, but a backend removed and added back by a reload
// starts again from zero: a negative step is a restart, not a rate.
double per_second(std::uint64_t now, std::uint64_t before, double elapsed)
{
    return now >= before && elapsed > 0 ? static_cast<double>(now - before) / elapsed : 0;
}

template <typename Seen, typename Rates>
void push_rates(Rates& rates, const Seen& now, const Seen& before, double elapsed)
{
    rates.sessions.push(per_second(now.sessions, before.sessions, elapsed));
    rates.bytes_in.push(per_second(now.bytes_in, before.bytes_in, elapsed));
    rates.bytes_out.push(per_second(now.bytes_out, before.bytes_out, elapsed));
}

// Keeps the entries of `map` whose key is in `keep`: a backend or listener
// a reload removed takes its history with it.
template <typename Map, typename Keys>
void keep_only(Map& map, const Keys& keep)
{
    std::erase_if(map, [&](const auto& entry) { return !keep.contains(entry.first); });
}

} // namespace

void DashboardHistory::sample(const StatsSnapshot& s, double wall, double elapsed)
{
    const bool first = !sampled_;
    sampled_ = true;
    // Generation 1 is the start (the first sample may come before it is
    // published, and see 0); every later one is a reload.
    if (!first && s.generation != generation_ && s.generation > 1)
        add_event({wall, "reload", "", fmt::format("configuration reloaded (generation {})", s.generation)});
    if (!first && s.reloads_failed > reloads_failed_)
        add_event({wall, "reload_failed", "",
                   fmt::format("reload rejected, generation {} keeps running", s.generation)});
    generation_ = s.generation;
    reloads_failed_ = s.reloads_failed;

    std::map<std::string, BackendSeen> backends;
    Seen total;
    for (const BackendSnapshot& b : s.backends) {
        const std::string key = b.pool + "/" + b.name;
        BackendSeen now{{b.total, b.bytes_in, b.bytes_out}, b.up(), b.admin, b.weight};
        total.sessions += b.total;
        total.bytes_in += b.bytes_in;
        total.bytes_out += b.bytes_out;
        auto before = backends_seen_.find(key);
        if (before == backends_seen_.end()) {
            if (!first)
                add_event({wall, "added", key, fmt::format("{} added ({})", key, b.address)});
            push_rates(backend_rates_[key], now.counters, now.counters, elapsed);
        } else {
            const BackendSeen& was = before->second;
            if (was.up != now.up)
                add_event(now.up ? DashboardEvent{wall, "up", key, fmt::format("{} is UP", key)}
                                 : DashboardEvent{wall, "down", key, fmt::format("{} is DOWN: {}", key, b.why)});
            if (was.admin != now.admin)
                add_event({wall, "state", key,
                           fmt::format("{} admin state {} -> {}", key, to_string(was.admin), to_string(now.admin))});
            if (was.weight != now.weight)
                add_event({wall, "weight", key, fmt::format("{} weight {} -> {}", key, was.weight, now.weight)});
            push_rates(backend_rates_[key], now.counters, was.counters, elapsed);
        }
        backends.emplace(key, now);
    }
    if (!first)
        for (const auto& [key, was] : backends_seen_)
            if (!backends.contains(key))
                add_event({wall, "removed", key, fmt::format("{} removed", key)});
    keep_only(backend_rates_, backends);
    backends_seen_ = std::move(backends);

    std::map<std::string, Seen> listeners;
    for (const ListenerSnapshot& l : s.listeners) {
        Seen now{l.totals.accepted, l.totals.bytes_in, l.totals.bytes_out};
        auto before = listeners_seen_.find(l.name);
        push_rates(listener_rates_[l.name], now, before == listeners_seen_.end() ? now : before->second, elapsed);
        listeners.emplace(l.name, now);
    }
    keep_only(listener_rates_, listeners);
    listeners_seen_ = std::move(listeners);

    push_rates(total_, total, first ? total : total_seen_, elapsed);
    total_seen_ = total;
}

const DashboardHistory::Rates* DashboardHistory::backend(const std::string& key) const
{
    auto it = backend_rates_.find(key);
    return it == backend_rates_.end() ? nullptr : &it->second;
}

const DashboardHistory::Rates* DashboardHistory::listener(const std::string& name) const
{
    auto it = listener_rates_.find(name);
    return it == listener_rates_.end() ? nullptr : &it->second;
}

// ---- /api/state -------------------------------------------------------------------

namespace {

// Rates are rounded to 0.1/s: the page draws them, nobody needs more.
std::string number(double value) { return fmt::format("{}", std::round(value * 10) / 10); }

std::string number_array(const std::vector<double>& values)
{
    std::string out = "[";
    for (std::size_t i = 0; i < values.size(); ++i)
        out += (i ? "," : "") + number(values[i]);
    return out + "]";
}

// The current rates of one ring set, and (with `series`) its history.
std::string rates_json(const DashboardHistory::Rates* rates, bool series)
{
    static const DashboardHistory::Rates none;
    const DashboardHistory::Rates& r = rates ? *rates : none;
    std::string out = fmt::format("\"sessions_per_second\":{},\"bytes_in_per_second\":{},\"bytes_out_per_second\":{}",
                                  number(r.sessions.last()), number(r.bytes_in.last()), number(r.bytes_out.last()));
    if (series) {
        // Throughput is both directions together: one line to draw.
        std::vector<double> in = r.bytes_in.values();
        std::vector<double> out_values = r.bytes_out.values();
        for (std::size_t i = 0; i < in.size() && i < out_values.size(); ++i)
            in[i] += out_values[i];
        out += fmt::format(",\"history\":{{\"sessions_per_second\":{},\"bytes_per_second\":{}}}",
                           number_array(r.sessions.values()), number_array(in));
    }
    return out;
}

} // namespace

std::string render_dashboard_state(const StatsSnapshot& s, const DashboardHistory& history, double wall, bool actions)
{
    std::string out = fmt::format("{{\"version\":1,\"time\":{:.3f},\"uptime_seconds\":{:.3f},\"generation\":{},"
                                  "\"reloads_ok\":{},\"reloads_failed\":{},\"actions\":{},\"interval_seconds\":1,"
                                  "\"total\":{{{}}},\"listeners\":[",
                                  wall, s.uptime_seconds, s.generation, s.reloads_ok, s.reloads_failed, actions,
                                  rates_json(&history.total(), true));
    for (std::size_t i = 0; i < s.listeners.size(); ++i) {
        const ListenerSnapshot& l = s.listeners[i];
        out += fmt::format("{}{{\"name\":{},\"protocol\":\"{}\",\"address\":{},\"sessions\":{},\"refused\":{},"
                           "\"dropped\":{},\"bytes_in\":{},\"bytes_out\":{},{}}}",
                           i ? "," : "", json_quote(l.name), l.protocol, json_quote(l.address), l.totals.accepted,
                           l.totals.rejected + l.totals.denied + l.totals.source_limited + l.totals.proxy_refused,
                           l.totals.dropped, l.totals.bytes_in, l.totals.bytes_out,
                           rates_json(history.listener(l.name), false));
    }
    out += "],\"pools\":[";
    for (std::size_t i = 0; i < s.pools.size(); ++i) {
        const PoolSnapshot& p = s.pools[i];
        std::size_t up = 0, total = 0;
        for (const BackendSnapshot& b : s.backends)
            if (b.pool == p.name) {
                ++total;
                up += b.up() ? 1 : 0;
            }
        out += fmt::format("{}{{\"name\":{},\"sessions\":{},\"active\":{},\"bytes_in\":{},\"bytes_out\":{},"
                           "\"failed_connects\":{},\"retries\":{},\"rejected\":{},\"backends_up\":{},"
                           "\"backends\":{}}}",
                           i ? "," : "", json_quote(p.name), p.sessions, p.active, p.bytes_in, p.bytes_out,
                           p.failed_connects, p.retries, p.rejected, up, total);
    }
    out += "],\"backends\":[";
    for (std::size_t i = 0; i < s.backends.size(); ++i) {
        const BackendSnapshot& b = s.backends[i];
        out += fmt::format("{}{{\"pool\":{},\"name\":{},\"address\":{},\"backup\":{},\"state\":\"{}\","
                           "\"health\":\"{}\",\"why\":{},\"weight\":{},\"active\":{},\"total\":{},"
                           "\"connect_failures\":{},\"bytes_in\":{},\"bytes_out\":{},{},{}}}",
                           i ? "," : "", json_quote(b.pool), json_quote(b.name), json_quote(b.address), b.backup,
                           to_string(b.admin), b.up() ? "up" : "down", json_quote(b.why), b.weight, b.active,
                           b.total, b.connect_failures, b.bytes_in, b.bytes_out, render_check_json(b),
                           rates_json(history.backend(b.pool + "/" + b.name), true));
    }
    out += "],\"events\":[";
    bool comma = false;
    for (const DashboardEvent& e : history.events()) {
        out += fmt::format("{}{{\"time\":{:.3f},\"kind\":\"{}\",\"subject\":{},\"message\":{}}}", comma ? "," : "",
                           e.time, e.kind, json_quote(e.subject), json_quote(e.message));
        comma = true;
    }
    return out + "]}";
}

// ---- actions ----------------------------------------------------------------------

namespace {

int hex_digit(char c) noexcept
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

// RFC 3986 percent-decoding of one path segment or form value ("+" is a
// space in a form value only, and no name has one anyway).
std::optional<std::string> percent_decode(std::string_view text)
{
    std::string out;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '%') {
            out += text[i];
            continue;
        }
        if (i + 2 >= text.size())
            return std::nullopt;
        const int high = hex_digit(text[i + 1]);
        const int low = hex_digit(text[i + 2]);
        if (high < 0 || low < 0)
            return std::nullopt;
        out += static_cast<char>(high * 16 + low);
        i += 2;
    }
    return out;
}

bool equal_ignoring_case(std::string_view a, std::string_view b) noexcept
{
    return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
        auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
        return lower(x) == lower(y);
    });
}

} // namespace

ServerAction parse_server_action(std::string_view target, std::string_view body)
{
    ServerAction result;
    constexpr std::string_view prefix = "/api/servers/";
    constexpr std::string_view suffix = "/state";
    std::string_view path = target.substr(0, target.find('?'));
    if (!path.starts_with(prefix) || !path.ends_with(suffix) || path.size() <= prefix.size() + suffix.size()) {
        result.not_found = true;
        result.error = "expected /api/servers/POOL/NAME/state";
        return result;
    }
    path = path.substr(prefix.size(), path.size() - prefix.size() - suffix.size());
    const std::size_t slash = path.find('/');
    std::optional<std::string> pool = percent_decode(path.substr(0, slash));
    std::optional<std::string> name =
        slash == std::string_view::npos ? std::nullopt : percent_decode(path.substr(slash + 1));
    if (!pool || !name || name->find('/') != std::string::npos) {
        result.not_found = true;
        result.error = "expected /api/servers/POOL/NAME/state";
        return result;
    }
    while (!body.empty() && (body.back() == '\n' || body.back() == '\r'))
        body.remove_suffix(1);
    // The action is the admin command "set server POOL/NAME FIELD VALUE",
    // parsed by the admin protocol's own parser: one grammar, one set of
    // messages. Its words must then hold no blanks.
    auto word = [](std::string_view text) { return !text.empty() && text.find_first_of(" \t\r\n") == text.npos; };
    if (!word(*pool) || !word(*name)) {
        result.not_found = true;
        result.error = "expected /api/servers/POOL/NAME/state";
        return result;
    }
    const std::size_t equals = body.find('=');
    const std::string_view field = body.substr(0, equals);
    const std::string_view value = equals == std::string_view::npos ? std::string_view{} : body.substr(equals + 1);
    if (!word(field) || !word(value)) {
        result.error = "expected a body state=ready|drain|maint or weight=N";
        return result;
    }
    AdminParseResult parsed = parse_admin_command(fmt::format("set server {}/{} {} {}", *pool, *name, field, value));
    result.command = std::move(parsed.command);
    result.error = std::move(parsed.error);
    return result;
}

bool bearer_token_matches(std::string_view fields, std::string_view token) noexcept
{
    if (token.empty())
        return false;
    std::optional<std::string_view> value = http_field(fields, "authorization");
    if (!value || value->size() < 7 || !equal_ignoring_case(value->substr(0, 7), "bearer "))
        return false;
    std::string_view offered = value->substr(7);
    while (!offered.empty() && offered.front() == ' ')
        offered.remove_prefix(1);
    // Constant time in the contents: every byte of the token is compared,
    // whatever matched before; only the lengths (not secret enough to hide,
    // and the token's length is fixed by whoever made it) decide early.
    unsigned char difference = offered.size() == token.size() ? 0 : 1;
    for (std::size_t i = 0; i < token.size(); ++i)
        difference |= static_cast<unsigned char>(token[i] ^ (i < offered.size() ? offered[i] : 0));
    return difference == 0;
}

} // namespace sluice
