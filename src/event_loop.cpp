#include "sluice/event_loop.h"

#include <cstdlib>
#include <ctime>
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
    ev_prepare_init(&yield_point_, &EventLoop::on_yield_point);
    yield_point_.data = this;
    ev_prepare_start(loop_, &yield_point_);
    ev_unref(loop_);  // the yield point alone must not keep run() going
}

EventLoop::~EventLoop()
{
    ev_ref(loop_);
    ev_prepare_stop(loop_, &yield_point_);
    ev_async_stop(loop_, &wakeup_);
    ev_loop_destroy(loop_);
}

void EventLoop::run()
{
    owner_ = std::this_thread::get_id();
    ev_run(loop_, 0);
    owner_ = std::thread::id();  // stopped: whoever tears it down owns it
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

void EventLoop::on_yield_point(struct ev_loop*, ev_prepare* watcher, int)
{
    // Runs once per loop iteration, before the loop polls again: a preemption
    // point. On kernels without involuntary preemption, two busy workers
    // stacked on one CPU would take turns only at the timer tick (4-8 ms);
    // reading this thread's CPU clock is a system call that lets the
    // scheduler switch at the end of our slice instead. The measurements are
    // in bench/README.md, "The 4 ms tail".
    // What it reads is kept for cpu_seconds().
    timespec cpu_time{};
    if (::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu_time) == 0)
        static_cast<EventLoop*>(watcher->data)
            ->cpu_ns_.store(static_cast<std::uint64_t>(cpu_time.tv_sec) * 1'000'000'000u
                                + static_cast<std::uint64_t>(cpu_time.tv_nsec),
                            std::memory_order_relaxed);
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
