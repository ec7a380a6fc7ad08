#include "sluice/event_loop.h"

#include <catch2/catch.hpp>

#include <ctime>
#include <future>
#include <thread>

using namespace sluice;

namespace {

double thread_cpu_seconds()
{
    timespec now{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) / 1e9;
}

} // namespace

TEST_CASE("an event loop reads its thread's CPU time once per iteration")
{
    EventLoop loop;
    CHECK(loop.cpu_seconds() == 0);  // no iteration yet
    std::thread thread([&] { loop.run(); });

    // Burn 50 ms of the loop thread's CPU in one task; the yield point of the
    // next iteration must see at least that much.
    std::promise<double> burnt;
    loop.post([&] {
        const double start = thread_cpu_seconds();
        while (thread_cpu_seconds() < start + 0.05) {
        }
        burnt.set_value(thread_cpu_seconds());
    });
    const double after_burn = burnt.get_future().get();

    // A second task runs in a later iteration than the first (post() wakes
    // the loop again), so a yield point ran in between.
    std::promise<double> seen;
    loop.post([&] { seen.set_value(loop.cpu_seconds()); });
    const double reported = seen.get_future().get();
    CHECK(reported >= 0.05);
    CHECK(reported >= after_burn);

    loop.post([&] { loop.break_loop(); });
    thread.join();
}
