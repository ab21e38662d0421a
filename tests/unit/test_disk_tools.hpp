// Disk images in unit tests: reading and writing through map_read/map_write as a
// virtio-blk queue worker does (checking the DiskImage contract on the way), and opening
// `--disk` specs.
#pragma once

#include <doctest/doctest.h>
#include <unistd.h>

#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "devices/block/disk.hpp"
#include "devices/block/disk_image.hpp"
#include "test_firmware_acpi_tools.hpp"

namespace kiln::test {

// A page-aligned buffer, as guest memory is: O_DIRECT (cache=none) needs one.
struct PageBuffer {
    explicit PageBuffer(size_t n)
        : p(static_cast<uint8_t*>(std::aligned_alloc(4096, std::max<size_t>(4096, (n + 4095) / 4096 * 4096)))) {}
    ~PageBuffer() { std::free(p); }
    PageBuffer(const PageBuffer&) = delete;
    PageBuffer& operator=(const PageBuffer&) = delete;
    uint8_t* p;
};

// Reads [off, off+len) through map_read with room for `slots` extents per call: extents
// cover exactly `covered` bytes, Data extents have a file behind them, and a call
// covers less than asked only when its extents ran out.
inline std::vector<uint8_t> read_via(block::DiskImage& img, uint64_t off, uint64_t len, size_t slots = 4) {
    using block::Extent;
    PageBuffer out(len);
    std::vector<Extent> ex(slots);
    uint64_t pos = 0;
    while (pos < len) {
        auto m = img.map_read(off + pos, len - pos, ex);
        REQUIRE_MESSAGE(m, m.error().message());
        REQUIRE(m->covered > 0);
        REQUIRE(m->count <= slots);
        uint64_t sum = 0;
        for (size_t i = 0; i < m->count; ++i) {
            uint8_t* to = out.p + pos + sum;
            if (ex[i].kind == Extent::Kind::Zero) {
                std::fill_n(to, ex[i].length, 0);
            } else if (ex[i].kind == Extent::Kind::Compressed) {
                REQUIRE(ex[i].source != nullptr);
                const iovec v{to, ex[i].length};
                auto r = ex[i].source->read_compressed(ex[i], {&v, 1});
                REQUIRE_MESSAGE(r, r.error().message());
            } else {
                REQUIRE(ex[i].fd >= 0);
                REQUIRE(::pread(ex[i].fd, to, ex[i].length, static_cast<off_t>(ex[i].file_offset)) ==
                        static_cast<ssize_t>(ex[i].length));
            }
            sum += ex[i].length;
        }
        REQUIRE(sum == m->covered);
        if (m->covered < len - pos) REQUIRE(m->count == slots); // short only when out is full
        pos += m->covered;
    }
    return {out.p, out.p + len};
}

// Writes `bytes` at `off` through map_write: every extent is Data in the top image.
inline void write_via(block::DiskImage& img, uint64_t off, const std::vector<uint8_t>& bytes) {
    using block::Extent;
    PageBuffer buf(bytes.size());
    std::copy(bytes.begin(), bytes.end(), buf.p);
    uint64_t pos = 0;
    while (pos < bytes.size()) {
        Extent ex[4];
        auto m = img.map_write(off + pos, bytes.size() - pos, ex);
        REQUIRE_MESSAGE(m, m.error().message());
        REQUIRE(m->covered > 0);
        uint64_t at = pos;
        for (size_t i = 0; i < m->count; ++i) {
            REQUIRE(ex[i].kind == Extent::Kind::Data);
            REQUIRE(ex[i].fd == img.top_fd());
            REQUIRE(::pwrite(ex[i].fd, buf.p + at, ex[i].length, static_cast<off_t>(ex[i].file_offset)) ==
                    static_cast<ssize_t>(ex[i].length));
            at += ex[i].length;
        }
        REQUIRE(at - pos == m->covered);
        pos += m->covered;
    }
}

// A `--disk` spec opened, or the one-line error opening it gives, or the error parsing it.
inline std::unique_ptr<block::DiskImage> open_ok(const std::string& spec) {
    auto s = block::parse_disk_spec(spec);
    REQUIRE_MESSAGE(s, s.error().message());
    auto d = block::open_disk(*s);
    REQUIRE_MESSAGE(d, d.error().message());
    return std::move(*d);
}
inline std::string open_error(const std::string& spec) {
    auto s = block::parse_disk_spec(spec);
    REQUIRE_MESSAGE(s, s.error().message());
    auto d = block::open_disk(*s);
    REQUIRE_FALSE(d);
    return d.error().message();
}
inline std::string spec_error(const std::string& spec) {
    auto s = block::parse_disk_spec(spec);
    REQUIRE_FALSE(s);
    return s.error().message();
}

// A shell command that must succeed (qemu-img, qemu-io, ip ...); its output on failure.
inline void tool_ok(const std::string& cmd) {
    auto r = run_tool(cmd);
    REQUIRE_MESSAGE(r.status == 0, cmd << "\n" << r.out);
}

// How many OFD locks /proc/locks lists on the file at `path`.
inline int ofd_locks_on(const std::string& path) {
    struct stat st{};
    if (::stat(path.c_str(), &st) != 0) return 0;
    // fmt, not operator+: GCC 12 -O2 flags the latter with a bogus -Wrestrict.
    const std::string needle = fmt::format(":{} ", st.st_ino);
    std::ifstream f("/proc/locks");
    int n = 0;
    for (std::string line; std::getline(f, line);)
        if (line.find("OFDLCK") != std::string::npos && line.find(needle) != std::string::npos) ++n;
    return n;
}

} // namespace kiln::test
