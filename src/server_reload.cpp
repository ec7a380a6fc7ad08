// Server::reload: SIGHUP and `sluicectl reload`. The rules of what carries over
// are in reload.h; this file applies them to the running process.
//
// Control thread only. The order matters: everything that can fail (parse,
// validate, table slots, access logs, new sockets) happens before anything
// running is touched, so a failed reload changes nothing.
#include "sluice/server.h"

#include "sluice/cpu_affinity.h"
#include "sluice/listener.h"
#include "sluice/log.h"
#include "sluice/reload.h"
#include "sluice/sd_notify.h"

#include <algorithm>

namespace sluice {

namespace {

// How often retired backend slots are checked for release.
constexpr double kRetireInterval = 0.2;

} // namespace

ReloadOutcome Server::reload()
{
    ReloadOutcome outcome;
    outcome.generation = runtime_->generation;
    auto fail = [&](std::vector<std::string> errors) {
        for (const auto& e : errors)
            log::error("{}", e);
        log::error("reload failed: the running configuration stays (generation {})", runtime_->generation);
        process_.reloads_failed.fetch_add(1, std::memory_order_relaxed);
        outcome.errors = std::move(errors);
        sd_notify("READY=1");
        return outcome;
    };
    if (draining_)
        return fail({"sluice is stopping"});
    sd_notify(reloading_message());
    const std::string path = runtime_->config.path;
    log::info("reloading {}", path);

    ConfigResult loaded = load_config_file(path);
    if (!loaded.ok()) {
        std::vector<std::string> errors;
        for (const auto& e : loaded.errors)
            errors.push_back(e.to_string());
        return fail(std::move(errors));
    }

    std::string error;
    Config base = *loaded.config;
    std::shared_ptr<Runtime> next = build_runtime(apply_answers(base, resolver_.answers()), shared_->table,
                                                  runtime_.get(), &error);
    if (!next)
        return fail({error});
    // From here on a failure gives back the slots build_runtime took.
    auto release_new_slots = [&] {
        for (BackendId id : removed_backends(*next, *runtime_))
            shared_->table.free(id);
    };
    std::vector<std::string> errors;
    if (!attach_operations(*next, runtime_.get(), static_cast<unsigned>(workers_.size()), &errors)) {
        release_new_slots();
        return fail(std::move(errors));
    }

    const std::vector<int> allowed = allowed_cpus();
    std::optional<std::vector<int>> cpus = plan_worker_cpus(next->config.global.cpu_affinity,
                                                            static_cast<unsigned>(workers_.size()), allowed, &error);
    if (!cpus) {
        release_new_slots();
        return fail({error});
    }

    // New listeners get their sockets now; kept ones keep theirs.
    std::vector<std::optional<std::size_t>> kept = match_listeners(runtime_->config, next->config);
    std::vector<std::vector<ListenerHandoff>> handoffs(workers_.size());
    std::size_t opened = 0;
    for (std::size_t i = 0; i < next->config.listeners.size(); ++i) {
        if (kept[i]) {
            for (auto& worker_handoffs : handoffs)
                worker_handoffs.push_back(ListenerHandoff{&runtime_->config.listeners[*kept[i]], UniqueFd()});
            continue;
        }
        std::vector<std::vector<UniqueFd>> fds(workers_.size());
        if (!open_listener_sockets(next->config.listeners[i], next->listeners[i].bound, fds)) {
            release_new_slots();
            return fail({"listener " + next->config.listeners[i].name + ": cannot listen on "
                         + next->config.listeners[i].listen.to_string()});
        }
        for (std::size_t w = 0; w < workers_.size(); ++w)
            handoffs[w].push_back(ListenerHandoff{nullptr, std::move(fds[w][0])});
        ++opened;
    }
    std::size_t closed = 0;
    for (std::size_t c = 0; c < runtime_->config.listeners.size(); ++c) {
        if (std::find(kept.begin(), kept.end(), std::optional<std::size_t>(c)) == kept.end()) {
            log::info("listener {} on {} closed", runtime_->config.listeners[c].name,
                      runtime_->listeners[c].bound.to_string());
            ++closed;
        }
    }
    const AdminConfig& admin_before = runtime_->config.admin;
    const AdminConfig& admin_after = next->config.admin;
    if (admin_before.socket != admin_after.socket || admin_before.metrics.has_value() != admin_after.metrics.has_value()
        || (admin_before.metrics && !(*admin_before.metrics == *admin_after.metrics)))
        log::warning("reload: [admin] changes take effect at the next restart");
    const GlobalConfig& global_before = runtime_->config.global;
    const GlobalConfig& global_after = next->config.global;
    if (global_before.workers != global_after.workers || global_before.max_connections != global_after.max_connections
        || global_before.pipe_size != global_after.pipe_size || global_before.backlog != global_after.backlog
        || global_before.splice != global_after.splice)
        log::warning(
            "reload: [global] workers, max_connections, pipe_size, backlog and splice take effect at the next restart");

    // Publish. Nothing below can fail (a resolver that cannot start is logged
    // and leaves names as they were).
    publish(std::move(next), std::move(handoffs));
    bind_workers(*cpus, allowed);
    base_config_ = std::move(base);
    if (!resolver_.configure(base_config_.global, questions_of(base_config_), &error))
        log::error("{}", error);
    process_.reloads_ok.fetch_add(1, std::memory_order_relaxed);
    log::info("reload ok (generation {}): {} listeners kept, {} opened, {} closed; {} pools", runtime_->generation,
              runtime_->config.listeners.size() - opened, opened, closed, runtime_->pools.size());
    sd_notify("READY=1");
    outcome.ok = true;
    outcome.generation = runtime_->generation;
    return outcome;
}

void Server::publish(std::shared_ptr<Runtime> next, std::vector<std::vector<ListenerHandoff>> handoffs)
{
    std::vector<BackendId> removed = removed_backends(*runtime_, *next);
    if (!removed.empty()) {
        retired_.push_back(RetiredBackends{runtime_->generation, std::move(removed)});
        if (!retire_timer_.active())
            retire_timer_.start(kRetireInterval, kRetireInterval);
    }
    std::shared_ptr<const Runtime> published = next;
    for (std::size_t w = 0; w < workers_.size(); ++w)
        workers_[w]->reload(published, std::move(handoffs[w]), nullptr);
    prober_.update(published);
    admin_.update(published);
    generations_.push_back(published);
    runtime_ = std::move(next);
    log::configure(runtime_->config.global.log_level, runtime_->config.global.log_format);
    watch_service();
    refresh_ip_hash();  // anything that changed since build_runtime built the lookups
    process_.generation.store(runtime_->generation, std::memory_order_relaxed);
}

// A DNS answer changed: the same file, other addresses or discovered
// backends. Published like a reload that keeps every listener, so running
// sessions keep the address they connected to and new ones use the new one;
// kept backends (same identity) keep their slot, health and admin state.
void Server::on_names_changed()
{
    if (draining_ || !runtime_)
        return;
    std::string error;
    std::shared_ptr<Runtime> next = build_runtime(apply_answers(base_config_, resolver_.answers()), shared_->table,
                                                  runtime_.get(), &error);
    if (!next) {
        log::error("dns: the new answers are not applied: {}", error);
        return;
    }
    std::vector<std::string> errors;
    if (!attach_operations(*next, runtime_.get(), static_cast<unsigned>(workers_.size()), &errors)) {
        for (BackendId id : removed_backends(*next, *runtime_))
            shared_->table.free(id);
        for (const auto& e : errors)
            log::error("dns: the new answers are not applied: {}", e);
        return;
    }
    std::vector<std::vector<ListenerHandoff>> handoffs(workers_.size());
    for (auto& worker_handoffs : handoffs)
        for (const ListenerConfig& listener : runtime_->config.listeners)
            worker_handoffs.push_back(ListenerHandoff{&listener, UniqueFd()});
    std::size_t before = 0, after = 0;
    for (const PoolRuntime& pool : runtime_->pools)
        before += pool.backend_ids.size();
    for (const PoolRuntime& pool : next->pools)
        after += pool.backend_ids.size();
    publish(std::move(next), std::move(handoffs));
    log::info("dns: answers applied (generation {}): {} backends, {} before", runtime_->generation, after, before);
}

void Server::request_reload(std::function<void(ReloadOutcome)> reply)
{
    control_loop_.post([this, reply = std::move(reply)] { reply(reload()); });
}

// A removed backend's slot is freed once every generation that could still
// pick it (the one it was removed from, and older ones) is gone, and no
// session holds it; until then a slow worker or a connecting session of an old
// generation may still count on it.
void Server::on_retire_tick()
{
    generations_.erase(std::remove_if(generations_.begin(), generations_.end(),
                                      [](const std::weak_ptr<const Runtime>& g) { return g.expired(); }),
                       generations_.end());
    std::uint64_t oldest_alive = runtime_->generation;
    for (const auto& weak : generations_)
        if (auto generation = weak.lock())
            oldest_alive = std::min(oldest_alive, generation->generation);
    auto& table = shared_->table;
    retired_.erase(std::remove_if(retired_.begin(), retired_.end(),
                                  [&](RetiredBackends& retired) {
                                      if (retired.generation >= oldest_alive)
                                          return false;
                                      for (BackendId id : retired.ids)
                                          if (table.active(id) != 0)
                                              return false;
                                      for (BackendId id : retired.ids)
                                          table.free(id);
                                      return true;
                                  }),
                   retired_.end());
    if (retired_.empty())
        retire_timer_.stop();
}

} // namespace sluice
