#include "sluice/pipe_pool.h"

namespace sluice {

Pipe PipePool::acquire()
{
    Pipe pipe;
    if (!idle_.empty()) {
        pipe = std::move(idle_.back());
        idle_.pop_back();
    } else {
        pipe = Pipe::create(pipe_size_);
    }
    return pipe;
}

void PipePool::release(Pipe pipe)
{
    if (pipe.valid() && idle_.size() < max_idle_)
        idle_.push_back(std::move(pipe));
}

BufferPool::Buffer BufferPool::acquire()
{
    if (idle_.empty())
        return Buffer(new (std::nothrow) char[kBufferSize]);
    Buffer buffer = std::move(idle_.back());
    idle_.pop_back();
    return buffer;
}

void BufferPool::release(Buffer buffer)
{
    if (buffer && idle_.size() < max_idle_)
        idle_.push_back(std::move(buffer));
}

} // namespace sluice
