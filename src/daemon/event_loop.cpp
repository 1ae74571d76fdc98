// epoll-based loop: see event_loop.h.
#include "event_loop.h"

#include <ctime>

#include <sys/epoll.h>
#include <unistd.h>

#include <stdexcept>

namespace understudy {

EventLoop::EventLoop() : epfd_(epoll_create1(EPOLL_CLOEXEC))
{
    if (epfd_ < 0)
        throw std::runtime_error("epoll_create1 failed");
}

EventLoop::~EventLoop() { ::close(epfd_); }

void EventLoop::add(int fd, uint32_t events, Handler handler)
{
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev);
    handlers_[fd] = std::move(handler);
}

void EventLoop::modify(int fd, uint32_t events)
{
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &ev);
}

void EventLoop::remove(int fd)
{
    epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
    handlers_.erase(fd);
}

void EventLoop::run_once(int timeout_ms, uint64_t *woke_ns)
{
    epoll_event events[32];
    int n = epoll_wait(epfd_, events, 32, timeout_ms);
    if (woke_ns) {
        timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        *woke_ns = uint64_t(ts.tv_sec) * 1'000'000'000u + uint64_t(ts.tv_nsec);
    }
    for (int i = 0; i < n; i++) {
        auto it = handlers_.find(events[i].data.fd);
        if (it == handlers_.end())
            continue;  // removed by an earlier handler in this round
        Handler h = it->second;  // a copy: the handler may remove itself
        h(events[i].events);
    }
}

}  // namespace understudy
