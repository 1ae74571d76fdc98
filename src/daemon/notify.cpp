// See notify.h. Written here rather than linking libsystemd's sd_notify(): the protocol is one datagram to a
// Unix socket named in the environment (stable and documented in sd_notify(3)), and the daemons then run
// and build the same on hosts without systemd, with no library to install for it.
#include "notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>

namespace understudy::notify {

bool send(const std::string &state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path)
        return false;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    size_t len = strlen(path);
    // A path, or an abstract socket when it starts with '@' (whose name has no terminating NUL).
    if ((path[0] != '/' && path[0] != '@') || len >= sizeof addr.sun_path)
        return false;
    memcpy(addr.sun_path, path, len);
    if (path[0] == '@')
        addr.sun_path[0] = '\0';
    socklen_t addr_len = socklen_t(offsetof(sockaddr_un, sun_path) + len + (path[0] == '@' ? 0 : 1));
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    ssize_t n = sendto(fd, state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr *>(&addr), addr_len);
    close(fd);
    return n == ssize_t(state.size());
}

uint64_t watchdog_usec()
{
    const char *usec = getenv("WATCHDOG_USEC");
    if (!usec || !*usec)
        return 0;
    // The variables are inherited: a child of the watched process must not think it is watched.
    if (const char *pid = getenv("WATCHDOG_PID"); pid && *pid && strtoll(pid, nullptr, 10) != getpid())
        return 0;
    char *end = nullptr;
    unsigned long long v = strtoull(usec, &end, 10);
    return end && *end == '\0' ? uint64_t(v) : 0;
}

}  // namespace understudy::notify
