// The one place that knows every kind of listener.
#pragma once

#include "sluice/addr.h"
#include "sluice/config.h"
#include "sluice/errors.h"
#include "sluice/fd.h"
#include "sluice/listener.h"

#include <memory>

namespace sluice {

class WorkerContext;

// Opens one worker's socket for `config` (bound to `address`, which has port 0
// replaced by the port the first worker's socket got).
Result<UniqueFd> open_listener_socket(const ListenerConfig& config, const SocketAddress& address, int backlog);

// The listener of the right kind for `config` on `worker`, owning `fd`.
std::unique_ptr<Listener> make_listener(WorkerContext& worker, UniqueFd fd, const ListenerConfig& config);

} // namespace sluice
