#include "sluice/backend_table.h"
#include "sluice/duration_histogram.h"
#include "sluice/stats.h"

#include <catch2/catch.hpp>

using namespace sluice;

TEST_CASE("a value on a bucket's bound counts in that bucket, above the last bound in +Inf")
{
    constexpr std::array<double, 3> ladder{0.1, 1, 10};
    CHECK(histogram_bucket(ladder, 0) == 0);
    CHECK(histogram_bucket(ladder, 0.1) == 0);
    CHECK(histogram_bucket(ladder, 0.1000001) == 1);
    CHECK(histogram_bucket(ladder, 1) == 1);
    CHECK(histogram_bucket(ladder, 9.99) == 2);
    CHECK(histogram_bucket(ladder, 10) == 2);
    CHECK(histogram_bucket(ladder, 10.5) == 3);
    CHECK(histogram_bucket(ladder, -1) == 0);  // a clock step back: counted, not lost
}

TEST_CASE("every ladder fits the storage and increases")
{
    for (HistogramLadder ladder : {HistogramLadder(kConnectLadder), HistogramLadder(kSessionLadder),
                                   HistogramLadder(kQueueLadder)}) {
        REQUIRE(ladder.size() <= kMaxBounds);
        for (std::size_t i = 1; i < ladder.size(); ++i)
            CHECK(ladder[i - 1] < ladder[i]);
    }
}

TEST_CASE("per-worker histograms sum bucket by bucket, with their sums and counts")
{
    DurationHistogram worker0, worker1;
    worker0.record(kConnectLadder, 0.0003);  // bucket 0 (<= 0.5 ms)
    worker0.record(kConnectLadder, 0.002);   // bucket 2 (<= 2.5 ms)
    worker1.record(kConnectLadder, 0.002);
    worker1.record(kConnectLadder, 60);      // +Inf
    HistogramCounts sum;
    worker0.read_into(sum);
    worker1.read_into(sum);
    CHECK(sum.buckets[0] == 1);
    CHECK(sum.buckets[1] == 0);
    CHECK(sum.buckets[2] == 2);
    CHECK(sum.buckets[kConnectLadder.size()] == 1);
    CHECK(sum.count() == 4);
    CHECK(sum.sum == Approx(60.0043));

    HistogramCounts plain;
    plain.record(kConnectLadder, 0.002);
    plain.add(sum);
    CHECK(plain.buckets[2] == 3);
    CHECK(plain.count() == 5);

    worker0.reset();
    HistogramCounts after;
    worker0.read_into(after);
    CHECK(after.count() == 0);
    CHECK(after.sum == 0);
}

TEST_CASE("a worker's connect times count per backend and start over when the slot goes to another backend")
{
    BackendCounters counters(8);
    counters.count_connect_time(3, 1, 0.001);
    counters.count_connect_time(3, 1, 0.004);
    HistogramCounts read;
    counters.read_connect_times(3, 1, read);
    CHECK(read.count() == 2);
    CHECK(read.buckets[1] == 1);  // <= 1 ms
    CHECK(read.buckets[3] == 1);  // <= 5 ms

    HistogramCounts untouched;
    counters.read_connect_times(4, 1, untouched);  // never connected: no histogram made
    CHECK(untouched.count() == 0);

    HistogramCounts stale;
    counters.read_connect_times(3, 2, stale);  // a reader of the next epoch sees nothing of the old one
    CHECK(stale.count() == 0);
    counters.count_connect_time(3, 2, 0.02);
    HistogramCounts fresh;
    counters.read_connect_times(3, 2, fresh);
    CHECK(fresh.count() == 1);
    CHECK(fresh.sum == Approx(0.02));
}

TEST_CASE("a pool's histograms keep one line per worker and sum them")
{
    PoolHistograms pool(2);
    pool.worker(0).session_duration.record(kSessionLadder, 0.5);
    pool.worker(1).session_duration.record(kSessionLadder, 7200);
    pool.worker(5).queue_wait.record(kQueueLadder, 0.2);  // past the end: the last line
    PoolHistogramTotals total = pool.total();
    CHECK(total.session_duration.count() == 2);
    CHECK(total.session_duration.buckets[3] == 1);   // <= 0.5 s
    CHECK(total.session_duration.buckets[13] == 1);  // <= 4 h
    CHECK(total.queue_wait.count() == 1);
    HistogramCounts last;
    pool.worker(1).queue_wait.read_into(last);
    CHECK(last.count() == 1);
}
