// Micro-benchmarks of config parsing: the annotated example conf/sluice.toml
// (what `sluice --check` and every SIGHUP reload pay), a generated pool of 3,
// 30 and 300 backends, and one duration string. Results: bench/README.md.
#include "sluice/config.h"

#include <benchmark/benchmark.h>

#include <fmt/format.h>

#include <fstream>
#include <sstream>
#include <string>

namespace {

using namespace sluice;

std::string read_file(const std::string& path)
{
    std::ifstream in(path);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

void BM_ParseExampleConfig(benchmark::State& state)
{
    const std::string text = read_file(SLUICE_SOURCE_DIR "/conf/sluice.toml");
    if (!parse_config(text, "sluice.toml").ok()) {
        state.SkipWithError("conf/sluice.toml does not parse");
        return;
    }
    for (auto _ : state)
        benchmark::DoNotOptimize(parse_config(text, "sluice.toml"));
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * text.size()));
}
BENCHMARK(BM_ParseExampleConfig)->Name("parse/conf_sluice_toml");

void BM_ParsePool(benchmark::State& state)
{
    std::string text = "[[listeners]]\nlisten = \"127.0.0.1:5432\"\npool = \"db\"\n\n[pools.db]\n"
                       "balance = \"least_conn\"\nhealth = { interval = \"2s\", timeout = \"1s\" }\nbackends = [\n";
    for (int i = 0; i < state.range(0); ++i)
        text += fmt::format("  {{ address = \"10.0.{}.{}:5432\", weight = {}, name = \"db-{}\" }},\n", i / 250,
                            1 + i % 250, 1 + i % 3, i);
    text += "]\n";
    if (!parse_config(text, "pool.toml").ok()) {
        state.SkipWithError("generated config does not parse");
        return;
    }
    for (auto _ : state)
        benchmark::DoNotOptimize(parse_config(text, "pool.toml"));
    state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_ParsePool)->Name("parse/pool_backends")->Arg(3)->Arg(30)->Arg(300);

void BM_ParseDuration(benchmark::State& state)
{
    for (auto _ : state)
        benchmark::DoNotOptimize(parse_duration("1m30s"));
}
BENCHMARK(BM_ParseDuration)->Name("parse/duration");

} // namespace

BENCHMARK_MAIN();
