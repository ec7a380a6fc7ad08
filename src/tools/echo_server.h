// sluice-echo's server: one worker per thread.
//
// Each EchoWorker owns an EventLoop and one SO_REUSEPORT socket bound to the
// shared address, so the kernel spreads connections (or UDP flows) over the
// threads. Nothing is shared between workers.
#pragma once

#include "echo_options.h"
#include "sluice/event_loop.h"
#include "sluice/fd.h"

#include <memory>
#include <string>

namespace sluice::tools {

// Per connection echo buffer: a connection stops reading while this much is
// waiting to be written back (backpressure), so memory per connection is bounded.
inline constexpr std::size_t kEchoBufferSize = 64 * 1024;
// The largest UDP payload over IPv4 (65535 - 8 UDP - 20 IP header bytes).
inline constexpr std::size_t kMaxUdpPayload = 65507;

class TcpEchoServer;
class UdpEchoServer;

// One thread's server. Construct on any thread, then call run() on the thread
// that is to own it; stop() may be called from any thread.
class EchoWorker {
public:
    EchoWorker(const EchoOptions& options, std::string name, UniqueFd socket);
    ~EchoWorker();
    EchoWorker(const EchoWorker&) = delete;
    EchoWorker& operator=(const EchoWorker&) = delete;

    // Loop thread: serves until stop(). Connections still open are closed on
    // return.
    void run();
    // Any thread: asks run() to return.
    void stop();

private:
    EventLoop loop_;
    std::unique_ptr<TcpEchoServer> tcp_;
    std::unique_ptr<UdpEchoServer> udp_;
};

} // namespace sluice::tools
