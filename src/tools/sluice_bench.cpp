// sluice-bench: wiring only. Options, clients, workers and the report live
// in bench_*.{h,cpp}.
#include "bench_options.h"
#include "bench_report.h"
#include "bench_worker.h"
#include "runtime.h"

#include <fmt/format.h>

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

using namespace sluice::tools;

namespace {

// Sums the workers' running totals, for the progress line.
LiveCounters total_live(const std::vector<std::unique_ptr<BenchWorker>>& workers)
{
    LiveCounters total;
    for (const auto& worker : workers) {
        LiveCounters live = worker->live();
        total.requests += live.requests;
        total.errors += live.errors;
        total.bytes_received += live.bytes_received;
    }
    return total;
}

bool all_finished(const std::vector<std::unique_ptr<BenchWorker>>& workers)
{
    return std::all_of(workers.begin(), workers.end(), [](const auto& w) { return w->finished(); });
}

// Rates over the last second of ~4 Hz samples, so the line neither jumps
// with each refresh nor hides a dip behind a run-long average.
class ProgressLine {
public:
    explicit ProgressLine(const BenchOptions& options) : options_(options) {}

    void draw(std::uint64_t now_ns, std::uint64_t origin_ns, const LiveCounters& live)
    {
        samples_[next_ % samples_.size()] = Sample{now_ns, live};
        const Sample& oldest = next_ + 1 >= samples_.size() ? samples_[(next_ + 1) % samples_.size()] : samples_[0];
        ++next_;
        const double span_s = static_cast<double>(now_ns - oldest.ns) * 1e-9;
        double rate = 0;
        double gbit = 0;
        if (span_s > 0) {
            rate = static_cast<double>(live.requests - oldest.live.requests) / span_s;
            gbit = static_cast<double>(live.bytes_received - oldest.live.bytes_received) * 8 / span_s / 1e9;
        }
        const double elapsed_s = static_cast<double>(now_ns - origin_ns) * 1e-9;
        fmt::print(stderr, "\r{}\033[K", format_progress(options_, elapsed_s, rate, gbit, live.errors));
        std::fflush(stderr);
    }

    static void clear()
    {
        std::fputs("\r\033[K", stderr);
        std::fflush(stderr);
    }

private:
    struct Sample {
        std::uint64_t ns = 0;
        LiveCounters live;
    };
    const BenchOptions& options_;
    std::array<Sample, 5> samples_{};
    std::size_t next_ = 0;
};

} // namespace

int main(int argc, char** argv)
{
    block_stop_signals();
    BenchParseResult parsed = parse_bench_options(argc, argv);
    if (parsed.help) {
        std::fputs(kBenchUsage, stdout);
        return 0;
    }
    if (!parsed.error.empty()) {
        fmt::print(stderr, "sluice-bench: {}\n(see sluice-bench --help)\n", parsed.error);
        return 2;
    }
    const BenchOptions& options = parsed.options;
    raise_fd_limit();

    // Clients are dealt out evenly: the first (concurrency % threads) threads
    // take one more.
    const std::uint64_t origin_ns = monotonic_ns();
    std::vector<std::unique_ptr<BenchWorker>> workers;
    unsigned first = 0;
    for (unsigned t = 0; t < options.threads; ++t) {
        unsigned count = options.concurrency / options.threads + (t < options.concurrency % options.threads ? 1 : 0);
        workers.push_back(std::make_unique<BenchWorker>(options, first, count, origin_ns));
        first += count;
    }
    std::vector<std::thread> threads;
    for (auto& worker : workers)
        threads.emplace_back([w = worker.get()] { w->run(); });

    const bool progress = ::isatty(STDERR_FILENO) == 1;
    ProgressLine line(options);
    const std::uint64_t end_ns =
        origin_ns + static_cast<std::uint64_t>(options.warmup.count() + options.duration.count());
    int stop_signals = 0;
    while (!all_finished(workers)) {
        // Refresh ~4x a second; near the end, wake right when the run is due
        // to finish rather than up to a quarter second later.
        const std::uint64_t now = monotonic_ns();
        const std::uint64_t until_end = end_ns > now ? end_ns - now : 0;
        const auto wait = std::chrono::nanoseconds(std::clamp<std::uint64_t>(until_end + 2'000'000, 2'000'000, 250'000'000));
        if (wait_for_stop_signal(wait) != 0) {
            // First signal: stop and report what was measured; second: leave now.
            if (++stop_signals > 1)
                std::_Exit(130);
            for (auto& worker : workers)
                worker->stop();
        }
        if (progress)
            line.draw(monotonic_ns(), origin_ns, total_live(workers));
    }
    for (auto& thread : threads)
        thread.join();
    if (progress)
        ProgressLine::clear();

    BenchResult result;
    result.threads = options.threads;
    std::uint64_t window_ns = 0;
    for (const auto& worker : workers) {
        result.stats.merge(worker->stats());
        window_ns = std::max(window_ns, worker->window_ns());
    }
    result.duration_s = static_cast<double>(window_ns) * 1e-9;

    const std::string report = options.json ? format_json(options, result) : format_summary(options, result);
    std::fputs(report.c_str(), stdout);
    std::fflush(stdout);
    return 0;
}
