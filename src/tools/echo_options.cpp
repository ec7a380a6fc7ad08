#include "echo_options.h"

#include "args.h"

#include <fmt/format.h>

namespace sluice::tools {

const char* const kEchoUsage =
    "usage: sluice-echo --listen ADDR [--name NAME] [--udp] [--mode echo|whoami|sink|source] [--threads N]\n"
    "\n"
    "A small, fast backend for demos, tests and benchmarks.\n"
    "  --listen ADDR   address to bind, e.g. 127.0.0.1:9000, [::1]:9000; port 0 picks a free port\n"
    "  --name NAME     what whoami mode answers (default: the bound address)\n"
    "  --udp           serve UDP datagrams instead of TCP connections\n"
    "  --mode MODE     echo (default): send every byte back\n"
    "                  whoami: send \"NAME\\n\" first (UDP: before each reply), then echo\n"
    "                  sink: read and discard\n"
    "                  source: write an endless stream of a..z (TCP only)\n"
    "  --threads N     event-loop threads, each with its own SO_REUSEPORT socket (default 1)\n"
    "\n"
    "Prints \"listening on IP:PORT\" once bound. SIGTERM or SIGINT exits 0.\n";

EchoParseResult parse_echo_options(int argc, char** argv)
{
    EchoParseResult result;
    EchoOptions& options = result.options;
    bool have_listen = false;
    ArgCursor args(argc, argv);
    while (!args.done()) {
        std::string_view flag = args.next_flag();
        if (flag == "--help" || flag == "-h") {
            result.help = true;
            return result;
        }
        if (flag == "--udp") {
            options.udp = true;
            continue;
        }
        if (flag != "--listen" && flag != "--name" && flag != "--mode" && flag != "--threads") {
            result.error = fmt::format("unknown flag {}", flag);
            return result;
        }
        auto value = args.value();
        if (!value) {
            result.error = missing_value_message(flag);
            return result;
        }
        if (flag == "--listen") {
            auto address = SocketAddress::parse(*value);
            if (!address) {
                result.error = bad_value_message(flag, *value, "an address like 127.0.0.1:9000 or [::1]:0");
                return result;
            }
            options.listen = *address;
            have_listen = true;
        } else if (flag == "--name") {
            // The greeting must fit a connection's echo buffer with room to spare.
            if (value->empty() || value->size() > kMaxEchoNameLength) {
                result.error = bad_value_message(flag, *value, fmt::format("a name of 1 to {} bytes", kMaxEchoNameLength));
                return result;
            }
            options.name = std::string(*value);
        } else if (flag == "--mode") {
            if (*value == "echo")
                options.mode = EchoMode::Echo;
            else if (*value == "whoami")
                options.mode = EchoMode::Whoami;
            else if (*value == "sink")
                options.mode = EchoMode::Sink;
            else if (*value == "source")
                options.mode = EchoMode::Source;
            else {
                result.error = bad_value_message(flag, *value, "echo, whoami, sink or source");
                return result;
            }
        } else {
            auto threads = parse_count(*value, 1, 1024);
            if (!threads) {
                result.error = bad_value_message(flag, *value, "a thread count from 1 to 1024");
                return result;
            }
            options.threads = static_cast<unsigned>(*threads);
        }
    }
    if (!have_listen)
        result.error = "--listen is required";
    else if (options.udp && options.mode == EchoMode::Source)
        result.error = "--mode source is TCP only (drop --udp)";
    return result;
}

} // namespace sluice::tools
