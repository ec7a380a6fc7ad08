// A thin C++ face on libev: one EventLoop per thread, and watcher wrappers that
// call a member function of their owner.
//
// Thread affinity: an EventLoop and its watchers belong to the thread that runs
// the loop. The only members callable from other threads are post() and
// AsyncWatcher::send(); everything else must run on the loop's thread.
#pragma once

#include <ev.h>

#include <atomic>
#include <cassert>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace sluice {

class EventLoop {
public:
    // A new epoll loop (never libev's default loop, which owns child/signal state).
    EventLoop();
    ~EventLoop();
    EventLoop(const EventLoop&) = delete;
    EventLoop& operator=(const EventLoop&) = delete;

    struct ev_loop* raw() const noexcept { return loop_; }

    // Runs until break_loop(). Records the running thread for in_loop_thread().
    void run();
    // Loop thread only: makes run() return after the current iteration.
    void break_loop() noexcept;

    // The loop's cached time (seconds, monotonic-ish) as of this iteration.
    ev_tstamp now() const noexcept { return ev_now(loop_); }
    void update_now() noexcept { ev_now_update(loop_); }

    // The loop's thread: before run(), the thread that made the loop; while
    // it runs, the thread running it; after run() returned, any thread (the
    // one tearing its watchers down, once the running thread was joined).
    bool in_loop_thread() const noexcept
    {
        return owner_ == std::thread::id() || std::this_thread::get_id() == owner_;
    }
    // Debug builds: aborts unless in_loop_thread(). For methods documented
    // "loop thread".
    void assert_loop_thread() const noexcept { assert(in_loop_thread()); }

    // Any thread: the CPU time the loop's thread has used (user + system,
    // seconds), as read at the start of the latest loop iteration.
    double cpu_seconds() const noexcept
    {
        return static_cast<double>(cpu_ns_.load(std::memory_order_relaxed)) / 1e9;
    }

    // Any thread: queues `task` to run on the loop's thread and wakes it.
    // Not for the data path (allocates); for control hand-offs.
    void post(std::function<void()> task);

private:
    static void on_wakeup(struct ev_loop* loop, ev_async* watcher, int revents);
    static void on_yield_point(struct ev_loop* loop, ev_prepare* watcher, int revents);
    void run_posted();

    struct ev_loop* loop_;
    std::thread::id owner_;
    ev_async wakeup_;
    ev_prepare yield_point_;  // a scheduler checkpoint per iteration (on_yield_point)
    std::atomic<std::uint64_t> cpu_ns_{0};  // what the latest yield point read
    std::mutex posted_mutex_;
    std::deque<std::function<void()>> posted_;
};

// Watches one fd for EV_READ and/or EV_WRITE; calls (owner->*Method)(revents).
class IoWatcher {
public:
    IoWatcher() { ev_init(&io_, nullptr); }
    ~IoWatcher() { stop(); }
    IoWatcher(const IoWatcher&) = delete;
    IoWatcher& operator=(const IoWatcher&) = delete;

    template <typename Owner, void (Owner::*Method)(int)>
    void bind(EventLoop& loop, Owner* owner, int fd)
    {
        loop_ = loop.raw();
        io_.data = owner;
        auto* callback = &thunk<Owner, Method>;  // macro-safe: no comma in the call
        ev_io_init(&io_, callback, fd, 0);
    }

    // Sets the wanted events; 0 stops watching. Cheap when nothing changes.
    void set_events(int events) noexcept
    {
        if (events == this->events())
            return;
        if (ev_is_active(&io_))
            ev_io_stop(loop_, &io_);
        ev_io_set(&io_, io_.fd, events);
        if (events != 0)
            ev_io_start(loop_, &io_);
    }
    int events() const noexcept { return ev_is_active(&io_) ? (io_.events & (EV_READ | EV_WRITE)) : 0; }
    void stop() noexcept
    {
        if (loop_ && ev_is_active(&io_))
            ev_io_stop(loop_, &io_);
    }
    int fd() const noexcept { return io_.fd; }

private:
    template <typename Owner, void (Owner::*Method)(int)>
    static void thunk(struct ev_loop*, ev_io* w, int revents)
    {
        (static_cast<Owner*>(w->data)->*Method)(revents);
    }

    struct ev_loop* loop_ = nullptr;
    ev_io io_;
};

// Wakes its loop from any thread and calls (owner->*Method)() there. Sends
// that arrive before the call coalesce into one; a send before start() is lost.
class AsyncWatcher {
public:
    AsyncWatcher() { ev_init(&async_, nullptr); }
    ~AsyncWatcher() { stop(); }
    AsyncWatcher(const AsyncWatcher&) = delete;
    AsyncWatcher& operator=(const AsyncWatcher&) = delete;

    // Loop thread.
    template <typename Owner, void (Owner::*Method)()>
    void bind(EventLoop& loop, Owner* owner)
    {
        loop_ = loop.raw();
        async_.data = owner;
        auto* callback = &thunk<Owner, Method>;
        ev_async_init(&async_, callback);
    }
    void start() noexcept { ev_async_start(loop_, &async_); }
    void stop() noexcept
    {
        if (loop_ && ev_is_active(&async_))
            ev_async_stop(loop_, &async_);
    }
    // Any thread; async-signal-safe, no allocation. Writes the loop's wakeup
    // descriptor only when no send is pending yet.
    void send() noexcept { ev_async_send(loop_, &async_); }

private:
    template <typename Owner, void (Owner::*Method)()>
    static void thunk(struct ev_loop*, ev_async* w, int)
    {
        (static_cast<Owner*>(w->data)->*Method)();
    }

    struct ev_loop* loop_ = nullptr;
    ev_async async_;
};

// A one-shot or repeating timer; calls (owner->*Method)().
class TimerWatcher {
public:
    TimerWatcher() { ev_init(&timer_, nullptr); }
    ~TimerWatcher() { stop(); }
    TimerWatcher(const TimerWatcher&) = delete;
    TimerWatcher& operator=(const TimerWatcher&) = delete;

    template <typename Owner, void (Owner::*Method)()>
    void bind(EventLoop& loop, Owner* owner)
    {
        loop_ = loop.raw();
        timer_.data = owner;
        auto* callback = &thunk<Owner, Method>;
        ev_init(&timer_, callback);
    }

    // (Re)starts: fires after `after` seconds, then every `repeat` (0 = once).
    // An expiry still queued from this loop iteration is dropped (see stop()).
    void start(ev_tstamp after, ev_tstamp repeat = 0.) noexcept
    {
        ev_timer_stop(loop_, &timer_);
        ev_timer_set(&timer_, after, repeat);
        ev_timer_start(loop_, &timer_);
    }
    // Unconditional on purpose: a one-shot timer that has expired is already
    // inactive but may still be pending (queued to call back later in this
    // loop iteration); ev_timer_stop clears that too, so no callback reaches
    // an owner that stopped it or was destroyed. A no-op otherwise.
    void stop() noexcept
    {
        if (loop_)
            ev_timer_stop(loop_, &timer_);
    }
    bool active() const noexcept { return ev_is_active(&timer_); }

private:
    template <typename Owner, void (Owner::*Method)()>
    static void thunk(struct ev_loop*, ev_timer* w, int)
    {
        (static_cast<Owner*>(w->data)->*Method)();
    }

    struct ev_loop* loop_ = nullptr;
    ev_timer timer_;
};

} // namespace sluice
