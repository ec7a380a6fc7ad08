// SessionRegistry: ownership, the worker and per-backend lists, the one end path.
#include "sluice/session.h"

#include "sluice/event_loop.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <vector>

using namespace sluice;

namespace {

struct Fixture {
    // Declared before the registry: its destructor ends what is left, and
    // those ends are recorded here.
    ListenerConfig listener;
    std::vector<int> ended;  // ids, in the order they ended
    std::vector<EndCause> causes;
    EventLoop loop;
    std::atomic<std::int64_t> admitted{0};
    SessionRegistry registry{admitted, loop};
};

// A session that records its end and leaves through the registry, as the
// real ones do.
class FakeSession final : public Session {
public:
    FakeSession(Fixture& f, int id) : Session(f.listener, nullptr, 0), fixture_(f), id_(id) {}
    void end(EndCause cause) override
    {
        fixture_.ended.push_back(id_);
        fixture_.causes.push_back(cause);
        fixture_.registry.finish(*this, cause);
    }
    const SocketAddress& client() const noexcept override { return client_; }
    SessionCounts counts() const noexcept override { return {}; }
    std::string_view state() const noexcept override { return "fake"; }
    int id() const noexcept { return id_; }

private:
    Fixture& fixture_;
    int id_;
    SocketAddress client_;
};

FakeSession& admit(Fixture& f, int id)
{
    f.admitted.fetch_add(1);  // what Listener::admit_session does
    return f.registry.add(std::make_unique<FakeSession>(f, id));
}

std::vector<int> ids_of_backend(const Fixture& f, BackendId backend)
{
    std::vector<int> ids;
    f.registry.for_each_of_backend(backend, [&](const Session& s) { ids.push_back(static_cast<const FakeSession&>(s).id()); });
    std::sort(ids.begin(), ids.end());
    return ids;
}

} // namespace

TEST_CASE("the registry counts every session it owns and gives back admission when one finishes")
{
    Fixture f;
    FakeSession& a = admit(f, 1);
    admit(f, 2);
    CHECK(f.registry.session_count() == 2);
    CHECK(f.admitted.load() == 2);
    a.end(EndCause::Done);
    CHECK(f.registry.session_count() == 1);
    CHECK(f.admitted.load() == 1);
    int visited = 0;
    f.registry.for_each([&](const Session&) { ++visited; });
    CHECK(visited == 1);
}

TEST_CASE("ending a backend's sessions ends exactly those, whatever the order they joined")
{
    Fixture f;
    for (int id = 1; id <= 6; ++id)
        f.registry.set_backend(admit(f, id), static_cast<BackendId>(id % 2 == 0 ? 7 : 3));
    admit(f, 99);  // connecting, no backend yet
    CHECK(ids_of_backend(f, 7) == std::vector<int>{2, 4, 6});
    CHECK(ids_of_backend(f, 3) == std::vector<int>{1, 3, 5});

    CHECK(f.registry.end_backend_sessions(7, EndCause::Shutdown) == 3);
    std::sort(f.ended.begin(), f.ended.end());
    CHECK(f.ended == std::vector<int>{2, 4, 6});
    CHECK(ids_of_backend(f, 7).empty());
    CHECK(ids_of_backend(f, 3) == std::vector<int>{1, 3, 5});
    CHECK(f.registry.session_count() == 4);
    CHECK(f.registry.end_backend_sessions(1234, EndCause::Shutdown) == 0);  // never seen
}

TEST_CASE("a session that moves to another backend (a retry) is listed only under the new one")
{
    Fixture f;
    FakeSession& s = admit(f, 1);
    f.registry.set_backend(s, 2);
    FakeSession& other = admit(f, 2);
    f.registry.set_backend(other, 2);
    f.registry.set_backend(s, 5);
    CHECK(ids_of_backend(f, 2) == std::vector<int>{2});
    CHECK(ids_of_backend(f, 5) == std::vector<int>{1});
    CHECK(s.backend() == BackendId{5});
    f.registry.clear_backend(s);
    CHECK(ids_of_backend(f, 5).empty());
    CHECK_FALSE(s.backend());
}

TEST_CASE("ending every session leaves an empty registry and a balanced admission count")
{
    Fixture f;
    for (int id = 1; id <= 100; ++id) {
        FakeSession& s = admit(f, id);
        if (id % 3 == 0)
            f.registry.set_backend(s, static_cast<BackendId>(id % 5));
    }
    f.registry.end_all(EndCause::Shutdown);
    CHECK(f.ended.size() == 100);
    CHECK(std::all_of(f.causes.begin(), f.causes.end(), [](EndCause c) { return c == EndCause::Shutdown; }));
    CHECK(f.registry.session_count() == 0);
    CHECK(f.admitted.load() == 0);
    for (BackendId b = 0; b < 5; ++b)
        CHECK(ids_of_backend(f, b).empty());
}

TEST_CASE("end causes have the names the access log uses")
{
    CHECK(to_string(EndCause::Done) == "done");
    CHECK(to_string(EndCause::ResourceLimit) == "resource-limit");
    CHECK(to_string(EndCause::Responses) == "responses");
    CHECK(to_string(EndCause::BackendRefused) == "backend-refused");
}
