// Micro-benchmarks of config parsing: the annotated example conf/sluice.toml
// (what `sluice --check` and every SIGHUP reload pay), a generated pool of 3,
// 30 and 300 backends, one duration string, and the next generation of a
// large pool (what a DNS answer changing one target costs the control
// thread). Results: bench/README.md.
#include "sluice/config.h"
#include "sluice/reload.h"
#include "sluice/runtime.h"

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

// A pool of N backends whose next generation replaces one of them, as a DNS
// answer changing one SRV target does: build_runtime (slots kept by
// identity, the ip_hash lookup of the changed set) and removed_backends.
// Each iteration builds the generation after the previous one, so the
// replaced backend alternates.
void BM_NextGeneration(benchmark::State& state)
{
    const auto backends = static_cast<std::size_t>(state.range(0));
    const auto balance = state.range(1) != 0 ? BalanceAlgorithm::IpHash : BalanceAlgorithm::RoundRobin;
    auto config_with = [&](std::size_t replaced) {
        Config config;
        PoolConfig pool;
        pool.name = "p";
        pool.balance = balance;
        for (std::size_t i = 0; i < backends; ++i) {
            const std::size_t n = i == replaced ? backends + i : i;
            BackendConfig b;
            b.address = *SocketAddress::parse(fmt::format("10.{}.{}.{}:5432", n >> 16, (n >> 8) & 0xff, n & 0xff));
            b.name = b.address.to_string();
            pool.backends.push_back(b);
        }
        config.pools.push_back(pool);
        return config;
    };
    const Config unchanged = config_with(backends);
    const Config changed = config_with(0);
    auto table = std::make_unique<BackendTable>();
    std::string error;
    std::shared_ptr<Runtime> current = build_runtime(unchanged, *table, nullptr, &error);
    bool flip = false;
    for (auto _ : state) {
        flip = !flip;
        std::shared_ptr<Runtime> next = build_runtime(flip ? changed : unchanged, *table, current.get(), &error);
        for (BackendId id : removed_backends(*current, *next))
            table->free(id);
        current = std::move(next);
    }
}
BENCHMARK(BM_NextGeneration)->Name("next_generation")->Args({1000, 0})->Args({10000, 0})->Args({10000, 1})
    ->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
