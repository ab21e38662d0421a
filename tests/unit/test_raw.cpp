// open_raw on its own: sizes, the one-extent mapping, read-only, discard and
// write-zeroes on a real file system, and a real block device (a loop device) when the
// test runs as root.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "devices/block/raw.hpp"
#include "tests/support/files.hpp"
#include "test_firmware_acpi_tools.hpp"

using namespace kiln;
using namespace kiln::block;
using kiln::test::ScratchDir;
namespace fs = std::filesystem;

namespace {

// A file of `size` bytes, byte i = i * 7 (so any misplaced extent shows).
std::string make_file(const ScratchDir& dir, const std::string& name, size_t size) {
    const std::string p = dir / name;
    std::vector<uint8_t> d(size);
    for (size_t i = 0; i < size; ++i) d[i] = static_cast<uint8_t>(i * 7);
    const int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    REQUIRE(fd >= 0);
    REQUIRE(::write(fd, d.data(), d.size()) == static_cast<ssize_t>(d.size()));
    ::close(fd);
    return p;
}

Result<std::unique_ptr<DiskImage>> raw_at(const std::string& path, bool read_only, uint32_t alignment = 512) {
    auto fd = Fd::open(path, read_only ? O_RDONLY : O_RDWR);
    REQUIRE_MESSAGE(fd, fd.error().message());
    return open_raw(std::move(*fd), path, read_only, alignment);
}

std::vector<uint8_t> pread_vec(int fd, uint64_t off, size_t len) {
    std::vector<uint8_t> v(len);
    REQUIRE(::pread(fd, v.data(), len, static_cast<off_t>(off)) == static_cast<ssize_t>(len));
    return v;
}

uint64_t allocated_bytes(const std::string& p) {
    struct stat st{};
    REQUIRE(::stat(p.c_str(), &st) == 0);
    return static_cast<uint64_t>(st.st_blocks) * 512;
}

} // namespace

TEST_CASE("raw: the size is the file's, rounded down to whole sectors - tiny files and odd files are refused") {
    ScratchDir dir;
    auto img = raw_at(make_file(dir, "odd.raw", 1000), true);
    REQUIRE_MESSAGE(img, img.error().message());
    CHECK((*img)->size() == 512); // the trailing 488 bytes are not a sector
    CHECK(std::string((*img)->format()) == "raw");
    CHECK((*img)->describe() == "raw '" + dir / "odd.raw" + "'");

    const auto empty = make_file(dir, "empty.raw", 0);
    auto e = raw_at(empty, true);
    REQUIRE_FALSE(e);
    CHECK(e.error().message() == "disk '" + empty + "': the file is empty");

    const auto tiny = make_file(dir, "tiny.raw", 511);
    auto t = raw_at(tiny, true);
    REQUIRE_FALSE(t);
    CHECK(t.error().message().find("smaller than one 512-byte sector") != std::string::npos);

    // A character device is no disk.
    auto null_fd = Fd::open("/dev/null", O_RDONLY);
    REQUIRE(null_fd);
    auto n = open_raw(std::move(*null_fd), "/dev/null", true, 512);
    REQUIRE_FALSE(n);
    CHECK(n.error().message().find("neither a regular file nor a block device") != std::string::npos);
}

TEST_CASE("raw: one Data extent per request, on the image's own fd, at the guest offset") {
    ScratchDir dir;
    const auto path = make_file(dir, "d.raw", 1 << 20);
    auto img = raw_at(path, false, 4096);
    REQUIRE_MESSAGE(img, img.error().message());
    DiskImage& d = **img;
    CHECK(d.alignment() == 4096); // what the caller measured, passed through
    CHECK_FALSE(d.read_only());

    Extent ex[2];
    auto m = d.map_read(8192, 65536, ex);
    REQUIRE_MESSAGE(m, m.error().message());
    CHECK(m->count == 1);
    CHECK(m->covered == 65536);
    CHECK(ex[0].kind == Extent::Kind::Data);
    CHECK(ex[0].fd == d.top_fd());
    CHECK(ex[0].file_offset == 8192);
    CHECK(ex[0].length == 65536);
    CHECK(pread_vec(ex[0].fd, ex[0].file_offset, 512) == pread_vec(d.top_fd(), 8192, 512));

    auto w = d.map_write((1 << 20) - 512, 512, ex);
    REQUIRE_MESSAGE(w, w.error().message());
    CHECK(w->count == 1);
    CHECK(ex[0].file_offset == (1 << 20) - 512);
    CHECK(d.flush_metadata());

    // No room for an extent: an error, never a write past the span.
    CHECK_FALSE(d.map_read(0, 512, std::span<Extent>()));
}

