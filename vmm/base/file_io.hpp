// Whole-file writes for the few places that produce a file for the user (--dump-acpi,
// --dump-dtb): create or truncate, write everything (EINTR and short writes handled),
// close with its error checked. And whole-file reads of the small sysfs and procfs
// texts kiln parses: plain read(2), so parsing them never builds an iostream (whose
// first use sets up every locale facet, pages a start-up otherwise never touches).
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vmm/base/fd.hpp"
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

// The whole file (EINTR handled); sysfs and procfs files report no size, so it reads
// until end of file.
[[nodiscard]] inline Result<std::string> read_text_file(const std::string& path) {
    const Fd fd = KILN_TRY(Fd::open(path, O_RDONLY));
    std::string text;
    std::array<char, 4096> buf{};
    for (;;) {
        const ssize_t n = ::read(fd.get(), buf.data(), buf.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail_errno(fmt::format("reading '{}'", path));
        if (n == 0) break;
        text.append(buf.data(), static_cast<size_t>(n));
    }
    return text;
}

// `text` cut at each '\n' (the newline dropped; no empty piece after a final newline).
[[nodiscard]] inline std::vector<std::string_view> split_lines(std::string_view text) {
    std::vector<std::string_view> lines;
    while (!text.empty()) {
        const size_t nl = text.find('\n');
        lines.push_back(text.substr(0, nl));
        if (nl == std::string_view::npos) break;
        text.remove_prefix(nl + 1);
    }
    return lines;
}

} // namespace kiln
