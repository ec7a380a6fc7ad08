// The web dashboard on the metrics address: the page (GET /), its data
// (GET /api/state) and its actions (POST /api/servers/POOL/NAME/state).
//
// DashboardHistory is what a snapshot alone cannot say: rates, the last five
// minutes of them (so a page reload keeps its sparklines), and a log of
// state changes. The admin thread samples once a second; it is the only
// thread that touches a DashboardHistory, so it needs no lock.
//
// Everything here is pure or owned by the admin thread, so it is tested on
// its own (test/unit/dashboard_test.cpp); admin.cpp only routes to it.
#pragma once

#include "sluice/admin_command.h"
#include "sluice/metrics.h"

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice {

// The page, HTML with its CSS and JavaScript inline, compiled in from
// src/dashboard/index.html (nothing is fetched from elsewhere).
std::string_view dashboard_page() noexcept;

// A fixed-size ring of per-second values, oldest first when read.
class RateRing {
public:
    static constexpr std::size_t kCapacity = 300;  // five minutes at one sample a second
    void push(double value);
    std::vector<double> values() const;  // oldest first, at most kCapacity
    double last() const noexcept { return values_.empty() ? 0 : values_.back(); }

private:
    std::deque<double> values_;
};

struct DashboardEvent {
    double time = 0;       // wall clock, seconds since the epoch
    std::string kind;      // "down", "up", "state", "weight", "reload", "reload_failed", "added", "removed"
    std::string subject;   // "POOL/NAME", or "" for the process
    std::string message;   // in words
};

class DashboardHistory {
public:
    static constexpr std::size_t kMaxEvents = 200;

    // Admin thread, once a second: the rates since the previous sample, and
    // an event for every backend whose health, admin state or weight changed
    // and for every reload. `wall_seconds` stamps the events; `elapsed` is the
    // time since the previous sample (the first sample only sets the baseline).
    void sample(const StatsSnapshot& snapshot, double wall_seconds, double elapsed_seconds);

    struct Rates {
        RateRing sessions;   // new sessions a second
        RateRing bytes_in;   // bytes a second to the backend (client -> backend)
        RateRing bytes_out;  // bytes a second from the backend
    };
    // Keyed by "POOL/NAME" for backends and by listener name for listeners.
    const Rates* backend(const std::string& key) const;
    const Rates* listener(const std::string& name) const;
    const Rates& total() const noexcept { return total_; }
    const std::deque<DashboardEvent>& events() const noexcept { return events_; }
    void add_event(DashboardEvent event);

private:
    struct Seen {
        std::uint64_t sessions = 0;
        std::uint64_t bytes_in = 0;
        std::uint64_t bytes_out = 0;
    };
    struct BackendSeen {
        Seen counters;
        bool up = true;
        AdminState admin = AdminState::Ready;
        std::uint16_t weight = 1;
    };
    bool sampled_ = false;
    std::uint64_t generation_ = 0;
    std::uint64_t reloads_failed_ = 0;
    std::map<std::string, BackendSeen> backends_seen_;
    std::map<std::string, Seen> listeners_seen_;
    Seen total_seen_;
    std::map<std::string, Rates> backend_rates_;
    std::map<std::string, Rates> listener_rates_;
    Rates total_;
    std::deque<DashboardEvent> events_;
};

// GET /api/state: `snapshot` with the rates and history of `history` as one
// JSON object (the schema is in README.md, "Dashboard"). `actions` says
// whether a token is configured, so the page shows its buttons.
std::string render_dashboard_state(const StatsSnapshot& snapshot, const DashboardHistory& history,
                                   double wall_seconds, bool actions);

// POST /api/servers/POOL/NAME/state with a form body "state=ready|drain|maint"
// or "weight=N": the admin command it stands for, or the reason it is
// refused (for a 400 or 404 answer).
struct ServerAction {
    std::optional<AdminCommand> command;
    std::string error;
    bool not_found = false;  // the target is not /api/servers/POOL/NAME/state
};
ServerAction parse_server_action(std::string_view target, std::string_view body);

// Whether the header fields carry "Authorization: Bearer TOKEN" with exactly
// `token`. The comparison takes the same time wherever the first difference
// is, so the answer's timing does not leak the token. An empty `token`
// (none configured) matches nothing.
bool bearer_token_matches(std::string_view fields, std::string_view token) noexcept;

} // namespace sluice
