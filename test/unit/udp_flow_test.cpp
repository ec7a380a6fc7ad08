// FlowTable: the UDP flow table's lookup by client address and its idle order.
#include "sluice/udp_flow.h"

#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <vector>

using sluice::ClientAddressHash;
using sluice::FlowLink;
using sluice::FlowTable;
using sluice::SocketAddress;

namespace {

struct TestFlow : FlowLink {
    explicit TestFlow(int id_) : id(id_) {}
    int id;
};

// The flows of one test (the table does not own them).
struct Flows {
    std::vector<std::unique_ptr<TestFlow>> owned;
    TestFlow* make(int id)
    {
        owned.push_back(std::make_unique<TestFlow>(id));
        return owned.back().get();
    }
};

// Removes `flow` from `table`; returns the id the destroy step saw.
int remove(FlowTable<TestFlow>& table, TestFlow* flow)
{
    int seen = 0;
    table.remove(flow, [&](TestFlow* removed) { seen = removed->id; });
    return seen;
}

SocketAddress addr(const std::string& text)
{
    auto parsed = SocketAddress::parse(text);
    REQUIRE(parsed);
    return *parsed;
}

// Ids from oldest to newest, following the `newer` links.
std::vector<int> idle_order(const FlowTable<TestFlow>& table)
{
    std::vector<int> ids;
    for (const FlowLink* link = table.oldest(); link; link = link->newer)
        ids.push_back(static_cast<const TestFlow*>(link)->id);
    return ids;
}

} // namespace

TEST_CASE("a flow is found by its client's IP and port, not by the IP alone")
{
    FlowTable<TestFlow> table;
    Flows flows;
    table.insert(addr("10.0.0.1:5000"), flows.make(1), 0);
    table.insert(addr("10.0.0.1:5001"), flows.make(2), 0);
    table.insert(addr("[::1]:5000"), flows.make(3), 0);

    REQUIRE(table.find(addr("10.0.0.1:5000")));
    CHECK(table.find(addr("10.0.0.1:5000"))->id == 1);
    CHECK(table.find(addr("10.0.0.1:5001"))->id == 2);
    CHECK(table.find(addr("[::1]:5000"))->id == 3);
    CHECK(table.find(addr("10.0.0.2:5000")) == nullptr);
    CHECK(table.find(addr("10.0.0.1:5002")) == nullptr);
    CHECK(table.size() == 3);
}

TEST_CASE("a flow's client key refers to the table's own key")
{
    FlowTable<TestFlow> table;
    Flows flows;
    SocketAddress client = addr("192.0.2.7:53");
    TestFlow* flow = table.insert(client, flows.make(1), 0);
    REQUIRE(flow->client_key != nullptr);
    CHECK(flow->client_key != &client);
    CHECK(*flow->client_key == client);
}

TEST_CASE("the oldest flow is the least recently active one")
{
    FlowTable<TestFlow> table;
    Flows flows;
    TestFlow* a = table.insert(addr("10.0.0.1:1"), flows.make(1), 1.0);
    table.insert(addr("10.0.0.1:2"), flows.make(2), 2.0);
    TestFlow* c = table.insert(addr("10.0.0.1:3"), flows.make(3), 3.0);
    CHECK(idle_order(table) == std::vector<int>{1, 2, 3});

    table.touch(a, 4.0);
    CHECK(idle_order(table) == std::vector<int>{2, 3, 1});
    CHECK(a->last_active == 4.0);
    table.touch(c, 5.0);  // from the middle
    CHECK(idle_order(table) == std::vector<int>{2, 1, 3});
    table.touch(c, 6.0);  // already the newest
    CHECK(idle_order(table) == std::vector<int>{2, 1, 3});
    CHECK(table.oldest()->id == 2);
}

TEST_CASE("removing flows from either end or the middle keeps the idle order")
{
    FlowTable<TestFlow> table;
    Flows flows;
    std::vector<TestFlow*> added;
    for (int i = 1; i <= 5; ++i)
        added.push_back(table.insert(addr("10.0.0.1:" + std::to_string(i)), flows.make(i), i));

    CHECK(remove(table, added[2]) == 3);
    CHECK(idle_order(table) == std::vector<int>{1, 2, 4, 5});
    CHECK(remove(table, added[0]) == 1);
    CHECK(idle_order(table) == std::vector<int>{2, 4, 5});
    CHECK(remove(table, added[4]) == 5);
    CHECK(idle_order(table) == std::vector<int>{2, 4});
    CHECK(table.find(addr("10.0.0.1:3")) == nullptr);
    CHECK(table.find(addr("10.0.0.1:4"))->id == 4);
    CHECK(table.size() == 2);

    remove(table, added[1]);
    remove(table, added[3]);
    CHECK(table.empty());
    CHECK(table.oldest() == nullptr);
    // The table is usable again after it emptied.
    table.insert(addr("10.0.0.1:9"), flows.make(9), 10);
    CHECK(idle_order(table) == std::vector<int>{9});
}

TEST_CASE("a client that comes back after its flow ended gets a new flow")
{
    FlowTable<TestFlow> table;
    Flows flows;
    SocketAddress client = addr("10.0.0.1:4000");
    remove(table, table.insert(client, flows.make(1), 0));
    CHECK(table.find(client) == nullptr);
    table.insert(client, flows.make(2), 1);
    CHECK(table.find(client)->id == 2);
}

TEST_CASE("client address keys hash alike for equal addresses and apart across ports")
{
    ClientAddressHash hash;
    CHECK(hash(addr("10.1.2.3:53")) == hash(addr("10.1.2.3:53")));
    CHECK(hash(addr("10.1.2.3:53")) != hash(addr("10.1.2.3:54")));
    CHECK(hash(addr("10.1.2.3:53")) != hash(addr("10.1.2.4:53")));
    CHECK(hash(addr("[2001:db8::1]:53")) != hash(addr("[2001:db8::2]:53")));
}

TEST_CASE("ten thousand flows from one IP are each found")
{
    FlowTable<TestFlow> table;
    Flows flows;
    for (int port = 1; port <= 10000; ++port)
        table.insert(addr("127.0.0.1:" + std::to_string(port)), flows.make(port), port);
    int found = 0;
    for (int port = 1; port <= 10000; ++port) {
        TestFlow* flow = table.find(addr("127.0.0.1:" + std::to_string(port)));
        found += flow && flow->id == port;
    }
    CHECK(found == 10000);
    CHECK(table.oldest()->id == 1);
}
