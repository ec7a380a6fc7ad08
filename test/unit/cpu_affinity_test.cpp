#include "sluice/cpu_affinity.h"

#include <catch2/catch.hpp>

#include <sched.h>
#include <thread>

using sluice::CpuAffinity;
using sluice::kAnyCpu;
using sluice::plan_worker_cpus;

namespace {

std::vector<int> plan(const CpuAffinity& affinity, unsigned workers, std::vector<int> allowed)
{
    std::string error;
    auto cpus = plan_worker_cpus(affinity, workers, allowed, &error);
    INFO(error);
    REQUIRE(cpus);
    return *cpus;
}

std::string plan_error(const CpuAffinity& affinity, unsigned workers, std::vector<int> allowed)
{
    std::string error;
    CHECK_FALSE(plan_worker_cpus(affinity, workers, allowed, &error));
    return error;
}

} // namespace

TEST_CASE("cpu_affinity none leaves every worker free to move")
{
    CHECK(plan(CpuAffinity{}, 3, {0, 1}) == std::vector<int>{kAnyCpu, kAnyCpu, kAnyCpu});
}

TEST_CASE("cpu_affinity auto deals out the allowed CPUs in order and wraps around")
{
    const CpuAffinity automatic{CpuAffinity::Mode::Auto, {}};
    CHECK(plan(automatic, 2, {0, 1}) == std::vector<int>{0, 1});
    // Only the CPUs the process may use (taskset, cgroup cpuset) are dealt.
    CHECK(plan(automatic, 3, {2, 5, 7}) == std::vector<int>{2, 5, 7});
    CHECK(plan(automatic, 5, {2, 5}) == std::vector<int>{2, 5, 2, 5, 2});
    CHECK(plan(automatic, 1, {4, 5}) == std::vector<int>{4});
}

TEST_CASE("a cpu_affinity list is used in order and wraps around")
{
    CHECK(plan(CpuAffinity{CpuAffinity::Mode::List, {1, 0}}, 2, {0, 1}) == std::vector<int>{1, 0});
    CHECK(plan(CpuAffinity{CpuAffinity::Mode::List, {1}}, 3, {0, 1}) == std::vector<int>{1, 1, 1});
}

TEST_CASE("a listed CPU the process may not use is an error naming it")
{
    CHECK(plan_error(CpuAffinity{CpuAffinity::Mode::List, {0, 9}}, 2, {0, 1})
          == "cpu_affinity: CPU 9 is not available to this process (it may run on 0,1)");
}

TEST_CASE("a thread binds to one allowed CPU and is let go again")
{
    std::vector<int> allowed = sluice::allowed_cpus();
    REQUIRE_FALSE(allowed.empty());
    int target = allowed.back();
    std::thread([&] {
        REQUIRE(sluice::bind_current_thread(target, allowed));
        CHECK(sluice::allowed_cpus() == std::vector<int>{target});
        CHECK(::sched_getcpu() == target);
        REQUIRE(sluice::bind_current_thread(kAnyCpu, allowed));
        CHECK(sluice::allowed_cpus() == allowed);
    }).join();
    CHECK(sluice::allowed_cpus() == allowed);  // the test's own thread was never bound
}
