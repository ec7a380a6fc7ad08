// Fuzz target: parse_config, the TOML parser (toml++) and the validation that
// sluice runs on a config file at start, on --check and on every reload.
//
// Properties:
//  - a result holds a Config exactly when it holds no error; errors come in
//    file order, each with a message, and print as "FILE:LINE:COL: message";
//  - a Config that comes back keeps the promises the rest of sluice relies on
//    without checking again: at least one listener, each naming a pool that
//    exists; at least one backend per pool, with a port and a weight of
//    1..256; no two backends of a pool share an address or a name; positive
//    timeouts; a UDP health check has a datagram to send;
//  - every backend can be named in an admin command as POOL/NAME and as
//    POOL/ADDRESS, and names print on one line of an admin reply.
#include "fuzz_check.h"

#include "sluice/admin.h"
#include "sluice/config.h"

#include <algorithm>
#include <string>
#include <sys/un.h>
#include <tuple>

namespace {

constexpr std::string_view kFile = "fuzz.toml";

bool one_line(std::string_view name)
{
    return name.find_first_of("\r\n") == std::string_view::npos;
}

// `set server POOL/BACKEND weight 1` reaches exactly that backend.
bool addressable(const std::string& pool, const std::string& backend)
{
    const sluice::AdminParseResult parsed =
        sluice::parse_admin_command("set server " + pool + "/" + backend + " weight 1");
    return parsed.command && parsed.command->pool == pool && parsed.command->backend == backend;
}

void check_errors(const std::vector<sluice::ConfigError>& errors)
{
    for (std::size_t i = 0; i < errors.size(); ++i) {
        const sluice::ConfigError& error = errors[i];
        FUZZ_CHECK(!error.message.empty());
        FUZZ_CHECK(error.file == kFile);
        FUZZ_CHECK(error.line >= 0 && error.column >= 0);
        FUZZ_CHECK(error.to_string().starts_with(kFile));
        if (i > 0)
            FUZZ_CHECK(std::tie(errors[i - 1].line, errors[i - 1].column) <= std::tie(error.line, error.column));
    }
}

void check_pool(const sluice::PoolConfig& pool)
{
    FUZZ_CHECK(!pool.name.empty() && pool.name.find('/') == std::string::npos && one_line(pool.name));
    FUZZ_CHECK(pool.connect_timeout.count() > 0 && pool.fail_timeout.count() > 0);
    FUZZ_CHECK(!pool.backends.empty() || pool.discover);  // discover-only pools fill in at run time
    if (pool.health) {
        FUZZ_CHECK(pool.health->interval.count() > 0 && pool.health->timeout.count() > 0);
        if (pool.health->kind == sluice::HealthCheckConfig::Kind::Udp)
            FUZZ_CHECK(!pool.health->send.empty());
    }
    for (std::size_t i = 0; i < pool.backends.size(); ++i) {
        const sluice::BackendConfig& backend = pool.backends[i];
        // A literal address, or a DNS name (resolved later: no address yet).
        if (backend.host.empty())
            FUZZ_CHECK(!backend.address.empty() && backend.address.port() != 0);
        else
            FUZZ_CHECK(backend.address.empty() && backend.port != 0);
        FUZZ_CHECK(backend.weight >= 1 && backend.weight <= 256);
        FUZZ_CHECK(one_line(backend.name));
        FUZZ_CHECK(addressable(pool.name, backend.name));
        FUZZ_CHECK(addressable(pool.name, backend.identity()));
        for (std::size_t j = 0; j < i; ++j) {
            FUZZ_CHECK(pool.backends[j].identity() != backend.identity());
            FUZZ_CHECK(pool.backends[j].name != backend.name);
        }
    }
}

void check_config(const sluice::Config& config)
{
    FUZZ_CHECK(!config.listeners.empty());
    for (const sluice::ListenerConfig& listener : config.listeners) {
        FUZZ_CHECK(!listener.listen.empty());
        FUZZ_CHECK(config.find_pool(listener.pool) != nullptr);
        FUZZ_CHECK(!listener.name.empty() && listener.name.find('/') == std::string::npos);
        FUZZ_CHECK(one_line(listener.name));
        FUZZ_CHECK(listener.idle_timeout.count() >= 0 && listener.responses >= 0);
    }
    for (const sluice::PoolConfig& pool : config.pools)
        check_pool(pool);
    FUZZ_CHECK(config.admin.socket.size() < sizeof(sockaddr_un::sun_path));
    const sluice::CpuAffinity& affinity = config.global.cpu_affinity;
    if (affinity.mode == sluice::CpuAffinity::Mode::List)
        FUZZ_CHECK(!affinity.cpus.empty() && std::all_of(affinity.cpus.begin(), affinity.cpus.end(), [](int cpu) {
            return cpu >= 0 && cpu <= sluice::CpuAffinity::kMaxCpu;
        }));
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const sluice::ConfigResult result = sluice::parse_config(sluice::fuzz::text_of(data, size), kFile);
    FUZZ_CHECK(result.config.has_value() == result.errors.empty());
    FUZZ_CHECK(result.ok() == result.errors.empty());
    check_errors(result.errors);
    if (result.config)
        check_config(*result.config);
    return 0;
}
