#include "sluice/worker_context.h"

#include <fcntl.h>

namespace sluice {

WorkerContext::WorkerContext(unsigned index, SharedState& shared, const WorkerOptions& options)
    : index_(index)
    , shared_(shared)
    , pipes_(options.pipe_size, options.max_idle_pipes)
    , buffers_(16)
    , reserve_fd_(::open("/dev/null", O_RDONLY | O_CLOEXEC))
    , splice_(options.splice)
    , sessions_(shared.sessions, loop_, index)
{
}

} // namespace sluice
