// The systemd notify protocol (sd_notify(3)), by hand: one datagram to the
// AF_UNIX socket named by $NOTIFY_SOCKET ("@name" = abstract namespace).
// Without NOTIFY_SOCKET every call is a no-op, so sluice runs the same under
// systemd (Type=notify) and in a shell.
#pragma once

#include <string>
#include <string_view>

namespace sluice {

// Sends `state` (e.g. "READY=1", newline-separated assignments). Returns false
// when NOTIFY_SOCKET is unset or the send failed. Any thread.
bool sd_notify(std::string_view state) noexcept;

// "RELOADING=1\nMONOTONIC_USEC=<CLOCK_MONOTONIC in µs>", what systemd expects
// at the start of a reload (Type=notify-reload and newer systemd).
std::string reloading_message();

} // namespace sluice
