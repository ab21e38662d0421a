// Whole-file writes for the few places that produce a file for the user (--dump-acpi,
// --dump-dtb): create or truncate, write everything (EINTR and short writes handled),
// close with its error checked.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <span>
#include <string>

#include "vmm/base/result.hpp"

namespace kiln {

[[nodiscard]] inline Result<void> write_whole_file(const std::string& path, std::span<const uint8_t> bytes) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return fail_errno(fmt::format("creating '{}'", path));
    size_t done = 0;
    while (done < bytes.size()) {
        const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            const int e = errno;
            ::close(fd);
            return fail_errno(fmt::format("writing '{}'", path), e);
        }
        done += static_cast<size_t>(n);
    }
    if (::close(fd) != 0) return fail_errno(fmt::format("writing '{}'", path));
    return {};
}

} // namespace kiln
