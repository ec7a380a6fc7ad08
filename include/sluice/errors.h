// System errors as values.
//
// errno is classified once, in the syscall wrappers, into SysError. The data path
// branches on this small enum; EAGAIN, resets, refusals and EMFILE are normal
// traffic there, counted and handled, never exceptions.
#pragma once

#include <cstdint>
#include <string_view>
#include <utility>

namespace sluice {

enum class SysError : std::uint8_t {
    None = 0,
    WouldBlock,         // EAGAIN / EWOULDBLOCK
    Interrupted,        // EINTR
    InProgress,         // EINPROGRESS (non-blocking connect started)
    ConnectionRefused,  // ECONNREFUSED
    ConnectionReset,    // ECONNRESET
    BrokenPipe,         // EPIPE
    TimedOut,           // ETIMEDOUT
    Unreachable,        // ENETUNREACH / EHOSTUNREACH / ENETDOWN
    AddressNotAvailable,// EADDRNOTAVAIL: on connect, no free local port
    TooManyFiles,       // EMFILE / ENFILE
    NoBuffers,          // ENOBUFS / ENOMEM
    AddressInUse,       // EADDRINUSE
    PermissionDenied,   // EACCES / EPERM
    Invalid,            // EINVAL: e.g. splice on a descriptor that does not support it
    Other,
};

// Maps an errno value to its class.
SysError classify_errno(int err) noexcept;

// A short human text for logs ("connection refused").
std::string_view describe(SysError error) noexcept;

// True for errors that say this host ran out of something (descriptors,
// memory, local ports), not that a peer misbehaved. A backend is never blamed
// for them: the client is turned away instead, and service resumes by itself
// once the resource frees up.
constexpr bool is_local_resource_error(SysError error) noexcept
{
    return error == SysError::TooManyFiles || error == SysError::NoBuffers
        || error == SysError::AddressNotAvailable;
}

// A value or a SysError. Small, no exceptions, for syscall wrappers.
template <typename T>
class Result {
public:
    Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
    Result(SysError error, int raw_errno) : error_(error), raw_errno_(raw_errno) {}

    bool ok() const noexcept { return error_ == SysError::None; }
    explicit operator bool() const noexcept { return ok(); }
    SysError error() const noexcept { return error_; }
    int raw_errno() const noexcept { return raw_errno_; }
    T& value() & { return value_; }
    T&& value() && { return std::move(value_); }
    const T& value() const& { return value_; }

private:
    T value_{};
    SysError error_ = SysError::None;
    int raw_errno_ = 0;
};

// Builds a failed Result from the current errno.
template <typename T>
Result<T> errno_result();

} // namespace sluice

#include <cerrno>

template <typename T>
sluice::Result<T> sluice::errno_result()
{
    int err = errno;
    return Result<T>(classify_errno(err), err);
}
