// Control-socket client with errors that say what to do.
#include "core/config_diagnostics.h"
#include "daemon/json_text.h"
#include "client.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>

namespace understudy::cli {

std::string &socket_path()
{
    static std::string path = [] {
        const char *env = std::getenv("UNDERSTUDY_SOCKET");
        return std::string(env && *env ? env : kDefaultSocket);
    }();
    return path;
}

static Reply unreachable(const std::string &msg) { return Reply{kUnreachable, {}, msg}; }

Reply call(const nlohmann::json &request)
{
    const std::string &path = socket_path();
    sockaddr_un sa{};
    if (path.size() >= sizeof sa.sun_path)
        return unreachable("socket path too long: " + path);
    sa.sun_family = AF_UNIX;
    std::strncpy(sa.sun_path, path.c_str(), sizeof sa.sun_path - 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (connect(fd, reinterpret_cast<sockaddr *>(&sa), sizeof sa) != 0) {
        int err = errno;
        ::close(fd);
        if (err == ENOENT || err == ECONNREFUSED)
            return unreachable("cannot reach the daemon at " + path + ": " + std::strerror(err) +
                               "\n  is it running? start it with `understudy run --config FILE`, or give the right "
                               "path with --socket PATH (control.socket in the config)");
        if (err == EACCES || err == EPERM)
            return unreachable("permission denied on " + path +
                               "\n  run as root, or as a member of the socket's group (control.socket_group)");
        return unreachable("cannot connect to " + path + ": " + std::strerror(err));
    }
    timeval tv{120, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string line = json_text(request) + "\n";
    for (size_t off = 0; off < line.size();) {
        ssize_t n = ::write(fd, line.data() + off, line.size() - off);
        if (n <= 0) {
            ::close(fd);
            return unreachable(std::string("lost the connection to the daemon while sending: ") + std::strerror(errno));
        }
        off += size_t(n);
    }
    std::string in;
    char buf[65536];
    while (in.find('\n') == std::string::npos) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n <= 0) {
            ::close(fd);
            return unreachable(n == 0 ? "the daemon closed the connection without answering"
                                      : std::string("no answer from the daemon: ") + std::strerror(errno));
        }
        in.append(buf, size_t(n));
    }
    ::close(fd);
    auto body = nlohmann::ordered_json::parse(in.substr(0, in.find('\n')), nullptr, false);
    if (body.is_discarded() || !body.is_object())
        return unreachable("the daemon sent a reply that is not JSON");
    if (!body.value("ok", false))
        return Reply{kFailed, body, body.value("error", std::string("the daemon refused without a reason"))};
    return Reply{kOk, body, ""};
}

int report_failure(const Reply &reply)
{
    std::cerr << "understudyctl: " << escape_text(reply.error) << "\n";
    return reply.exit_code;
}

}  // namespace understudy::cli
