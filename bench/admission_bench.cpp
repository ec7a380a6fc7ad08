// Micro-benchmarks of admission at accept: an allow/deny lookup (CidrSet) in a
// list of 10 and of 10,000 prefixes, IPv4 and IPv6, and the per-source count
// (SourceLimits acquire + release) from one and two threads. The lookup walks
// one trie level per prefix bit, so its cost must not grow with the entries.
// Results: bench/README.md.
#include "sluice/cidr.h"
#include "sluice/source_limits.h"

#include <benchmark/benchmark.h>

#include <fmt/format.h>

#include <vector>

namespace {

using namespace sluice;

constexpr int kClients = 1024;  // client IPs cycled through, half inside the list

CidrSet v4_list(int entries)
{
    CidrSet set;
    // /24s and /32s spread over 10/8, as an operator's deny list would be.
    for (int i = 0; i < entries; ++i)
        (void)set.add(i % 2 ? fmt::format("10.{}.{}.0/24", (i / 256) % 256, i % 256)
                            : fmt::format("10.{}.{}.{}/32", (i / 65536) % 256 + 100, (i / 256) % 256, i % 256));
    return set;
}

CidrSet v6_list(int entries)
{
    CidrSet set;
    for (int i = 0; i < entries; ++i)
        (void)set.add(fmt::format("2001:db8:{:x}:{:x}::/64", i / 256, i % 256));
    return set;
}

std::vector<SocketAddress> v4_clients()
{
    std::vector<SocketAddress> clients;
    for (int i = 0; i < kClients; ++i)
        clients.push_back(*SocketAddress::from_ip(fmt::format("10.{}.{}.7", i % 2 ? 0 : 200, i % 256), 40000));
    return clients;
}

std::vector<SocketAddress> v6_clients()
{
    std::vector<SocketAddress> clients;
    for (int i = 0; i < kClients; ++i)
        clients.push_back(*SocketAddress::from_ip(fmt::format("2001:db8:{:x}:{:x}::7", i % 2 ? 0 : 0xffff, i % 256), 40000));
    return clients;
}

enum class Family { V4, V6 };

void BM_CidrLookup(benchmark::State& state, Family family)
{
    const int entries = static_cast<int>(state.range(0));
    const CidrSet set = family == Family::V4 ? v4_list(entries) : v6_list(entries);
    const auto clients = family == Family::V4 ? v4_clients() : v6_clients();
    std::size_t i = 0, hits = 0;
    for (auto _ : state) {
        hits += set.contains(clients[i++ % clients.size()]);
        benchmark::DoNotOptimize(hits);
    }
    state.counters["lookups/s"] = benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK_CAPTURE(BM_CidrLookup, v4, Family::V4)->Arg(10)->Arg(10'000);
BENCHMARK_CAPTURE(BM_CidrLookup, v6, Family::V6)->Arg(10)->Arg(10'000);

// One session's start and end under max_connections_per_source.
SourceLimits shared_limits;
void BM_SourceAcquireRelease(benchmark::State& state)
{
    const auto clients = v4_clients();
    std::size_t i = static_cast<std::size_t>(state.thread_index()) * 17;
    for (auto _ : state) {
        const SocketAddress& client = clients[i++ % clients.size()];
        benchmark::DoNotOptimize(shared_limits.try_acquire(client, 1'000'000));
        shared_limits.release(client);
    }
}
BENCHMARK(BM_SourceAcquireRelease)->Threads(1)->Threads(2);

} // namespace

BENCHMARK_MAIN();
