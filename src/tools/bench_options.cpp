#include "bench_options.h"

#include "args.h"

#include <fmt/format.h>

#include <algorithm>

namespace sluice::tools {

std::string_view mode_name(BenchMode mode) noexcept
{
    switch (mode) {
    case BenchMode::Connect: return "connect";
    case BenchMode::Rr: return "rr";
    case BenchMode::Stream: return "stream";
    case BenchMode::Udp: return "udp";
    }
    return "rr";
}

const char* const kBenchUsage =
    "usage: sluice-bench --target ADDR [--mode connect|rr|stream|udp] [--concurrency N]\n"
    "                    [--duration D] [--warmup D] [--rate R] [--size BYTES] [--threads T]\n"
    "                    [--timeout D] [--json]\n"
    "\n"
    "Load generator for sluice and its backends; the target must echo (sluice-echo).\n"
    "  --target ADDR       host:port or [v6]:port to load\n"
    "  --mode MODE         connect: connections/s (connect, send SIZE, read SIZE back, close)\n"
    "                      rr (default): request/response on persistent connections: req/s, latency\n"
    "                      stream: bulk writes of SIZE chunks; Gbit/s of bytes echoed back\n"
    "                      udp: one datagram at a time per client: queries/s, loss, latency\n"
    "  --concurrency N     connections or UDP clients in total (default 10)\n"
    "  --duration D        measured time, e.g. 10s, 500ms, 2m (default 10s)\n"
    "  --warmup D          load before measuring starts, not counted (default 0s)\n"
    "  --rate R            total requests/s, open loop; latency counts from the intended\n"
    "                      send time (connect, rr, udp; default: closed loop)\n"
    "  --size BYTES        request/datagram size, stream write size: 64, 16k, 1M\n"
    "                      (default 64; stream 64k)\n"
    "  --threads T         event-loop threads the clients are spread over (default 1)\n"
    "  --timeout D         no reply (or connect) within D is an error (default 5s; udp 1s)\n"
    "  --json              one JSON object on stdout instead of the summary\n"
    "\n"
    "Exit status: 0 when the run happened (even with errors), 2 for bad arguments.\n";

namespace {

bool takes_value(std::string_view flag)
{
    return flag == "--target" || flag == "--mode" || flag == "--concurrency" || flag == "--duration"
        || flag == "--warmup" || flag == "--rate" || flag == "--size" || flag == "--threads" || flag == "--timeout";
}

} // namespace

BenchParseResult parse_bench_options(int argc, char** argv)
{
    BenchParseResult result;
    BenchOptions& options = result.options;
    bool have_target = false;
    bool have_size = false;
    bool have_timeout = false;
    ArgCursor args(argc, argv);
    auto fail = [&](std::string message) {
        result.error = std::move(message);
        return result;
    };
    while (!args.done()) {
        std::string_view flag = args.next_flag();
        if (flag == "--help" || flag == "-h") {
            result.help = true;
            return result;
        }
        if (flag == "--json") {
            options.json = true;
            continue;
        }
        if (!takes_value(flag))
            return fail(fmt::format("unknown flag {}", flag));
        auto value = args.value();
        if (!value)
            return fail(missing_value_message(flag));
        const std::string_view text = *value;

        if (flag == "--target") {
            auto address = SocketAddress::parse(text);
            if (!address || address->port() == 0)
                return fail(bad_value_message(flag, text, "an address like 127.0.0.1:9000 or [::1]:9000"));
            options.target = *address;
            options.target_text = std::string(text);
            have_target = true;
        } else if (flag == "--mode") {
            if (text == "connect")
                options.mode = BenchMode::Connect;
            else if (text == "rr")
                options.mode = BenchMode::Rr;
            else if (text == "stream")
                options.mode = BenchMode::Stream;
            else if (text == "udp")
                options.mode = BenchMode::Udp;
            else
                return fail(bad_value_message(flag, text, "connect, rr, stream or udp"));
        } else if (flag == "--concurrency") {
            auto n = parse_count(text, 1, 1'000'000);
            if (!n)
                return fail(bad_value_message(flag, text, "a client count from 1 to 1000000"));
            options.concurrency = static_cast<unsigned>(*n);
        } else if (flag == "--threads") {
            auto n = parse_count(text, 1, 1024);
            if (!n)
                return fail(bad_value_message(flag, text, "a thread count from 1 to 1024"));
            options.threads = static_cast<unsigned>(*n);
        } else if (flag == "--duration" || flag == "--warmup" || flag == "--timeout") {
            auto d = parse_duration(text);
            bool positive_needed = flag != "--warmup";
            if (!d || (positive_needed && d->count() <= 0))
                return fail(bad_value_message(flag, text,
                                              positive_needed ? "a positive duration like 10s or 500ms"
                                                              : "a duration like 2s or 0s"));
            if (flag == "--duration")
                options.duration = *d;
            else if (flag == "--warmup")
                options.warmup = *d;
            else {
                options.timeout = *d;
                have_timeout = true;
            }
        } else if (flag == "--rate") {
            auto r = parse_count(text, 1, 1'000'000'000);
            if (!r)
                return fail(bad_value_message(flag, text, "requests per second, e.g. 5000 or 20k"));
            options.rate = static_cast<double>(*r);
        } else if (flag == "--size") {
            auto s = parse_size(text);
            if (!s || *s == 0 || *s > kMaxTcpSize)
                return fail(bad_value_message(flag, text, "a byte count from 1 to 16M, e.g. 64 or 16k"));
            options.size = static_cast<std::size_t>(*s);
            have_size = true;
        }
    }

    if (!have_target)
        return fail("--target is required");
    if (!have_size && options.mode == BenchMode::Stream)
        options.size = 64 * 1024;
    if (options.mode == BenchMode::Udp && options.size > kMaxUdpSize)
        return fail(fmt::format("--size: a UDP datagram carries at most {} bytes, got {}", kMaxUdpSize, options.size));
    if (options.rate > 0 && options.mode == BenchMode::Stream)
        return fail("--rate does not apply to --mode stream (it sends as fast as it can)");
    if (!have_timeout)
        options.timeout = options.mode == BenchMode::Udp ? std::chrono::seconds(1) : std::chrono::seconds(5);
    options.threads = std::min(options.threads, options.concurrency);
    return result;
}

} // namespace sluice::tools
