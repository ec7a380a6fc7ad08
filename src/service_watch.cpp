#include "sluice/service_watch.h"

#include <fmt/format.h>

namespace sluice {

bool ServiceWatch::in_service(const BackendSlot& slot, std::int64_t now_ms) noexcept
{
    return slot.health.load(std::memory_order_acquire) == Health::Up
        && slot.admin.load(std::memory_order_acquire) != AdminState::Maint
        && slot.passive_down_until_ms.load(std::memory_order_acquire) <= now_ms;
}

void ServiceWatch::adopt(const Runtime& runtime, std::int64_t now_ms)
{
    std::unordered_map<BackendId, bool> previous = std::move(in_service_);
    in_service_.clear();
    pools_.clear();
    for (const PoolRuntime& pool : runtime.pools) {
        WatchedPool watched;
        watched.close_on_down = pool.config->on_down == PoolConfig::OnDown::Close;
        watched.close_backups_on_up = pool.config->on_up == PoolConfig::OnUp::CloseBackup && !pool.backups.empty();
        if (!watched.close_on_down && !watched.close_backups_on_up)
            continue;
        watched.primaries = pool.primaries;
        watched.backups = pool.backups;
        for (const auto* ids : {&watched.primaries, &watched.backups})
            for (BackendId id : *ids) {
                watched.labels.push_back(pool.label(id));
                auto kept = previous.find(id);
                in_service_[id] = kept != previous.end() ? kept->second : in_service(table_.slot(id), now_ms);
            }
        pools_.push_back(std::move(watched));
    }
}

std::vector<ServiceWatch::Action> ServiceWatch::scan(std::int64_t now_ms)
{
    std::vector<Action> actions;
    for (const WatchedPool& pool : pools_) {
        std::size_t label = 0;
        for (const auto* ids : {&pool.primaries, &pool.backups}) {
            const bool backups = ids == &pool.backups;
            for (BackendId id : *ids) {
                const std::string& name = pool.labels[label++];
                const bool now = in_service(table_.slot(id), now_ms);
                bool& before = in_service_[id];
                if (before == now)
                    continue;
                before = now;
                if (!now && pool.close_on_down)
                    actions.push_back({{id}, EndCause::BackendDown,
                                       fmt::format("{} left service (on_down = \"close\")", name)});
                else if (now && !backups && pool.close_backups_on_up)
                    actions.push_back({pool.backups, EndCause::PrimaryUp,
                                       fmt::format("{} is back (on_up = \"close_backup\"): the backups'", name)});
            }
        }
    }
    return actions;
}

} // namespace sluice
