#include "sluice/metrics.h"

#include "sluice/log.h"

#include <fmt/format.h>

#include <array>

namespace sluice {

StatsSnapshot take_snapshot(const Runtime& runtime, const BackendTable& table, const ProcessStats& process,
                            std::int64_t now_ms, std::span<const BackendCounters* const> counters,
                            const HealthReports* reports)
{
    constexpr auto relaxed = std::memory_order_relaxed;
    StatsSnapshot snap;
    snap.uptime_seconds = static_cast<double>(now_ms - process.started_ms) / 1000.0;
    snap.generation = process.generation.load(relaxed);
    snap.reloads_ok = process.reloads_ok.load(relaxed);
    snap.reloads_failed = process.reloads_failed.load(relaxed);
    snap.log_lines_dropped = log::lines_dropped();

    for (std::size_t i = 0; i < runtime.config.listeners.size(); ++i) {
        const ListenerConfig& config = runtime.config.listeners[i];
        ListenerSnapshot listener;
        listener.name = config.name;
        listener.protocol = to_string(config.protocol);
        const ListenerRuntime* extra = i < runtime.listeners.size() ? &runtime.listeners[i] : nullptr;
        listener.address = extra && !extra->bound.empty() ? extra->bound.to_string() : config.listen.to_string();
        if (extra && extra->counters)
            listener.totals = extra->counters->total();
        snap.listeners.push_back(std::move(listener));
    }

    for (const PoolRuntime& pool : runtime.pools) {
        PoolSnapshot pool_snap;
        pool_snap.name = pool.config->name;
        if (pool.stats) {
            pool_snap.failed_connects = pool.stats->failed_connects.load(relaxed);
            pool_snap.retries = pool.stats->retries.load(relaxed);
            pool_snap.rejected = pool.stats->rejected.load(relaxed);
        }
        if (pool.histograms)
            pool_snap.histograms = pool.histograms->total();
        if (pool.queue) {
            pool_snap.has_queue = true;
            pool_snap.queue = pool.queue->totals();
        }
        for (std::size_t b = 0; b < pool.backend_ids.size(); ++b) {
            const BackendConfig& config = pool.config->backends[b];
            const BackendSlot& slot = table.slot(pool.backend_ids[b]);
            BackendSnapshot backend;
            backend.pool = pool.config->name;
            backend.name = config.name;
            backend.address = config.usable_address() ? config.address.to_string() : config.identity();
            backend.backup = config.backup;
            backend.admin = slot.admin.load(relaxed);
            backend.health = slot.health.load(relaxed);
            backend.passive_down = now_ms < slot.passive_down_until_ms.load(relaxed);
            if (backend.health == Health::Down)
                backend.why = to_string(slot.health_reason.load(relaxed));
            else if (backend.passive_down)
                backend.why = to_string(HealthReason::PassiveFailures);
            backend.weight = slot.weight.load(relaxed);
            backend.max_connections = table.max_connections(pool.backend_ids[b]);
            backend.active = slot.active.load(relaxed);
            backend.connect_failures = slot.connect_failures.load(relaxed);
            const std::uint32_t epoch = slot.epoch.load(relaxed);
            for (const BackendCounters* worker : counters) {
                BackendCounters::Totals t = worker->read(pool.backend_ids[b], epoch);
                backend.total += t.sessions;
                backend.bytes_in += t.bytes_in;
                backend.bytes_out += t.bytes_out;
                worker->read_connect_times(pool.backend_ids[b], epoch, backend.connect_times);
            }
            if (auto report = reports ? reports->get(pool.backend_ids[b]) : std::nullopt) {
                backend.check = to_string(report->kind);
                backend.checked = report->checked;
                backend.check_passed = report->passed;
                backend.verdict = std::move(report->detail);
                backend.role = to_string(report->role);
                backend.check_seconds = report->duration_seconds;
                backend.check_durations = report->durations;
            }
            pool_snap.sessions += backend.total;
            pool_snap.active += backend.active;
            pool_snap.bytes_in += backend.bytes_in;
            pool_snap.bytes_out += backend.bytes_out;
            snap.backends.push_back(std::move(backend));
        }
        snap.pools.push_back(std::move(pool_snap));
    }
    return snap;
}

std::string escape_label(std::string_view value)
{
    std::string out;
    out.reserve(value.size());
    for (char c : value) {
        switch (c) {
        case '\\': out += "\\\\"; break;
        case '"': out += "\\\""; break;
        case '\n': out += "\\n"; break;
        default: out += c;
        }
    }
    return out;
}

namespace {

// Writes one metric family: its HELP and TYPE lines, then the samples.
class Exposition {
public:
    void family(std::string_view name, std::string_view type, std::string_view help)
    {
        fmt::format_to(std::back_inserter(text_), "# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
    }
    template <typename Value>
    void sample(std::string_view name, std::string_view labels, Value value)
    {
        if (labels.empty())
            fmt::format_to(std::back_inserter(text_), "{} {}\n", name, value);
        else
            fmt::format_to(std::back_inserter(text_), "{}{{{}}} {}\n", name, labels, value);
    }
    // One histogram's samples: cumulative _bucket lines (le = each bound of
    // `ladder`, then +Inf), _sum and _count. `labels` may be empty.
    void histogram(std::string_view name, std::string_view labels, HistogramLadder ladder,
                   const HistogramCounts& counts)
    {
        const std::string_view comma = labels.empty() ? "" : ",";
        std::uint64_t cumulative = 0;
        for (std::size_t i = 0; i <= ladder.size(); ++i) {
            cumulative += counts.buckets[i];
            if (i < ladder.size())
                fmt::format_to(std::back_inserter(text_), "{}_bucket{{{}{}le=\"{}\"}} {}\n", name, labels, comma,
                               ladder[i], cumulative);
            else
                fmt::format_to(std::back_inserter(text_), "{}_bucket{{{}{}le=\"+Inf\"}} {}\n", name, labels, comma,
                               cumulative);
        }
        sample(fmt::format("{}_sum", name), labels, fmt::format("{:.6f}", counts.sum));
        sample(fmt::format("{}_count", name), labels, cumulative);
    }
    std::string take() { return std::move(text_); }

private:
    std::string text_;
};

std::string backend_labels(const BackendSnapshot& b)
{
    return fmt::format("pool=\"{}\",backend=\"{}\",address=\"{}\"", escape_label(b.pool), escape_label(b.name),
                       escape_label(b.address));
}

std::string pool_labels(const PoolSnapshot& p) { return fmt::format("pool=\"{}\"", escape_label(p.name)); }

// One counter family of one kind of row: its name, its help and the field
// that holds its value.
template <typename Record>
struct CounterFamily {
    const char* name;
    const char* help;
    std::uint64_t Record::*field;
};

// Each family as a counter, with one sample per row: labels(row) and
// record_of(row).*field.
template <typename Record, std::size_t N, typename Row, typename Labels, typename RecordOf>
void write_counters(Exposition& out, const std::array<CounterFamily<Record>, N>& families,
                    const std::vector<Row>& rows, Labels labels, RecordOf record_of)
{
    for (const CounterFamily<Record>& family : families) {
        out.family(family.name, "counter", family.help);
        for (const Row& row : rows)
            out.sample(family.name, labels(row), record_of(row).*family.field);
    }
}

} // namespace

std::string format_prometheus(const StatsSnapshot& s)
{
    Exposition out;
    out.family("sluice_uptime_seconds", "gauge", "Seconds since sluice started.");
    out.sample("sluice_uptime_seconds", "", fmt::format("{:.3f}", s.uptime_seconds));
    out.family("sluice_config_generation", "gauge", "Generation of the running configuration (1 at start, +1 per reload).");
    out.sample("sluice_config_generation", "", s.generation);
    out.family("sluice_reloads_total", "counter", "Configuration reloads, by result.");
    out.sample("sluice_reloads_total", "result=\"ok\"", s.reloads_ok);
    out.sample("sluice_reloads_total", "result=\"failed\"", s.reloads_failed);
    out.family("sluice_log_lines_dropped_total", "counter",
               "Log and access log lines dropped because the log sink was too slow (the queue was full).");
    out.sample("sluice_log_lines_dropped_total", "", s.log_lines_dropped);

    constexpr std::array<CounterFamily<ListenerTotals>, 8> listener_metrics{{
        {"sluice_listener_accepted_total", "Client connections accepted.", &ListenerTotals::accepted},
        {"sluice_listener_rejected_total", "Client connections refused (max_connections, descriptor limit).",
         &ListenerTotals::rejected},
        {"sluice_listener_bytes_in_total", "Bytes from clients to backends, counted as they move.",
         &ListenerTotals::bytes_in},
        {"sluice_listener_bytes_out_total", "Bytes from backends to clients, counted as they move.",
         &ListenerTotals::bytes_out},
        {"sluice_listener_dropped_total", "UDP datagrams dropped (no usable backend, flow cap, full buffers, truncated).",
         &ListenerTotals::dropped},
        {"sluice_listener_proxy_refused_total",
         "Clients closed for a missing, malformed, slow or untrusted PROXY protocol header (accept_proxy).",
         &ListenerTotals::proxy_refused},
        {"sluice_listener_denied_total", "Clients (UDP: new flows) refused by the listener's allow/deny lists.",
         &ListenerTotals::denied},
        {"sluice_listener_source_limited_total",
         "Clients (UDP: new flows) refused at max_connections_per_source.", &ListenerTotals::source_limited},
    }};
    write_counters(
        out, listener_metrics, s.listeners,
        [](const ListenerSnapshot& l) {
            return fmt::format("listener=\"{}\",protocol=\"{}\"", escape_label(l.name), l.protocol);
        },
        [](const ListenerSnapshot& l) -> const ListenerTotals& { return l.totals; });

    constexpr std::array<CounterFamily<PoolSnapshot>, 3> pool_metrics{{
        {"sluice_pool_connect_failures_total", "Backend connects that failed, each attempt.",
         &PoolSnapshot::failed_connects},
        {"sluice_pool_retries_total", "Connects retried on another backend after a failure.", &PoolSnapshot::retries},
        {"sluice_pool_rejected_total", "Clients closed because no backend was usable or every retry failed.",
         &PoolSnapshot::rejected},
    }};
    write_counters(
        out, pool_metrics, s.pools,
        pool_labels,
        [](const PoolSnapshot& p) -> const PoolSnapshot& { return p; });

    // Queues: only pools that have one (queue_timeout).
    std::vector<PoolSnapshot> queued_pools;
    std::copy_if(s.pools.begin(), s.pools.end(), std::back_inserter(queued_pools),
                 [](const PoolSnapshot& p) { return p.has_queue; });
    auto pool_label = [](const PoolSnapshot& p) { return fmt::format("pool=\"{}\"", escape_label(p.name)); };
    out.family("sluice_pool_queue_length", "gauge", "Clients waiting now for a backend slot (max_connections).");
    for (const PoolSnapshot& p : queued_pools)
        out.sample("sluice_pool_queue_length", pool_label(p), p.queue.waiting);
    constexpr std::array<CounterFamily<QueueTotals>, 5> queue_metrics{{
        {"sluice_pool_queued_total", "Clients that waited in the queue.", &QueueTotals::queued},
        {"sluice_pool_queue_served_total", "Queued clients handed a backend slot.", &QueueTotals::served},
        {"sluice_pool_queue_timeouts_total", "Queued clients closed at queue_timeout.", &QueueTotals::timed_out},
        {"sluice_pool_queue_refused_total", "Clients closed at once because max_queue clients were waiting.",
         &QueueTotals::refused},
        {"sluice_pool_queue_wait_milliseconds_total", "Time served clients spent in the queue, summed.",
         &QueueTotals::wait_ms},
    }};
    write_counters(out, queue_metrics, queued_pools, pool_label,
                   [](const PoolSnapshot& p) -> const QueueTotals& { return p.queue; });

    out.family("sluice_backend_up", "gauge", "1 when the backend is healthy (active and passive checks), else 0.");
    for (const BackendSnapshot& b : s.backends)
        out.sample("sluice_backend_up", backend_labels(b), b.up() ? 1 : 0);
    out.family("sluice_backend_state", "gauge", "Admin state: 1 for the current state, 0 for the others.");
    for (const BackendSnapshot& b : s.backends)
        for (AdminState state : {AdminState::Ready, AdminState::Drain, AdminState::Maint})
            out.sample("sluice_backend_state", fmt::format("{},state=\"{}\"", backend_labels(b), to_string(state)),
                       b.admin == state ? 1 : 0);
    out.family("sluice_backend_weight", "gauge", "Current weight.");
    for (const BackendSnapshot& b : s.backends)
        out.sample("sluice_backend_weight", backend_labels(b), b.weight);
    out.family("sluice_backend_max_connections", "gauge", "The backend's max_connections (0 = no cap).");
    for (const BackendSnapshot& b : s.backends)
        out.sample("sluice_backend_max_connections", backend_labels(b), b.max_connections);
    out.family("sluice_backend_active_sessions", "gauge", "Sessions open to the backend now.");
    for (const BackendSnapshot& b : s.backends)
        out.sample("sluice_backend_active_sessions", backend_labels(b), b.active);

    // Active checks: only backends whose pool has one, and once a probe finished.
    out.family("sluice_backend_check_status", "gauge",
               "1 when the last active check of the backend passed, 0 when it failed.");
    for (const BackendSnapshot& b : s.backends)
        if (b.checked)
            out.sample("sluice_backend_check_status", fmt::format("{},check=\"{}\"", backend_labels(b), b.check),
                       b.check_passed ? 1 : 0);
    out.family("sluice_backend_check_duration_seconds", "gauge", "How long the last active check of the backend took.");
    for (const BackendSnapshot& b : s.backends)
        if (b.checked)
            out.sample("sluice_backend_check_duration_seconds", backend_labels(b), fmt::format("{:.6f}", b.check_seconds));
    out.family("sluice_backend_role", "gauge",
               "The role a database backend reported at its last check: 1 for that role, 0 for the others.");
    for (const BackendSnapshot& b : s.backends)
        if (b.checked)
            for (std::string_view role : {"primary", "replica", "unknown"})
                out.sample("sluice_backend_role", fmt::format("{},role=\"{}\"", backend_labels(b), role),
                           b.role == role ? 1 : 0);

    constexpr std::array<CounterFamily<BackendSnapshot>, 4> backend_metrics{{
        {"sluice_backend_sessions_total", "Sessions sent to the backend (connect attempts included).",
         &BackendSnapshot::total},
        {"sluice_backend_connect_failures_total", "Connects to the backend that failed.",
         &BackendSnapshot::connect_failures},
        {"sluice_backend_bytes_in_total", "Bytes sent to the backend.", &BackendSnapshot::bytes_in},
        {"sluice_backend_bytes_out_total", "Bytes received from the backend.", &BackendSnapshot::bytes_out},
    }};
    write_counters(out, backend_metrics, s.backends, backend_labels,
                   [](const BackendSnapshot& b) -> const BackendSnapshot& { return b; });

    // Latency histograms (duration_histogram.h: per-worker buckets summed here).
    out.family("sluice_backend_connect_duration_seconds", "histogram",
               "Time from connect(2) to an established TCP connection to the backend, per successful connect.");
    for (const BackendSnapshot& b : s.backends)
        out.histogram("sluice_backend_connect_duration_seconds", backend_labels(b), kConnectLadder, b.connect_times);
    out.family("sluice_backend_health_check_duration_seconds", "histogram",
               "How long each active check of the backend took (a timed-out check counts its timeout).");
    for (const BackendSnapshot& b : s.backends)
        if (!b.check.empty())
            out.histogram("sluice_backend_health_check_duration_seconds",
                          fmt::format("{},check=\"{}\"", backend_labels(b), b.check), kConnectLadder,
                          b.check_durations);
    out.family("sluice_pool_session_duration_seconds", "histogram",
               "Sessions of the pool (TCP connections and UDP flows), from accept to end.");
    for (const PoolSnapshot& p : s.pools)
        out.histogram("sluice_pool_session_duration_seconds", pool_labels(p), kSessionLadder,
                      p.histograms.session_duration);
    out.family("sluice_pool_queue_wait_seconds", "histogram",
               "How long clients waited in the pool's queue for a backend.");
    for (const PoolSnapshot& p : s.pools)
        out.histogram("sluice_pool_queue_wait_seconds", pool_labels(p), kQueueLadder, p.histograms.queue_wait);

    auto worker_label = [](const WorkerSnapshot& w) { return fmt::format("worker=\"{}\"", w.index); };
    out.family("sluice_worker_cpu_seconds_total", "counter", "CPU time used by the worker thread (user and system).");
    for (const WorkerSnapshot& w : s.workers)
        out.sample("sluice_worker_cpu_seconds_total", worker_label(w), fmt::format("{:.3f}", w.cpu_seconds));
    out.family("sluice_worker_sessions", "gauge", "TCP sessions open on the worker now.");
    for (const WorkerSnapshot& w : s.workers)
        out.sample("sluice_worker_sessions", worker_label(w), w.sessions);
    return out.take();
}

} // namespace sluice
