// See control_loop.h.
#include "control_loop.h"

#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/resource.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>

namespace understudy {

int block_control_signals()
{
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    signal(SIGPIPE, SIG_IGN);
    return signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);
}

void ControlLoop::run()
{
    bool running = true;
    loop.add(signal_fd, EPOLLIN, [&](uint32_t) {
        signalfd_siginfo si;
        while (read(signal_fd, &si, sizeof si) == sizeof si) {
            if (si.ssi_signo == SIGHUP) {
                auto st = reload();
                log(st ? "SIGHUP: configuration reloaded" : "SIGHUP: reload rejected, nothing changed:\n" + st.error());
            } else {
                log(std::string("signal ") + strsignal(int(si.ssi_signo)) + ": stopping");
                running = false;
            }
        }
    });
    loop.add(health.fd(), EPOLLIN, [&](uint32_t) { health.run(); });
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    long ns = long(housekeeping_ms % 1000) * 1'000'000;
    itimerspec tick{{time_t(housekeeping_ms / 1000), ns}, {time_t(housekeeping_ms / 1000), ns}};
    timerfd_settime(tfd, 0, &tick, nullptr);
    loop.add(tfd, EPOLLIN, [&](uint32_t) {
        uint64_t expirations;
        [[maybe_unused]] ssize_t n = read(tfd, &expirations, sizeof expirations);
        housekeeping();
    });

    while (running) {
        int timeout = health.next_timeout_ms();
        loop.run_once(timeout < 0 ? 1000 : std::min(timeout, 1000));
        health.run();  // due timers, even when no socket was ready
    }
    loop.remove(tfd);
    loop.remove(health.fd());
    loop.remove(signal_fd);
    ::close(tfd);
}

unsigned long raise_descriptor_limit()
{
    rlimit r{};
    if (getrlimit(RLIMIT_NOFILE, &r) != 0)
        return 0;
    if (r.rlim_cur < r.rlim_max) {
        r.rlim_cur = r.rlim_max;
        setrlimit(RLIMIT_NOFILE, &r);
        getrlimit(RLIMIT_NOFILE, &r);
    }
    return static_cast<unsigned long>(r.rlim_cur);
}

}  // namespace understudy
