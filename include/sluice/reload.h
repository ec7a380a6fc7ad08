// Reload planning: what of the running generation a new one keeps.
//
// Pure functions (no I/O but opening access log files), so the rules are unit
// tested on their own; Server::reload (server_reload.cpp) applies them.
//   - A listener is kept when the new file has one with the same protocol and
//     the same configured address (for port 0 also the same name): its
//     per-worker sockets stay open, so accepting never pauses, and its counters
//     carry over. Others are opened; listeners no longer in the file close.
//   - A pool's counters carry over when a pool of the same name stays.
//   - A backend keeps its BackendTable slot (health, admin state, counters)
//     when its pool and address stay (build_runtime); the slots of removed
//     backends are freed once no generation that used them is alive.
#pragma once

#include "sluice/runtime.h"

#include <optional>
#include <string>
#include <vector>

namespace sluice {

// True when `next` is the same listener as `current` for a reload.
bool same_listener(const ListenerConfig& current, const ListenerConfig& next) noexcept;

// For each listener of `next` (same order), the index of the listener of
// `current` it keeps, or nullopt when it is new. Each listener of `current` is
// kept at most once.
std::vector<std::optional<std::size_t>> match_listeners(const Config& current, const Config& next);

// Slots `previous` used that `next` does not.
std::vector<BackendId> removed_backends(const Runtime& previous, const Runtime& next);

// Control thread, before `next` is published: fills next.listeners (counters
// carried from `previous` for kept listeners, new ones for `workers` workers;
// access log files opened) and each pool's stats (carried by pool name).
// Returns false and appends to `errors` when an access log cannot be opened.
bool attach_operations(Runtime& next, const Runtime* previous, unsigned workers, std::vector<std::string>* errors);

} // namespace sluice
