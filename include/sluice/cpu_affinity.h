#pragma once

// Binding worker threads to CPUs: [global] cpu_affinity.
//
// Why: each worker's sessions are served only by that worker's thread. When
// the scheduler stacks two busy workers on one core (wake-ups pull a thread
// toward the core of whoever woke it), they take turns in whole time slices
// and every session of the waiting worker stalls for a scheduler tick. One
// worker per core, like NGINX's worker_cpu_affinity or HAProxy's cpu-map,
// keeps that from happening on a host that is dedicated to the balancer.

#include "sluice/config.h"

#include <sys/types.h>

#include <optional>
#include <span>
#include <string>
#include <vector>

namespace sluice {

// Marks a worker that the kernel may move freely.
inline constexpr int kAnyCpu = -1;

// The CPUs thread `tid` (0: the calling thread) may run on
// (sched_getaffinity), ascending. Called on the control thread, which is
// never bound, it is the process's set.
std::vector<int> allowed_cpus(pid_t tid = 0);

// The CPU of each of `workers` workers (kAnyCpu for all under "none"):
// "auto" deals out `allowed` in order, a list is used in order; both wrap
// around when there are more workers than CPUs. nullopt, with `error` naming
// the CPU, when a listed CPU is not in `allowed`.
std::optional<std::vector<int>> plan_worker_cpus(const CpuAffinity& affinity, unsigned workers,
                                                 std::span<const int> allowed, std::string* error);

// Binds the calling thread to `cpu`, or lets it run on all of `allowed` for
// kAnyCpu (undoing an earlier binding). Returns false with errno set.
bool bind_current_thread(int cpu, std::span<const int> allowed);

} // namespace sluice
