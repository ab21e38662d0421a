// EventLoop: the VMM's I/O thread. An epoll set of fds, each with a callback, run on
// the thread that calls run() until stop() is called (from any thread).
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "vmm/base/event_fd.hpp"
#include "vmm/base/fd.hpp"

namespace kiln {

class EventLoop {
public:
    using Callback = std::function<void(uint32_t events)>;

    [[nodiscard]] static Result<EventLoop> create();

    // Watches fd for `events` (EPOLLIN...). The callback runs on the loop thread.
    [[nodiscard]] Result<void> add(int fd, uint32_t events, Callback cb);
    void remove(int fd);

    // Runs until stop(); returns an error only if epoll itself fails.
    [[nodiscard]] Result<void> run();
    // Thread-safe and async-signal-safe apart from the atomic store.
    void stop();

private:
    EventLoop(Fd ep, EventFd wake) : epoll_(std::move(ep)), wake_(std::make_unique<EventFd>(std::move(wake))) {}
    Fd epoll_;
    std::unique_ptr<EventFd> wake_;
    std::map<int, std::unique_ptr<Callback>> callbacks_;
    std::vector<std::unique_ptr<Callback>> retired_;
    std::unique_ptr<std::atomic<bool>> stop_ = std::make_unique<std::atomic<bool>>(false);
};

} // namespace kiln
