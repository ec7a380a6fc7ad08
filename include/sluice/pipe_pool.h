// Per-worker pools of splice pipes and fallback buffers.
//
// A session borrows a pipe (or, where splice cannot be used, a buffer) only
// while bytes are in flight in one direction and gives it back as soon as that
// direction is drained, so an idle session holds neither. Loop thread only.
#pragma once

#include "sluice/fd.h"

#include <cstddef>
#include <memory>
#include <vector>

namespace sluice {

class PipePool {
public:
    // `pipe_size`: bytes asked per pipe (F_SETPIPE_SZ); `max_idle`: pipes kept
    // open for reuse, the rest are closed when returned.
    PipePool(std::size_t pipe_size, std::size_t max_idle) : pipe_size_(pipe_size), max_idle_(max_idle) {}

    // An empty pipe, or an invalid Pipe (errno set) when none can be created,
    // e.g. at the file-descriptor limit.
    Pipe acquire();
    // Takes back a pipe. The caller guarantees it is empty (a pipe that still
    // holds bytes is simply destroyed instead).
    void release(Pipe pipe);

    std::size_t idle() const noexcept { return idle_.size(); }

private:
    std::size_t pipe_size_;
    std::size_t max_idle_;
    std::vector<Pipe> idle_;
};

// The bounded user-space buffer used where splice(2) cannot be.
class BufferPool {
public:
    static constexpr std::size_t kBufferSize = 64 * 1024;
    using Buffer = std::unique_ptr<char[]>;

    explicit BufferPool(std::size_t max_idle) : max_idle_(max_idle) {}
    Buffer acquire();
    void release(Buffer buffer);

    std::size_t idle() const noexcept { return idle_.size(); }

private:
    std::size_t max_idle_;
    std::vector<Buffer> idle_;
};

} // namespace sluice
