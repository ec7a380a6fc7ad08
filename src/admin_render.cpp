#include "sluice/admin_render.h"

#include "sluice/json.h"

#include <algorithm>
#include <fmt/format.h>

namespace sluice {

// ---- rendering ----------------------------------------------------------------


namespace {

// Left-aligned columns separated by two spaces, the header first.
std::string render_table(const std::vector<std::vector<std::string>>& rows)
{
    std::vector<std::size_t> width;
    for (const auto& row : rows)
        for (std::size_t i = 0; i < row.size(); ++i) {
            if (width.size() <= i)
                width.push_back(0);
            width[i] = std::max(width[i], row[i].size());
        }
    std::string out;
    for (const auto& row : rows) {
        std::string line;
        for (std::size_t i = 0; i < row.size(); ++i) {
            line += row[i];
            if (i + 1 < row.size())
                line += std::string(width[i] - row[i].size() + 2, ' ');
        }
        out += line + "\n";
    }
    if (!out.empty())
        out.pop_back();
    return out;
}

// A pool queue's counts as JSON members (no braces).
std::string queue_json(const QueueTotals& q)
{
    return fmt::format("\"queue_waiting\":{},\"queued\":{},\"queue_served\":{},\"queue_timeouts\":{},"
                       "\"queue_refused\":{},\"queue_wait_ms\":{}",
                       q.waiting, q.queued, q.served, q.timed_out, q.refused, q.wait_ms);
}

} // namespace

std::string render_check_json(const BackendSnapshot& b)
{
    return fmt::format("\"check\":{},\"check_passed\":{},\"verdict\":{},\"role\":{},\"check_seconds\":{}",
                       b.check.empty() ? "null" : json_quote(b.check),
                       b.checked ? (b.check_passed ? "true" : "false") : "null",
                       b.checked ? json_quote(b.verdict) : "null", b.checked ? json_quote(b.role) : "null",
                       b.checked ? fmt::format("{:.6f}", b.check_seconds) : "null");
}

std::string render_servers(const StatsSnapshot& s, bool json)
{
    if (json) {
        std::string out = "{\"servers\":[";
        for (std::size_t i = 0; i < s.backends.size(); ++i) {
            const BackendSnapshot& b = s.backends[i];
            out += fmt::format("{}{{\"pool\":{},\"backend\":{},\"address\":{},\"backup\":{},\"state\":\"{}\","
                               "\"health\":\"{}\",\"why\":{},\"active\":{},\"total\":{},\"failures\":{},"
                               "\"weight\":{},\"max_connections\":{},\"bytes_in\":{},\"bytes_out\":{},{}}}",
                               i ? "," : "", json_quote(b.pool), json_quote(b.name), json_quote(b.address),
                               b.backup, to_string(b.admin), b.up() ? "up" : "down", json_quote(b.why), b.active,
                               b.total, b.connect_failures, b.weight, b.max_connections, b.bytes_in, b.bytes_out, render_check_json(b));
        }
        out += "],\"queues\":[";
        bool first = true;
        for (const PoolSnapshot& p : s.pools)
            if (p.has_queue) {
                out += fmt::format("{}{{\"pool\":{},{}}}", first ? "" : ",", json_quote(p.name), queue_json(p.queue));
                first = false;
            }
        return out + "]}";
    }
    // The check columns come last, so scripts reading the first ten keep
    // working; the verdict, free text, is the very last.
    std::vector<std::vector<std::string>> rows{{"pool", "backend", "address", "state", "health", "why", "active",
                                                "total", "failures", "weight", "maxconn", "check", "took",
                                                "last_check"}};
    for (const BackendSnapshot& b : s.backends) {
        std::string check = b.check.empty() ? "-" : b.check;
        std::string last = !b.checked ? (b.check.empty() ? "-" : "(not yet)")
                                      : fmt::format("{}: {}", b.check_passed ? "pass" : "fail",
                                                    b.verdict.empty() ? "-" : b.verdict);
        std::string took = b.checked ? fmt::format("{:.0f}ms", b.check_seconds * 1000) : "-";
        rows.push_back({b.pool, b.name + (b.backup ? " (backup)" : ""), b.address, std::string(to_string(b.admin)),
                        b.up() ? "up" : "down", std::string(b.why), std::to_string(b.active), std::to_string(b.total),
                        std::to_string(b.connect_failures), std::to_string(b.weight),
                        b.max_connections ? std::to_string(b.max_connections) : "-", std::move(check),
                        std::move(took), std::move(last)});
    }
    std::string out = render_table(rows);
    // A queue is the pool's, not a backend's: one line per pool that has one.
    for (const PoolSnapshot& p : s.pools)
        if (p.has_queue)
            out += fmt::format("\nqueue {}: {} waiting, {} queued, {} served, {} timed out, {} refused, {}ms waited",
                               p.name, p.queue.waiting, p.queue.queued, p.queue.served, p.queue.timed_out,
                               p.queue.refused, p.queue.wait_ms);
    return out;
}

std::string render_stat(const StatsSnapshot& s, bool json)
{
    if (json) {
        std::string out = fmt::format("{{\"uptime_seconds\":{:.3f},\"generation\":{},\"reloads_ok\":{},"
                                      "\"reloads_failed\":{},\"listeners\":[",
                                      s.uptime_seconds, s.generation, s.reloads_ok, s.reloads_failed);
        for (std::size_t i = 0; i < s.listeners.size(); ++i) {
            const ListenerSnapshot& l = s.listeners[i];
            out += fmt::format("{}{{\"name\":{},\"protocol\":\"{}\",\"address\":{},\"accepted\":{},\"rejected\":{},"
                               "\"bytes_in\":{},\"bytes_out\":{},\"proxy_refused\":{},\"denied\":{},\"source_limited\":{}}}",
                               i ? "," : "", json_quote(l.name), l.protocol, json_quote(l.address), l.totals.accepted,
                               l.totals.rejected, l.totals.bytes_in, l.totals.bytes_out, l.totals.proxy_refused,
                               l.totals.denied, l.totals.source_limited);
        }
        out += "],\"pools\":[";
        for (std::size_t i = 0; i < s.pools.size(); ++i) {
            const PoolSnapshot& p = s.pools[i];
            out += fmt::format("{}{{\"name\":{},\"sessions\":{},\"active\":{},\"bytes_in\":{},\"bytes_out\":{},"
                               "\"failed_connects\":{},\"retries\":{},\"rejected\":{},{}}}",
                               i ? "," : "", json_quote(p.name), p.sessions, p.active, p.bytes_in, p.bytes_out,
                               p.failed_connects, p.retries, p.rejected, queue_json(p.queue));
        }
        out += "],\"workers\":[";
        for (std::size_t i = 0; i < s.workers.size(); ++i) {
            const WorkerSnapshot& w = s.workers[i];
            out += fmt::format("{}{{\"worker\":{},\"cpu_seconds\":{:.3f},\"sessions\":{}}}", i ? "," : "", w.index,
                               w.cpu_seconds, w.sessions);
        }
        return out + "]}";
    }
    std::string out = fmt::format("uptime {:.0f}s, generation {}, reloads ok {}, reloads failed {}\n", s.uptime_seconds,
                                  s.generation, s.reloads_ok, s.reloads_failed);
    std::vector<std::vector<std::string>> listeners{
        {"listener", "protocol", "address", "sessions", "bytes_in", "bytes_out", "rejected", "proxy_refused",
         "denied", "source_limited"}};
    for (const ListenerSnapshot& l : s.listeners)
        listeners.push_back({l.name, std::string(l.protocol), l.address, std::to_string(l.totals.accepted),
                             std::to_string(l.totals.bytes_in), std::to_string(l.totals.bytes_out),
                             std::to_string(l.totals.rejected), std::to_string(l.totals.proxy_refused),
                             std::to_string(l.totals.denied), std::to_string(l.totals.source_limited)});
    std::vector<std::vector<std::string>> pools{
        {"pool", "sessions", "active", "bytes_in", "bytes_out", "failed_connects", "retries", "rejected", "queue_now",
         "queued", "queue_timeouts", "queue_refused", "queue_wait_ms"}};
    for (const PoolSnapshot& p : s.pools)
        pools.push_back({p.name, std::to_string(p.sessions), std::to_string(p.active), std::to_string(p.bytes_in),
                         std::to_string(p.bytes_out), std::to_string(p.failed_connects), std::to_string(p.retries),
                         std::to_string(p.rejected), std::to_string(p.queue.waiting), std::to_string(p.queue.queued),
                         std::to_string(p.queue.timed_out), std::to_string(p.queue.refused),
                         std::to_string(p.queue.wait_ms)});
    std::vector<std::vector<std::string>> workers{{"worker", "cpu_seconds", "sessions"}};
    for (const WorkerSnapshot& w : s.workers)
        workers.push_back({std::to_string(w.index), fmt::format("{:.3f}", w.cpu_seconds), std::to_string(w.sessions)});
    return out + render_table(listeners) + "\n" + render_table(pools) + "\n" + render_table(workers);
}

std::string render_sessions(const std::vector<SessionInfo>& sessions, bool json)
{
    if (json) {
        std::string out = "{\"sessions\":[";
        for (std::size_t i = 0; i < sessions.size(); ++i) {
            const SessionInfo& s = sessions[i];
            out += fmt::format("{}{{\"worker\":{},\"listener\":{},\"client\":{},\"backend\":{},\"age_seconds\":{:.3f},"
                               "\"bytes_in\":{},\"bytes_out\":{},\"state\":\"{}\",\"protocol\":\"{}\"}}",
                               i ? "," : "", s.worker, json_quote(s.listener), json_quote(s.client),
                               json_quote(s.backend), s.age_seconds, s.bytes_in, s.bytes_out, s.state, s.protocol);
        }
        return out + "]}";
    }
    std::vector<std::vector<std::string>> rows{
        {"worker", "listener", "client", "backend", "age", "bytes_in", "bytes_out", "state", "protocol"}};
    for (const SessionInfo& s : sessions)
        rows.push_back({std::to_string(s.worker), s.listener, s.client, s.backend, fmt::format("{:.1f}s", s.age_seconds),
                        std::to_string(s.bytes_in), std::to_string(s.bytes_out), s.state, s.protocol});
    return render_table(rows);
}

} // namespace sluice
