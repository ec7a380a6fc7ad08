#include "sluice/pool_queue.h"

#include "sluice/event_loop.h"

#include <catch2/catch.hpp>

#include <memory>
#include <optional>
#include <vector>

using namespace sluice;

namespace {

// A queued client that records the slots it was handed.
struct Client final : QueueClient {
    void on_slot_granted(BackendId backend) override { granted.push_back(backend); }
    std::vector<BackendId> granted;
};

struct Fixture {
    std::unique_ptr<BackendTable> table = std::make_unique<BackendTable>();
    std::shared_ptr<PoolQueue> queue = std::make_shared<PoolQueue>();
    EventLoop loop;
    BackendId backend = *table->allocate(1);

    Fixture() { table->set_limits(backend, 1, 0); }

    std::optional<BackendId> take() { return table->try_acquire(backend) ? std::optional(backend) : std::nullopt; }

    PoolQueue::Admission admit(Client& client, std::shared_ptr<QueueWaiter>& waiter, std::size_t max_queue = 0)
    {
        waiter = std::make_shared<QueueWaiter>(loop, client, 0);
        BackendId acquired = 0;
        return queue->admit(waiter, max_queue, *table, [&] { return take(); }, &acquired);
    }

    // Runs the grants posted to the loop.
    void run_posted()
    {
        loop.post([this] { loop.break_loop(); });
        loop.run();
    }
};

} // namespace

TEST_CASE("a client takes a free slot at once instead of queueing")
{
    Fixture f;
    Client a;
    std::shared_ptr<QueueWaiter> wa;
    CHECK(f.admit(a, wa) == PoolQueue::Admission::Acquired);
    CHECK(f.table->active(f.backend) == 1);
    CHECK_FALSE(f.queue->has_waiters());
}

TEST_CASE("freed slots go to queued clients in arrival order, one each")
{
    Fixture f;
    REQUIRE(f.take());  // the one slot is busy
    Client a, b, c;
    std::shared_ptr<QueueWaiter> wa, wb, wc;
    CHECK(f.admit(a, wa) == PoolQueue::Admission::Queued);
    CHECK(f.admit(b, wb) == PoolQueue::Admission::Queued);
    CHECK(f.admit(c, wc) == PoolQueue::Admission::Queued);
    CHECK(f.queue->totals().waiting == 3);

    f.table->release(f.backend);
    f.queue->slot_freed(*f.table, f.backend, 10);
    f.run_posted();
    CHECK(a.granted == std::vector<BackendId>{f.backend});
    CHECK(b.granted.empty());
    // The slot is reserved for a: a newcomer finds it taken.
    CHECK(f.table->active(f.backend) == 1);
    CHECK_FALSE(f.take());

    f.table->release(f.backend);
    f.queue->slot_freed(*f.table, f.backend, 20);
    f.run_posted();
    CHECK(b.granted.size() == 1);
    CHECK(c.granted.empty());
    QueueTotals t = f.queue->totals();
    CHECK(t.waiting == 1);
    CHECK(t.queued == 3);
    CHECK(t.served == 2);
    CHECK(t.wait_ms == 30);
}

TEST_CASE("a newcomer queues behind waiting clients even when it could take a slot")
{
    Fixture f;
    REQUIRE(f.take());
    Client a, b;
    std::shared_ptr<QueueWaiter> wa, wb;
    REQUIRE(f.admit(a, wa) == PoolQueue::Admission::Queued);
    // A slot frees without slot_freed having run yet: the newcomer's admit
    // hands it to the waiting client first, then queues.
    f.table->release(f.backend);
    CHECK(f.admit(b, wb) == PoolQueue::Admission::Queued);
    f.run_posted();
    CHECK(a.granted.size() == 1);
    CHECK(b.granted.empty());
}

TEST_CASE("over max_queue a client is refused and counted")
{
    Fixture f;
    REQUIRE(f.take());
    Client a, b, c;
    std::shared_ptr<QueueWaiter> wa, wb, wc;
    CHECK(f.admit(a, wa, 2) == PoolQueue::Admission::Queued);
    CHECK(f.admit(b, wb, 2) == PoolQueue::Admission::Queued);
    CHECK(f.admit(c, wc, 2) == PoolQueue::Admission::Refused);
    CHECK(f.queue->totals().refused == 1);
    CHECK(f.queue->totals().waiting == 2);
}

TEST_CASE("a client that leaves is skipped, and a slot on its way to a gone client goes to the next")
{
    Fixture f;
    REQUIRE(f.take());
    Client a, b, c;
    std::shared_ptr<QueueWaiter> wa, wb, wc;
    REQUIRE(f.admit(a, wa) == PoolQueue::Admission::Queued);
    REQUIRE(f.admit(b, wb) == PoolQueue::Admission::Queued);
    REQUIRE(f.admit(c, wc) == PoolQueue::Admission::Queued);
    CHECK(f.queue->leave(*wa, true));  // a times out
    CHECK(f.queue->totals().timed_out == 1);

    f.table->release(f.backend);
    f.queue->slot_freed(*f.table, f.backend, 0);  // to b, posted
    // b's session ends before the grant runs: the grant is in flight.
    CHECK_FALSE(f.queue->leave(*wb, false));
    wb->client = nullptr;
    f.run_posted();  // b's grant finds b gone, gives the slot back; c gets it
    f.run_posted();
    CHECK(a.granted.empty());
    CHECK(b.granted.empty());
    CHECK(c.granted == std::vector<BackendId>{f.backend});
    CHECK(f.table->active(f.backend) == 1);
    CHECK(f.queue->totals().waiting == 0);
}

TEST_CASE("a slot of a backend that is no longer usable is not handed out")
{
    Fixture f;
    REQUIRE(f.take());
    Client a;
    std::shared_ptr<QueueWaiter> wa;
    REQUIRE(f.admit(a, wa) == PoolQueue::Admission::Queued);
    f.table->set_admin(f.backend, AdminState::Maint);
    f.table->release(f.backend);
    f.queue->slot_freed(*f.table, f.backend, 0);
    f.run_posted();
    CHECK(a.granted.empty());
    CHECK(f.table->active(f.backend) == 0);
    CHECK(f.queue->totals().waiting == 1);
}