TEST_CASE("raw: read-only images refuse writes, discard and write-zeroes, and stay unchanged") {
    ScratchDir dir;
    const auto path = make_file(dir, "ro.raw", 64 << 10);
    auto img = raw_at(path, true);
    REQUIRE_MESSAGE(img, img.error().message());
    DiskImage& d = **img;
    CHECK(d.read_only());
    CHECK_FALSE(d.supports_discard());
    CHECK_FALSE(d.supports_write_zeroes());
    Extent ex[1];
    auto w = d.map_write(0, 512, ex);
    REQUIRE_FALSE(w);
    CHECK(w.error().message().find("read-only") != std::string::npos);
    CHECK_FALSE(d.discard(0, 4096));
    CHECK_FALSE(d.write_zeroes(0, 4096, true));
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    auto bytes = pread_vec(fd, 0, 4096);
    ::close(fd);
    for (size_t i = 0; i < bytes.size(); ++i) REQUIRE(bytes[i] == static_cast<uint8_t>(i * 7));
}

TEST_CASE("raw: discard punches a hole, write-zeroes zeroes - neither changes the size") {
    ScratchDir dir;
    const auto path = make_file(dir, "z.raw", 4 << 20);
    auto img = raw_at(path, false);
    REQUIRE_MESSAGE(img, img.error().message());
    DiskImage& d = **img;
    // /tmp is ext4, xfs, btrfs or tmpfs on every machine this runs on.
    REQUIRE(d.supports_discard());
    REQUIRE(d.supports_write_zeroes());

    const uint64_t before = allocated_bytes(path);
    REQUIRE(d.discard(1 << 20, 1 << 20));
    CHECK(allocated_bytes(path) <= before - (1 << 20)); // the space is given back
    REQUIRE(d.write_zeroes(0, 8192, false));
    REQUIRE(d.write_zeroes((4 << 20) - 4096, 4096, true)); // at the very end: KEEP_SIZE
    CHECK(fs::file_size(path) == (4u << 20));

    const int fd = d.top_fd();
    CHECK(pread_vec(fd, 0, 8192) == std::vector<uint8_t>(8192, 0));
    CHECK(pread_vec(fd, 1 << 20, 1 << 20) == std::vector<uint8_t>(1 << 20, 0));
    CHECK(pread_vec(fd, (4 << 20) - 4096, 4096) == std::vector<uint8_t>(4096, 0));
    auto kept = pread_vec(fd, 8192, 512); // the neighbours are untouched
    for (size_t i = 0; i < kept.size(); ++i) REQUIRE(kept[i] == static_cast<uint8_t>((8192 + i) * 7));
}

TEST_CASE("raw: a block device (loop) is sized by BLKGETSIZE64") {
    if (::geteuid() != 0 || !fs::exists("/dev/loop-control")) {
        MESSAGE("skipped: needs root and loop devices");
        return;
    }
    ScratchDir dir;
    const auto backing = make_file(dir, "loop.raw", 3 << 20);
    auto r = kiln::test::run_tool("losetup --show -f " + backing);
    if (r.status != 0) {
        MESSAGE("skipped: losetup failed: " << r.out);
        return;
    }
    const std::string dev = r.out.substr(0, r.out.find('\n'));
    struct Detach {
        std::string dev;
        ~Detach() { (void)kiln::test::run_tool("losetup -d " + dev); }
    } detach{dev};
    auto img = raw_at(dev, false);
    REQUIRE_MESSAGE(img, img.error().message());
    CHECK((*img)->size() == (3u << 20));
    Extent ex[1];
    auto m = (*img)->map_read(4096, 512, ex);
    REQUIRE(m);
    CHECK(pread_vec(ex[0].fd, ex[0].file_offset, 512) == pread_vec((*img)->top_fd(), 4096, 512));
}
