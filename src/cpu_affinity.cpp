#include "sluice/cpu_affinity.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cerrno>
#include <pthread.h>
#include <sched.h>

namespace sluice {

std::vector<int> allowed_cpus(pid_t tid)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    std::vector<int> cpus;
    if (::sched_getaffinity(tid, sizeof set, &set) != 0)
        return cpus;
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
        if (CPU_ISSET(cpu, &set))
            cpus.push_back(cpu);
    return cpus;
}

std::optional<std::vector<int>> plan_worker_cpus(const CpuAffinity& affinity, unsigned workers,
                                                 std::span<const int> allowed, std::string* error)
{
    std::span<const int> deal;
    switch (affinity.mode) {
    case CpuAffinity::Mode::None:
        return std::vector<int>(workers, kAnyCpu);
    case CpuAffinity::Mode::Auto:
        deal = allowed;
        break;
    case CpuAffinity::Mode::List:
        for (int cpu : affinity.cpus) {
            if (std::find(allowed.begin(), allowed.end(), cpu) == allowed.end()) {
                *error = fmt::format("cpu_affinity: CPU {} is not available to this process (it may run on {})",
                                     cpu, fmt::join(allowed, ","));
                return std::nullopt;
            }
        }
        deal = affinity.cpus;
        break;
    }
    if (deal.empty()) {
        *error = "cpu_affinity: this process may run on no CPU at all (sched_getaffinity failed)";
        return std::nullopt;
    }
    std::vector<int> cpus;
    for (unsigned w = 0; w < workers; ++w)
        cpus.push_back(deal[w % deal.size()]);
    return cpus;
}

bool bind_current_thread(int cpu, std::span<const int> allowed)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (cpu == kAnyCpu) {
        for (int c : allowed)
            CPU_SET(c, &set);
    } else {
        CPU_SET(cpu, &set);
    }
    int rc = ::pthread_setaffinity_np(::pthread_self(), sizeof set, &set);
    if (rc != 0)
        errno = rc;
    return rc == 0;
}

} // namespace sluice
