// EventFd: a counter fd used to wake the event loop or wire ioeventfd/irqfd.
#pragma once

#include <cstdint>

#include <sys/eventfd.h>
#include <unistd.h>

#include "vmm/base/fd.hpp"

namespace kiln {

class EventFd {
public:
    [[nodiscard]] static Result<EventFd> create(int flags = EFD_NONBLOCK) {
        int fd = ::eventfd(0, flags | EFD_CLOEXEC);
        if (fd < 0) return fail_errno("creating eventfd");
        return EventFd(Fd(fd));
    }

    // Async-signal-safe and thread-safe: just a write(2).
    void signal(uint64_t n = 1) const noexcept {
        [[maybe_unused]] auto r = ::write(fd_.get(), &n, sizeof n);
    }
    // Returns the accumulated count, 0 when nothing was pending (non-blocking fd).
    uint64_t consume() const noexcept {
        uint64_t v = 0;
        if (::read(fd_.get(), &v, sizeof v) != sizeof v) return 0;
        return v;
    }
    [[nodiscard]] int get() const noexcept { return fd_.get(); }

private:
    explicit EventFd(Fd fd) : fd_(std::move(fd)) {}
    Fd fd_;
};

} // namespace kiln
