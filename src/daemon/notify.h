// Tells the service manager how the daemon is doing (systemd's sd_notify protocol): READY=1 once it serves,
// RELOADING=1 / READY=1 around a reload, STOPPING=1, WATCHDOG=1 from the control loop. Without
// $NOTIFY_SOCKET (not started by systemd as Type=notify) every call does nothing.
#pragma once

#include <cstdint>
#include <string>

namespace understudy::notify {

// Sends state (newline-separated KEY=VALUE assignments) to $NOTIFY_SOCKET. Returns false when the variable is
// unset or the datagram could not be sent (the daemon goes on either way: the manager's timeouts tell).
bool send(const std::string &state);

// The watchdog interval the manager expects keep-alives within ($WATCHDOG_USEC, when $WATCHDOG_PID is unset
// or this process), in microseconds; 0 when there is no watchdog.
uint64_t watchdog_usec();

}  // namespace understudy::notify
