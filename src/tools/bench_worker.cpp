#include "bench_worker.h"

#include "bench_clients.h"
#include "runtime.h"

#include <algorithm>

namespace sluice::tools {

namespace {

constexpr double kPublishSeconds = 0.05;

double seconds_until(std::uint64_t deadline_ns, std::uint64_t now_ns) noexcept
{
    return deadline_ns > now_ns ? static_cast<double>(deadline_ns - now_ns) * 1e-9 : 0.0;
}

} // namespace

BenchWorker::BenchWorker(const BenchOptions& options, unsigned first_client, unsigned client_count,
                         std::uint64_t origin_ns)
    : options_(options)
    , origin_ns_(origin_ns)
    , window_start_(origin_ns + static_cast<std::uint64_t>(options.warmup.count()))
    , window_end_(window_start_ + static_cast<std::uint64_t>(options.duration.count()))
    , scratch_(std::make_unique<std::byte[]>(kScratchSize))
    , stream_chunk_(std::make_unique<std::byte[]>(options.size))
{
    for (std::size_t i = 0; i < options.size; ++i)
        stream_chunk_[i] = static_cast<std::byte>('a' + i % 26);
    clients_.reserve(client_count);
    for (unsigned i = 0; i < client_count; ++i)
        clients_.push_back(BenchClient::create(*this, first_client + i));
    window_end_timer_.bind<BenchWorker, &BenchWorker::on_window_end>(loop_, this);
    sweep_timer_.bind<BenchWorker, &BenchWorker::on_sweep>(loop_, this);
    publish_timer_.bind<BenchWorker, &BenchWorker::on_publish>(loop_, this);
}

BenchWorker::~BenchWorker() = default;

void BenchWorker::run()
{
    // The loop's cached time dates from its creation on the main thread.
    loop_.update_now();
    const std::uint64_t now = monotonic_ns();
    window_end_timer_.start(seconds_until(window_end_, now));
    // A tenth of the timeout keeps a timeout's error under 10 %, and a sweep
    // over a few thousand clients every few ms costs next to nothing.
    const double sweep = std::clamp(static_cast<double>(options_.timeout.count()) * 1e-10, 0.001, 0.1);
    sweep_timer_.start(sweep, sweep);
    publish_timer_.start(kPublishSeconds, kPublishSeconds);
    for (auto& client : clients_)
        client->start();

    loop_.run();

    // Clients own watchers of this loop: destroy them on its thread.
    clients_.clear();
    window_end_timer_.stop();
    sweep_timer_.stop();
    publish_timer_.stop();
    on_publish();
    finished_.store(true, std::memory_order_release);
}

void BenchWorker::stop()
{
    loop_.post([this] { end_run(monotonic_ns()); });
}

LiveCounters BenchWorker::live() const noexcept
{
    return LiveCounters{
        live_requests_.load(std::memory_order_relaxed),
        live_errors_.load(std::memory_order_relaxed),
        live_bytes_received_.load(std::memory_order_relaxed),
    };
}

void BenchWorker::on_window_end() { end_run(monotonic_ns()); }

void BenchWorker::end_run(std::uint64_t now_ns)
{
    // Early (SIGINT) or a hair early (libev's cached time): the window ends now.
    window_end_ = std::min(window_end_, now_ns);
    loop_.break_loop();
}

void BenchWorker::on_sweep()
{
    const std::uint64_t now = monotonic_ns();
    for (auto& client : clients_)
        client->check_timeout(now);
}

void BenchWorker::on_publish()
{
    // The progress line shows warm-up traffic too, so both sets are summed.
    live_requests_.store(stats_.requests + discarded_.requests, std::memory_order_relaxed);
    live_errors_.store(stats_.total_errors() + discarded_.total_errors(), std::memory_order_relaxed);
    live_bytes_received_.store(stats_.bytes_received + discarded_.bytes_received, std::memory_order_relaxed);
}

} // namespace sluice::tools
