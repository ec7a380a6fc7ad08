// The admin protocol's replies as text tables or one line of JSON. Pure.
#pragma once

#include "sluice/metrics.h"
#include "sluice/worker.h"

#include <string>
#include <vector>

namespace sluice {

// Replies, without the terminating empty line. Pure.
std::string render_servers(const StatsSnapshot& snapshot, bool json);
std::string render_stat(const StatsSnapshot& snapshot, bool json);
std::string render_sessions(const std::vector<SessionInfo>& sessions, bool json);
// A backend's last active check as JSON members (no braces): "check",
// "check_passed", "verdict", "role", "check_seconds"; null before the first
// probe. Shared by `show servers` and the dashboard's /api/state. Pure.
std::string render_check_json(const BackendSnapshot& backend);


} // namespace sluice
