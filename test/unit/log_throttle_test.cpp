#include "sluice/log_throttle.h"

#include <catch2/catch.hpp>

#include <atomic>
#include <thread>
#include <vector>

using sluice::LogThrottle;

TEST_CASE("the first event of a burst is logged at once, the rest once per interval with their count")
{
    LogThrottle throttle(1000);
    CHECK(throttle.note(5000) == 1);
    for (int i = 0; i < 41; ++i)
        CHECK(throttle.note(5001 + i) == 0);
    CHECK(throttle.note(5999) == 0);
    // The interval passed: this line stands for the 42 suppressed and itself.
    CHECK(throttle.note(6000) == 43);
    CHECK(throttle.note(6001) == 0);
}

TEST_CASE("an event after a quiet spell is logged at once")
{
    LogThrottle throttle(1000);
    CHECK(throttle.note(0) == 1);
    CHECK(throttle.note(60'000) == 1);
}

TEST_CASE("events noted by many threads are each reported exactly once")
{
    LogThrottle throttle(10);
    constexpr int kThreads = 4;
    constexpr int kEvents = 20'000;
    std::atomic<std::uint64_t> reported{0};
    std::atomic<int> lines{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&, t] {
            for (int i = 0; i < kEvents; ++i)
                if (std::uint64_t n = throttle.note(i / 100 + t)) {
                    reported += n;
                    ++lines;
                }
        });
    for (auto& thread : threads)
        thread.join();
    // Whatever is still pending goes out with the next line.
    reported += throttle.note(1'000'000) - 1;
    CHECK(reported.load() == std::uint64_t{kThreads} * kEvents);
    CHECK(lines.load() <= kEvents / 100 / 10 * kThreads + kThreads);
}
