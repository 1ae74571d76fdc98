// See off_thread.h.
#include "off_thread.h"

#include "health.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <exception>

namespace understudy {

OffThread::OffThread(EventLoop &loop) : loop_(loop)
{
    efd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    loop_.add(efd_, EPOLLIN, [this](uint32_t) { finish(); });
}

OffThread::~OffThread()
{
    if (thread_.joinable())
        thread_.join();
    loop_.remove(efd_);
    ::close(efd_);
}

void OffThread::run(std::function<Status()> work, std::function<void(Status)> done)
{
    busy_ = true;
    started_ns_ = monotonic_ns();
    done_ = std::move(done);
    thread_ = std::thread([this, work = std::move(work)] {
        try {
            result_ = work();
        } catch (const std::exception &e) {
            result_ = Error{std::string("the change could not be built: ") + e.what()};
        }
        uint64_t one = 1;
        [[maybe_unused]] ssize_t n = ::write(efd_, &one, sizeof one);
    });
}

void OffThread::finish()
{
    uint64_t count;
    if (::read(efd_, &count, sizeof count) != sizeof count)
        return;
    if (thread_.joinable())
        thread_.join();
    busy_ = false;
    auto done = std::move(done_);
    done_ = nullptr;
    if (done)
        done(std::move(result_));
    result_ = Ok{};
}

}  // namespace understudy
