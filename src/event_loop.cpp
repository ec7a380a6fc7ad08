#include "sluice/event_loop.h"

#include <cstdlib>
#include <new>

namespace sluice {

EventLoop::EventLoop()
    // EVFLAG_NOSIGMASK: libev must not touch the signal mask; sluice blocks
    // signals in every thread and reads them from a signalfd on the main loop.
    : loop_(ev_loop_new(unsigned(EVBACKEND_EPOLL) | unsigned(EVFLAG_NOENV) | unsigned(EVFLAG_NOSIGMASK)))
    , owner_(std::this_thread::get_id())
{
    if (loop_ == nullptr)
        loop_ = ev_loop_new(unsigned(EVFLAG_AUTO) | unsigned(EVFLAG_NOSIGMASK));
    if (loop_ == nullptr)
        throw std::bad_alloc();
    ev_async_init(&wakeup_, &EventLoop::on_wakeup);
    wakeup_.data = this;
    // The wake-up watcher stays active, so run() returns only on break_loop().
    ev_async_start(loop_, &wakeup_);
}

EventLoop::~EventLoop()
{
    ev_async_stop(loop_, &wakeup_);
    ev_loop_destroy(loop_);
}

void EventLoop::run()
{
    owner_ = std::this_thread::get_id();
    ev_run(loop_, 0);
}

void EventLoop::break_loop() noexcept { ev_break(loop_, EVBREAK_ALL); }

void EventLoop::post(std::function<void()> task)
{
    {
        std::lock_guard lock(posted_mutex_);
        posted_.push_back(std::move(task));
    }
    ev_async_send(loop_, &wakeup_);
}

void EventLoop::on_wakeup(struct ev_loop*, ev_async* watcher, int)
{
    static_cast<EventLoop*>(watcher->data)->run_posted();
}

void EventLoop::run_posted()
{
    std::deque<std::function<void()>> tasks;
    {
        std::lock_guard lock(posted_mutex_);
        tasks.swap(posted_);
    }
    for (auto& task : tasks)
        task();
}

} // namespace sluice
