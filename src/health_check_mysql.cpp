// The mysql health check. (Placeholder until the check lands: it fails every
// probe with a clear reason, so a pool that asks for it never routes blind.)
#include "sluice/health_check.h"

namespace sluice {

std::unique_ptr<HealthCheck> start_mysql_check(EventLoop&, const HealthCheckConfig&, const SocketAddress&,
                                             HealthCheckDone done)
{
    done(HealthCheckResult::fail(HealthReason::Other, "the mysql check is not built yet"));
    return nullptr;
}

} // namespace sluice
