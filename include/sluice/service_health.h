// Service health: the answer of GET /health on the [admin] metrics address,
// for keepalived's vrrp_script, Kubernetes probes or an outer load balancer.
//
// An instance is healthy while it can take new sessions on everything it is
// configured for: not draining, every listener bound, and every pool with at
// least one backend (primary or backup) that may take a session now. That is
// what an HA pair needs to decide who holds the VIP: one pool without a
// backend on this instance is a reason to hand the address to the peer.
#pragma once

#include "sluice/backend_table.h"
#include "sluice/runtime.h"

#include <cstdint>
#include <string>

namespace sluice {

struct ServiceHealth {
    bool healthy = false;
    // "ok\n", or one line per reason it is not, naming the pool or listener.
    std::string body;
};

// Reads the generation and the table's atomics only, so any thread may call
// it (the admin thread does). `now_ms` is monotonic, for passive mark-downs.
ServiceHealth check_service_health(const Runtime& runtime, const BackendTable& table, std::int64_t now_ms,
                                   bool draining);

} // namespace sluice
