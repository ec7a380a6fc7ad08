#include "bench_report.h"

#include "sluice/json.h"

#include <fmt/format.h>

#include <iterator>

namespace sluice::tools {

namespace {

double per_second(double count, double seconds) noexcept { return seconds > 0 ? count / seconds : 0.0; }

double micros(std::uint64_t ns) noexcept { return static_cast<double>(ns) / 1000.0; }

std::string human_latency(std::uint64_t ns)
{
    if (ns < 1'000'000)
        return fmt::format("{:.1f}us", micros(ns));
    if (ns < 1'000'000'000)
        return fmt::format("{:.2f}ms", static_cast<double>(ns) / 1e6);
    return fmt::format("{:.3f}s", static_cast<double>(ns) / 1e9);
}

std::string human_bytes(std::uint64_t bytes)
{
    const auto b = static_cast<double>(bytes);
    if (bytes < 1024 * 1024)
        return fmt::format("{:.1f} KiB", b / 1024);
    if (bytes < 1024ULL * 1024 * 1024)
        return fmt::format("{:.1f} MiB", b / (1024 * 1024));
    return fmt::format("{:.2f} GiB", b / (1024.0 * 1024 * 1024));
}

} // namespace

double request_rate(const BenchResult& result) noexcept
{
    return per_second(static_cast<double>(result.stats.requests), result.duration_s);
}

double received_gbit_per_s(const BenchResult& result) noexcept
{
    return per_second(static_cast<double>(result.stats.bytes_received) * 8, result.duration_s) / 1e9;
}

double sent_gbit_per_s(const BenchResult& result) noexcept
{
    return per_second(static_cast<double>(result.stats.bytes_sent) * 8, result.duration_s) / 1e9;
}

double udp_loss(const BenchResult& result) noexcept
{
    const auto lost = static_cast<double>(result.stats.error_count(ErrorKind::Timeout));
    const double asked = lost + static_cast<double>(result.stats.requests);
    return asked > 0 ? lost / asked : 0.0;
}

std::string format_summary(const BenchOptions& options, const BenchResult& result)
{
    const BenchStats& stats = result.stats;
    const LatencyHistogram& latency = stats.latency;
    std::string out;
    auto line = std::back_inserter(out);

    const bool udp = options.mode == BenchMode::Udp;
    fmt::format_to(line, "sluice-bench {} -> {}: {} {}, {} thread{}, {}-byte {}, {:.2f} s measured\n",
                   mode_name(options.mode), options.target_text, options.concurrency,
                   udp ? "clients" : "connections", result.threads, result.threads == 1 ? "" : "s", options.size,
                   options.mode == BenchMode::Stream ? "writes" : udp ? "datagrams" : "requests", result.duration_s);
    if (options.rate > 0)
        fmt::format_to(line, "  offered     {:.0f} req/s, open loop: latency counts from each intended send time\n",
                       options.rate);

    switch (options.mode) {
    case BenchMode::Connect:
        fmt::format_to(line, "  connections {} ({:.0f} conn/s), each: connect, echo, close\n", stats.requests,
                       request_rate(result));
        break;
    case BenchMode::Rr:
        fmt::format_to(line, "  requests    {} ({:.0f} req/s)\n", stats.requests, request_rate(result));
        break;
    case BenchMode::Udp:
        fmt::format_to(line, "  queries     {} ({:.0f} q/s), loss {:.3f} %\n", stats.requests, request_rate(result),
                       udp_loss(result) * 100);
        break;
    case BenchMode::Stream:
        fmt::format_to(line, "  echoed      {:.3f} Gbit/s ({} back, {} sent = {:.3f} Gbit/s)\n",
                       received_gbit_per_s(result), human_bytes(stats.bytes_received), human_bytes(stats.bytes_sent),
                       sent_gbit_per_s(result));
        if (stats.bytes_received == 0 && stats.bytes_sent > 0)
            out += "              nothing came back: a sink target; read the sent figure\n";
        break;
    }
    if (options.mode != BenchMode::Stream) {
        if (latency.count() > 0)
            fmt::format_to(line, "  latency     p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  mean {}\n",
                           human_latency(latency.percentile(50)), human_latency(latency.percentile(90)),
                           human_latency(latency.percentile(99)), human_latency(latency.percentile(99.9)),
                           human_latency(latency.max()), human_latency(static_cast<std::uint64_t>(latency.mean())));
        else
            out += "  latency     no replies\n";
    }

    fmt::format_to(line, "  errors      {}", stats.total_errors());
    const char* separator = " (";
    for (std::size_t i = 0; i < kErrorKindCount; ++i) {
        if (stats.errors[i] == 0)
            continue;
        fmt::format_to(line, "{}{} {}", separator, error_kind_name(static_cast<ErrorKind>(i)), stats.errors[i]);
        separator = ", ";
    }
    out += stats.total_errors() > 0 ? ")\n" : "\n";
    return out;
}

std::string format_json(const BenchOptions& options, const BenchResult& result)
{
    const BenchStats& stats = result.stats;
    const LatencyHistogram& latency = stats.latency;
    std::string out;
    auto json = std::back_inserter(out);

    fmt::format_to(json, "{{\"mode\":{},\"target\":{},\"concurrency\":{},\"threads\":{},\"size\":{},",
                   json_quote(mode_name(options.mode)), json_quote(options.target_text), options.concurrency,
                   result.threads, options.size);
    fmt::format_to(json, "\"duration_s\":{:.6f},\"warmup_s\":{:.6f},\"timeout_s\":{:.6f},",
                   result.duration_s, static_cast<double>(options.warmup.count()) * 1e-9,
                   static_cast<double>(options.timeout.count()) * 1e-9);
    if (options.rate > 0)
        fmt::format_to(json, "\"target_rate\":{:.0f},", options.rate);
    else
        out += "\"target_rate\":null,";
    fmt::format_to(json, "\"requests\":{},\"rate\":{:.3f},\"connections\":{},", stats.requests,
                   request_rate(result), stats.connections);
    fmt::format_to(json, "\"bytes\":{},\"bytes_sent\":{},\"gbit_per_s\":{:.6f},\"sent_gbit_per_s\":{:.6f},",
                   stats.bytes_received, stats.bytes_sent, received_gbit_per_s(result), sent_gbit_per_s(result));
    fmt::format_to(json,
                   "\"latency_us\":{{\"count\":{},\"p50\":{:.3f},\"p90\":{:.3f},\"p99\":{:.3f},\"p999\":{:.3f},"
                   "\"max\":{:.3f},\"mean\":{:.3f},\"min\":{:.3f}}},",
                   latency.count(), micros(latency.percentile(50)), micros(latency.percentile(90)),
                   micros(latency.percentile(99)), micros(latency.percentile(99.9)), micros(latency.max()),
                   latency.mean() / 1000.0, micros(latency.min()));
    fmt::format_to(json, "\"loss\":{:.6f},\"errors_total\":{},\"errors\":{{",
                   options.mode == BenchMode::Udp ? udp_loss(result) : 0.0, stats.total_errors());
    for (std::size_t i = 0; i < kErrorKindCount; ++i)
        fmt::format_to(json, "{}\"{}\":{}", i ? "," : "", error_kind_name(static_cast<ErrorKind>(i)), stats.errors[i]);
    out += "}}\n";
    return out;
}

std::string format_progress(const BenchOptions& options, double elapsed_s, double recent_rate,
                            double recent_gbit_per_s, std::uint64_t errors)
{
    const double warmup_s = static_cast<double>(options.warmup.count()) * 1e-9;
    const double total_s = warmup_s + static_cast<double>(options.duration.count()) * 1e-9;
    std::string figure = options.mode == BenchMode::Stream
        ? fmt::format("{:.3f} Gbit/s", recent_gbit_per_s)
        : fmt::format("{:.0f} {}", recent_rate,
                      options.mode == BenchMode::Connect ? "conn/s" : options.mode == BenchMode::Udp ? "q/s" : "req/s");
    return fmt::format("sluice-bench {} {:5.1f}s / {:.1f}s{}  {}  errors {}", mode_name(options.mode), elapsed_s,
                       total_s, elapsed_s < warmup_s ? " (warm-up)" : "", figure, errors);
}

} // namespace sluice::tools
