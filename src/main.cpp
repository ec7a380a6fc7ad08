// sluice: wiring only. Parsing, policy and I/O live in their modules.
#include "sluice/cli.h"
#include "sluice/config.h"
#include "sluice/cpu_affinity.h"
#include "sluice/log.h"
#include "sluice/server.h"

#include <cstdio>
#include <cstdlib>
#include <fmt/format.h>

#ifndef SLUICE_VERSION
#define SLUICE_VERSION "unknown"
#endif

int main(int argc, char** argv)
{
    using sluice::CommandLine;
    CommandLine cmd = sluice::parse_command_line(std::vector<std::string>(argv + 1, argv + argc));
    switch (cmd.action) {
    case CommandLine::Action::Help:
        fmt::print("{}", sluice::usage_text());
        return 0;
    case CommandLine::Action::Version:
        fmt::print("sluice {}\n", SLUICE_VERSION);
        return 0;
    case CommandLine::Action::Error:
        fmt::print(stderr, "sluice: {}\n{}", cmd.error, sluice::usage_text());
        return 2;
    case CommandLine::Action::Check:
    case CommandLine::Action::Run:
        break;
    }

    sluice::ConfigResult loaded = sluice::load_config_file(cmd.config_path);
    for (const auto& error : loaded.errors)
        fmt::print(stderr, "{}\n", error.to_string());
    if (!loaded.ok())
        return 1;
    if (cmd.action == CommandLine::Action::Check) {
        // What only this machine can answer: are the listed CPUs here?
        const sluice::GlobalConfig& global = loaded.config->global;
        std::string error;
        if (!sluice::plan_worker_cpus(global.cpu_affinity, sluice::effective_workers(global.workers),
                                      sluice::allowed_cpus(), &error)) {
            fmt::print(stderr, "{}: {}\n", cmd.config_path, error);
            return 1;
        }
        fmt::print(stderr, "{}: configuration is valid\n", cmd.config_path);
        return 0;
    }

    if (cmd.debug)
        sluice::log::pin_debug();
    sluice::log::set_priority_prefix(sluice::log::is_journal_stream(std::getenv("JOURNAL_STREAM"), 2));
    sluice::log::configure(loaded.config->global.log_level, loaded.config->global.log_format);
    sluice::Server server(std::move(*loaded.config));
    return server.run();
}
