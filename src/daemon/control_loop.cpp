// See control_loop.h.
#include "control_loop.h"

#include "notify.h"

#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/resource.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <utility>

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

void ControlPauses::record(uint64_t ns)
{
    double ms = double(ns) / 1e6;
    longest_ms = std::max(longest_ms, ms);
    longest_recent_ms = std::max(longest_recent_ms, ms);
    over_10ms += ms > 10;
    over_100ms += ms > 100;
}

double ControlPauses::take_recent()
{
    return std::exchange(longest_recent_ms, 0.0);
}

void ControlLoop::run()
{
    bool running = true;
    uint64_t busy_since = 0;
    loop.add(signal_fd, EPOLLIN, [&](uint32_t) {
        signalfd_siginfo si;
        while (read(signal_fd, &si, sizeof si) == sizeof si) {
            if (si.ssi_signo == SIGHUP) {
                // MONOTONIC_USEC: systemd 253's Type=notify-reload wants it with RELOADING=1; older ones ignore it.
                notify::send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(monotonic_ns() / 1000));
                auto say = log, complain = warn ? warn : log;
                reload([say, complain](Status st) {
                    if (st)
                        say("SIGHUP: configuration reloaded");
                    else
                        complain("SIGHUP: reload rejected, nothing changed:\n" + st.error());
                    notify::send("READY=1");  // serving again: the new config, or the old one kept
                });
            } else {
                log(std::string("signal ") + strsignal(int(si.ssi_signo)) + ": stopping");
                notify::send("STOPPING=1");
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
    // The watchdog is fed from this loop's own timer: a control thread stuck anywhere stops feeding it.
    int wfd = -1;
    if (uint64_t usec = notify::watchdog_usec() / 2) {
        wfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        timespec half{time_t(usec / 1'000'000), long(usec % 1'000'000) * 1000};
        itimerspec feed{half, half};
        timerfd_settime(wfd, 0, &feed, nullptr);
        loop.add(wfd, EPOLLIN, [&, wfd](uint32_t) {
            uint64_t expirations;
            [[maybe_unused]] ssize_t n = read(wfd, &expirations, sizeof expirations);
            notify::send("WATCHDOG=1");
        });
    }

    while (running) {
        int timeout = health.next_timeout_ms();
        loop.run_once(timeout < 0 ? 1000 : std::min(timeout, 1000), pauses ? &busy_since : nullptr);
        health.run();  // due timers, even when no socket was ready
        if (after_events)
            after_events();
        if (pauses && busy_since)
            pauses->record(monotonic_ns() - busy_since);
    }
    if (wfd >= 0) {
        loop.remove(wfd);
        ::close(wfd);
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
