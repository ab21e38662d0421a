#include "vmm/base/event_loop.hpp"

#include <cerrno>
#include <sys/epoll.h>

namespace kiln {

Result<EventLoop> EventLoop::create() {
    int ep = ::epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) return fail_errno("epoll_create1");
    auto wake = KILN_TRY(EventFd::create());
    EventLoop loop(Fd(ep), std::move(wake));
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = loop.wake_->get();
    if (::epoll_ctl(loop.epoll_.get(), EPOLL_CTL_ADD, loop.wake_->get(), &ev) < 0)
        return fail_errno("epoll_ctl(wake)");
    return loop;
}

Result<void> EventLoop::add(int fd, uint32_t events, Callback cb) {
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) < 0)
        return fail_errno(fmt::format("epoll_ctl(add fd {})", fd));
    callbacks_[fd] = std::make_unique<Callback>(std::move(cb));
    return {};
}

void EventLoop::remove(int fd) {
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
    auto it = callbacks_.find(fd);
    if (it == callbacks_.end()) return;
    // A callback may remove itself while it runs: keep it alive until the batch ends.
    retired_.push_back(std::move(it->second));
    callbacks_.erase(it);
}

Result<void> EventLoop::run() {
    epoll_event events[16];
    while (!stop_->load(std::memory_order_acquire)) {
        int n = ::epoll_wait(epoll_.get(), events, 16, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            return fail_errno("epoll_wait");
        }
        for (int i = 0; i < n; ++i) {
            int fd = events[i].data.fd;
            if (fd == wake_->get()) {
                wake_->consume();
                continue;
            }
            auto it = callbacks_.find(fd);
            if (it != callbacks_.end()) {
                Callback* cb = it->second.get();
                (*cb)(events[i].events);
            }
            if (stop_->load(std::memory_order_acquire)) break;
        }
        retired_.clear();
    }
    return {};
}

void EventLoop::stop() {
    stop_->store(true, std::memory_order_release);
    wake_->signal();
}

} // namespace kiln
