// Fd: the only owner of a raw file descriptor in Kiln. Move-only; closes on destruction.
#pragma once

#include <string>
#include <utility>

#include <fcntl.h>
#include <unistd.h>

#include "vmm/base/result.hpp"

namespace kiln {

class Fd {
public:
    Fd() = default;
    explicit Fd(int fd) noexcept : fd_(fd) {}
    ~Fd() { reset(); }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    Fd& operator=(Fd&& o) noexcept {
        if (this != &o) {
            reset();
            fd_ = std::exchange(o.fd_, -1);
        }
        return *this;
    }

    [[nodiscard]] int get() const noexcept { return fd_; }
    [[nodiscard]] bool valid() const noexcept { return fd_ >= 0; }
    explicit operator bool() const noexcept { return valid(); }
    [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }
    void reset() noexcept {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }

    // open(2) with O_CLOEXEC always added; the error names the path.
    [[nodiscard]] static Result<Fd> open(const std::string& path, int flags, mode_t mode = 0) {
        int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
        if (fd < 0) return fail_errno(fmt::format("opening '{}'", path));
        return Fd(fd);
    }

private:
    int fd_ = -1;
};

} // namespace kiln
