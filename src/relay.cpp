#include "sluice/relay.h"

#include "sluice/socket.h"

#include <sys/socket.h>

namespace sluice {

namespace {

// Borrows the pipe (when `via_pipe`) or the buffer the next read goes into;
// returns where it went (a pipe that cannot be had means copying for good).
// nullopt: not even a buffer. Called with nothing pending, so the transit not
// chosen is empty: it goes back, or a direction switching modes would hold a
// pipe and a buffer.
std::optional<bool> borrow_transit(RelayDirection& dir, TransitPools pools, bool via_pipe)
{
    if (via_pipe) {
        if (!dir.pipe.valid())
            dir.pipe = pools.pipes.acquire();
        if (dir.pipe.valid()) {
            if (dir.buffer)
                pools.buffers.release(std::move(dir.buffer));
            return true;
        }
        // No pipe (descriptor limit): this direction copies through a buffer.
        dir.splice_off = true;
    }
    if (dir.pipe.valid())
        pools.pipes.release(std::move(dir.pipe));
    if (!dir.buffer)
        dir.buffer = pools.buffers.acquire();
    if (!dir.buffer)
        return std::nullopt;
    return false;
}

} // namespace

void return_transit(RelayDirection& dir, TransitPools pools)
{
    if (dir.pending != 0)
        return;
    if (dir.pipe.valid())
        pools.pipes.release(std::move(dir.pipe));
    if (dir.buffer)
        pools.buffers.release(std::move(dir.buffer));
}

PumpResult pump(RelayDirection& dir, int source_fd, int sink_fd, TransitPools pools, FinAction on_fin, int max_reads)
{
    bool source_drained = false;  // this call read the source dry (short read)
    int reads = 0;
    // Every path out of this loop leaves the direction waiting on something
    // epoll will report (pending bytes: the sink; source open: the source) or
    // done. The read budget is checked only before a read, after any FIN
    // already read was passed on: a FIN read by the last allowed read once
    // left a session hanging forever with nothing to wait for.
    for (;;) {
        if (dir.pending > 0) {
            IoResult w = dir.pending_in_pipe
                ? splice_some(dir.pipe.read_fd(), sink_fd, dir.pending)
                : write_some(sink_fd, dir.buffer.get() + dir.buffer_offset, dir.pending);
            if (!w.ok()) [[unlikely]] {
                if (w.would_block())
                    return PumpResult::Ok;  // the sink is full: stop reading the source
                if (w.error == SysError::Interrupted)
                    continue;
                return PumpResult::SinkFailed;
            }
            auto written = static_cast<std::uint32_t>(w.bytes);
            dir.pending -= written;
            dir.buffer_offset = dir.pending > 0 ? dir.buffer_offset + written : 0;
            dir.bytes += written;
            continue;
        }
        if (dir.eof) {
            // Everything before the FIN is delivered: pass the FIN on.
            return_transit(dir, pools);
            if (!dir.shut) {
                if (on_fin == FinAction::Shutdown)
                    ::shutdown(sink_fd, SHUT_WR);
                dir.shut = true;
            }
            return PumpResult::Ok;
        }
        if (source_drained || reads == max_reads) {
            return_transit(dir, pools);  // idle until epoll says otherwise
            return PumpResult::Ok;
        }
        std::optional<bool> via_pipe = borrow_transit(dir, pools, dir.streaming && !dir.splice_off);
        if (!via_pipe) [[unlikely]]
            return PumpResult::NoResources;
        // Read only into an empty pipe: then EAGAIN can only mean "no data",
        // never "pipe full" (splice returns EAGAIN for both, and a pipe can be
        // full of partly filled pages long before `capacity` bytes).
        ++reads;
        IoResult r = *via_pipe ? splice_some(source_fd, dir.pipe.write_fd(), dir.pipe.capacity())
                               : read_some(source_fd, dir.buffer.get(), BufferPool::kBufferSize);
        if (r.ok()) {
            if (r.bytes == 0) {
                dir.eof = true;
            } else {
                dir.pending = static_cast<std::uint32_t>(r.bytes);
                dir.pending_in_pipe = *via_pipe;
                source_drained = dir.pending < RelayDirection::kShortRead;
                dir.streaming = !source_drained;
            }
            continue;
        }
        if (r.would_block()) {
            return_transit(dir, pools);  // idle: hold no pipe, no buffer
            return PumpResult::Ok;
        }
        if (r.error == SysError::Interrupted)
            continue;
        if (r.error == SysError::Invalid && *via_pipe) [[unlikely]] {
            // The kernel cannot splice from this socket: copy through a buffer.
            return_transit(dir, pools);
            dir.splice_off = true;
            continue;
        }
        return PumpResult::SourceFailed;
    }
}

} // namespace sluice
