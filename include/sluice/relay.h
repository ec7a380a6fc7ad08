// Relay: moves the bytes of one direction of a TCP session, from one socket to
// another, without looking at them.
//
// Small reads go through a buffer (read/write), large ones through a pipe
// (splice): a read of at least kShortRead bytes means the source is streaming,
// and the next read splices; a shorter one switches back. Zero-copy pays for
// bulk transfers, but for a request of a few hundred bytes splice costs as
// much as a copy and worsens the tail latency of request/response traffic
// (bench/README.md), which is why HAProxy's splice-auto makes the same choice.
//
// A direction borrows its pipe or buffer from the worker's pools only while
// bytes are in flight and gives it back when drained, so an idle session holds
// neither. Backpressure: the source is read only when nothing is pending, so a
// sink that cannot take bytes stops its source from being read.
//
// Loop thread only. No allocation, no logging: this is the per-byte path.
#pragma once

#include "sluice/pipe_pool.h"

#include <cstddef>
#include <cstdint>
#include <optional>

namespace sluice {

// The worker's pools a direction borrows from.
struct TransitPools {
    PipePool& pipes;
    BufferPool& buffers;
};

struct RelayDirection {
    // A read shorter than this emptied the socket's receive queue: once those
    // bytes are written, wait for epoll instead of trying another read that
    // would almost surely fail with EAGAIN. Request/response traffic then
    // costs one read and one write per message; bulk transfers keep looping.
    // Level-triggered epoll makes it safe (HAProxy's raw_sock does the same).
    static constexpr std::size_t kShortRead = 16 * 1024;
    // Reads per direction per event before yielding to other sessions; epoll
    // is level-triggered, so a source with more to read comes straight back.
    static constexpr int kMaxReadsPerEvent = 4;

    Pipe pipe;                       // borrowed while spliced bytes are in flight
    BufferPool::Buffer buffer;       // borrowed while copied bytes are in flight
    std::uint32_t pending = 0;       // bytes read but not yet written
    std::uint32_t buffer_offset = 0; // bytes in the buffer: next byte to write
    bool eof = false;                // FIN read from the source
    bool shut = false;               // the FIN was passed on (or left to the session's close)
    bool splice_off = false;         // splice disabled or refused: copy for good
    bool streaming = false;          // the last read was large: splice the next
    bool pending_in_pipe = false;    // where the `pending` bytes are
    std::uint64_t bytes = 0;         // bytes delivered to the sink

    bool done() const noexcept { return shut; }
    bool wants_read() const noexcept { return !eof && pending == 0; }
    bool wants_write() const noexcept { return pending > 0; }
};

enum class PumpResult : std::uint8_t { Ok, SourceFailed, SinkFailed, NoResources };

// What pump() does with the source's FIN once everything before it is written.
enum class FinAction : std::uint8_t {
    Shutdown,      // shutdown(SHUT_WR) on the sink: the other direction goes on
    LeaveToClose,  // only mark the direction done: the session is about to close
                   // the sink anyway (the other direction has ended), and that
                   // close sends the FIN, one syscall fewer
};

// Moves bytes from `source_fd` to `sink_fd` until a side would block, the
// direction ends, or `max_reads` reads were made. Returns Ok unless a socket
// failed or no buffer could be had. On return the direction is always in a
// state its watchers can wait on: bytes pending (wait for the sink), the
// source open (wait for it), or done. A FIN read on the last allowed read is
// passed on in the same call, never left waiting for an event that will not
// come.
PumpResult pump(RelayDirection& dir, int source_fd, int sink_fd, TransitPools pools, FinAction on_fin,
                int max_reads = RelayDirection::kMaxReadsPerEvent);

// Gives back the direction's pipe and buffer if nothing is pending in them.
void return_transit(RelayDirection& dir, TransitPools pools);

} // namespace sluice
