// ServiceWatch: notices a backend leaving service or coming back, for the
// pools' failover settings (on_down = "close", on_up = "close_backup").
//
// A backend is in service while it is healthy (active checks), not passively
// marked down and not in maint; drain keeps it in service (drain lets running
// sessions finish by definition). Three threads can take a backend out of
// service (the prober, a worker's passive mark, the admin thread), and a
// passive mark ends by itself, so instead of each of them calling out, the
// control thread looks at the table a few times a second and acts on the
// edges: one place, every cause, no lock on any of those paths.
#pragma once

#include "sluice/backend_table.h"
#include "sluice/runtime.h"
#include "sluice/session.h"

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace sluice {

class ServiceWatch {
public:
    // How often the control thread scans, in seconds: the added delay
    // between a backend going down and its sessions being closed.
    static constexpr double kScanInterval = 0.1;

    // Sessions to end because of one edge.
    struct Action {
        std::vector<BackendId> backends;
        EndCause cause = EndCause::BackendDown;
        std::string why;  // for the log line: "pool/b left service (on_down = \"close\")"
    };

    explicit ServiceWatch(const BackendTable& table) : table_(table) {}

    // Control thread: watches the pools of `runtime` from now on. A backend
    // seen before keeps its last state (an edge across a reload still
    // counts); a new one is taken as it is, with no edge.
    void adopt(const Runtime& runtime, std::int64_t now_ms);

    // True when some pool asks for on_down = "close" or on_up = "close_backup";
    // otherwise there is nothing to scan for.
    bool needed() const noexcept { return !pools_.empty(); }

    // Control thread: compares every watched backend with the last scan.
    std::vector<Action> scan(std::int64_t now_ms);

    // In service at `now_ms`: Up, not passively down, not in maint.
    static bool in_service(const BackendSlot& slot, std::int64_t now_ms) noexcept;

private:
    struct WatchedPool {
        bool close_on_down = false;
        bool close_backups_on_up = false;
        std::vector<BackendId> primaries;
        std::vector<BackendId> backups;
        std::vector<std::string> labels;  // parallel to primaries then backups
    };

    const BackendTable& table_;
    std::vector<WatchedPool> pools_;
    std::unordered_map<BackendId, bool> in_service_;  // at the last scan
};

} // namespace sluice
