#include "sluice/errors.h"

#include <cerrno>

namespace sluice {

SysError classify_errno(int err) noexcept
{
    switch (err) {
    case 0: return SysError::None;
    case EAGAIN: return SysError::WouldBlock;
#if EWOULDBLOCK != EAGAIN
    case EWOULDBLOCK: return SysError::WouldBlock;
#endif
    case EINTR: return SysError::Interrupted;
    case EINPROGRESS: return SysError::InProgress;
    case ECONNREFUSED: return SysError::ConnectionRefused;
    case ECONNRESET: return SysError::ConnectionReset;
    case EPIPE: return SysError::BrokenPipe;
    case ETIMEDOUT: return SysError::TimedOut;
    case ENETUNREACH:
    case EHOSTUNREACH:
    case ENETDOWN: return SysError::Unreachable;
    case EADDRNOTAVAIL: return SysError::AddressNotAvailable;
    case EMFILE:
    case ENFILE: return SysError::TooManyFiles;
    case ENOBUFS:
    case ENOMEM: return SysError::NoBuffers;
    case EADDRINUSE: return SysError::AddressInUse;
    case EACCES:
    case EPERM: return SysError::PermissionDenied;
    case EINVAL: return SysError::Invalid;
    default: return SysError::Other;
    }
}

std::string_view describe(SysError error) noexcept
{
    switch (error) {
    case SysError::None: return "ok";
    case SysError::WouldBlock: return "would block";
    case SysError::Interrupted: return "interrupted";
    case SysError::InProgress: return "in progress";
    case SysError::ConnectionRefused: return "connection refused";
    case SysError::ConnectionReset: return "connection reset";
    case SysError::BrokenPipe: return "broken pipe";
    case SysError::TimedOut: return "timed out";
    case SysError::Unreachable: return "unreachable";
    case SysError::AddressNotAvailable: return "address not available";
    case SysError::TooManyFiles: return "too many open files";
    case SysError::NoBuffers: return "out of buffers";
    case SysError::AddressInUse: return "address in use";
    case SysError::PermissionDenied: return "permission denied";
    case SysError::Invalid: return "invalid argument";
    case SysError::Other: return "system error";
    }
    return "system error";
}

} // namespace sluice
