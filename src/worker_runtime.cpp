#include "sluice/worker_runtime.h"

namespace sluice {

PoolPicker* WorkerRuntime::find_pool(std::string_view name) noexcept
{
    for (auto& pool : pools)
        if (pool->runtime->config->name == name)
            return pool.get();
    return nullptr;
}

} // namespace sluice
