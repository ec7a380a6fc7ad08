// Owners of kernel file descriptors: a socket, a pipe end, an epoll fd.
//
// Every kernel resource in sluice has exactly one owner type; code that only
// uses a descriptor borrows it as a plain int from get().
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

namespace sluice {

// Move-only owner of one file descriptor; closes it on destruction.
class UniqueFd {
public:
    UniqueFd() = default;
    explicit UniqueFd(int fd) noexcept : fd_(fd) {}
    ~UniqueFd() { reset(); }

    UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
    UniqueFd& operator=(UniqueFd&& other) noexcept
    {
        if (this != &other)
            reset(other.release());
        return *this;
    }
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;

    int get() const noexcept { return fd_; }
    bool valid() const noexcept { return fd_ >= 0; }
    explicit operator bool() const noexcept { return valid(); }

    // Gives up ownership; the caller must close the returned descriptor.
    [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }

    // Closes the current descriptor (if any) and takes ownership of fd.
    void reset(int fd = -1) noexcept;

private:
    int fd_ = -1;
};

// A kernel pipe used as the zero-copy buffer between two sockets for splice(2).
// Both ends are non-blocking and close-on-exec.
class Pipe {
public:
    Pipe() = default;

    // Creates a pipe and asks for `capacity` bytes with F_SETPIPE_SZ. A refused
    // resize (EPERM past /proc/sys/fs/pipe-max-size or the per-user quota) keeps
    // the kernel default, so capacity() is the size actually granted.
    // Returns an invalid Pipe (valid() == false) and sets errno if pipe2 fails.
    static Pipe create(std::size_t capacity);

    bool valid() const noexcept { return read_end_.valid(); }
    int read_fd() const noexcept { return read_end_.get(); }
    int write_fd() const noexcept { return write_end_.get(); }
    std::size_t capacity() const noexcept { return capacity_; }

private:
    UniqueFd read_end_;
    UniqueFd write_end_;
    std::size_t capacity_ = 0;
};

// Raises the soft RLIMIT_NOFILE to the hard limit, so thousands of sessions do
// not end in EMFILE; returns the resulting soft limit.
std::int64_t raise_fd_limit() noexcept;

} // namespace sluice
