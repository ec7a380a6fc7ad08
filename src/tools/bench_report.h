// sluice-bench's results: the human summary and the --json object.
#pragma once

#include "bench_options.h"
#include "bench_stats.h"

#include <string>

namespace sluice::tools {

struct BenchResult {
    BenchStats stats;        // all threads merged
    double duration_s = 0;   // length of the measurement window actually run
    unsigned threads = 1;
};

// Derived figures, defined once for both outputs.
double request_rate(const BenchResult& result) noexcept;       // requests (connect: connections) per second
double received_gbit_per_s(const BenchResult& result) noexcept;  // bytes that came back, as Gbit/s
double sent_gbit_per_s(const BenchResult& result) noexcept;
double udp_loss(const BenchResult& result) noexcept;          // lost / (answered + lost)

// A few lines for people, ending in '\n'.
std::string format_summary(const BenchOptions& options, const BenchResult& result);
// One JSON object, every figure, ending in '\n'. Latencies in microseconds.
std::string format_json(const BenchOptions& options, const BenchResult& result);

// The live line on a terminal (no '\r', no newline): elapsed time against
// the total, the recent rate (Gbit/s for stream), errors so far.
std::string format_progress(const BenchOptions& options, double elapsed_s, double recent_rate,
                            double recent_gbit_per_s, std::uint64_t errors);

} // namespace sluice::tools
