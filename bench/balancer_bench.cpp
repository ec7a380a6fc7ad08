// Micro-benchmarks of the balancing core: one pick() per algorithm at 3, 30 and
// 300 backends, and the table's acquire/release (every session start and end)
// uncontended and contended from two threads. Results: bench/README.md.
#include "sluice/addr.h"
#include "sluice/backend_table.h"
#include "sluice/balancer.h"

#include <benchmark/benchmark.h>

#include <fmt/format.h>

#include <memory>
#include <vector>

namespace {

using namespace sluice;

constexpr int kClients = 1024;  // distinct client IPs cycled through by ip_hash

struct Pool {
    std::unique_ptr<BackendTable> table = std::make_unique<BackendTable>();
    std::vector<BackendId> ids;
    std::vector<SocketAddress> clients;

    explicit Pool(int backends)
    {
        for (int i = 0; i < backends; ++i) {
            BackendId id = *table->allocate(static_cast<std::uint16_t>(1 + i % 3));
            // Uneven load, so least_conn and random have something to compare.
            for (int s = 0; s < i % 7; ++s)
                table->acquire(id);
            ids.push_back(id);
        }
        for (int i = 0; i < kClients; ++i)
            clients.push_back(*SocketAddress::from_ip(fmt::format("10.1.{}.{}", i / 256, i % 256), 40000));
    }
};

template <BalanceAlgorithm Algorithm>
void BM_Pick(benchmark::State& state)
{
    Pool pool(static_cast<int>(state.range(0)));
    auto balancer = make_balancer(Algorithm, pool.ids, *pool.table);
    PickContext ctx;
    ctx.now_ms = monotonic_ms();
    ctx.client = &pool.clients[0];
    balancer->pick(ctx);  // ip_hash builds its table on the first pick
    std::size_t next_client = 0;
    for (auto _ : state) {
        ctx.client = &pool.clients[next_client++ & (kClients - 1)];
        benchmark::DoNotOptimize(balancer->pick(ctx));
    }
}

BENCHMARK_TEMPLATE(BM_Pick, BalanceAlgorithm::RoundRobin)->Name("pick/round_robin")->Arg(3)->Arg(30)->Arg(300);
BENCHMARK_TEMPLATE(BM_Pick, BalanceAlgorithm::LeastConn)->Name("pick/least_conn")->Arg(3)->Arg(30)->Arg(300);
BENCHMARK_TEMPLATE(BM_Pick, BalanceAlgorithm::IpHash)->Name("pick/ip_hash")->Arg(3)->Arg(30)->Arg(300);
BENCHMARK_TEMPLATE(BM_Pick, BalanceAlgorithm::Random)->Name("pick/random")->Arg(3)->Arg(30)->Arg(300);

// What a Maglev rebuild costs (a health change seen by ip_hash): the pick
// after a generation bump that really changed the usable set.
void BM_IpHashRebuild(benchmark::State& state)
{
    Pool pool(static_cast<int>(state.range(0)));
    auto balancer = make_balancer(BalanceAlgorithm::IpHash, pool.ids, *pool.table);
    PickContext ctx;
    ctx.client = &pool.clients[0];
    bool down = false;
    for (auto _ : state) {
        down = !down;
        pool.table->set_health(pool.ids[0], down ? Health::Down : Health::Up, HealthReason::None);
        benchmark::DoNotOptimize(balancer->pick(ctx));
    }
}
BENCHMARK(BM_IpHashRebuild)->Name("ip_hash_rebuild")->Arg(3)->Arg(30)->Arg(300);
// A discovered pool of 10,000 SRV targets (issue 19: < 100 ms per build).
BENCHMARK(BM_IpHashRebuild)->Name("ip_hash_rebuild/srv_pool")->Arg(10000)->Unit(benchmark::kMillisecond);

// One table shared by the benchmark's threads, as by the workers.
BackendTable& shared_table()
{
    static auto* table = [] {
        auto* t = new BackendTable();
        t->allocate(1);
        t->allocate(1);
        return t;
    }();
    return *table;
}

// Every thread starts and ends sessions on the same backend: its slot's line
// bounces between cores.
void BM_AcquireReleaseSameBackend(benchmark::State& state)
{
    BackendTable& table = shared_table();
    for (auto _ : state) {
        table.acquire(0);
        table.release(0);
    }
    state.SetItemsProcessed(state.iterations());  // summed over threads: total throughput
}
BENCHMARK(BM_AcquireReleaseSameBackend)->Name("acquire_release/same_backend")->Threads(1)->Threads(2)->UseRealTime();

// Each thread on its own backend: separate cache lines, so no contention.
void BM_AcquireReleaseOwnBackend(benchmark::State& state)
{
    BackendTable& table = shared_table();
    const auto id = static_cast<BackendId>(state.thread_index() % 2);
    for (auto _ : state) {
        table.acquire(id);
        table.release(id);
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_AcquireReleaseOwnBackend)->Name("acquire_release/own_backend")->Threads(1)->Threads(2)->UseRealTime();

} // namespace

BENCHMARK_MAIN();
