// The qcow2 format layer on its own (qcow2::read_header, create, open), with QEMU's
// tools as the referee: the corners test_block.cpp's end-to-end cases do not reach —
// preallocated zero clusters, refcount widths other than 16, version 2 and zstd images,
// internal snapshots, extent coverage and coalescing, concurrent writers, O_DIRECT
// alignment, and hostile images whose tables point where they must not.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "devices/block/qcow2.hpp"
#include "devices/block/raw.hpp"
#include "test_disk_tools.hpp"

using namespace kiln;
using namespace kiln::block;
using namespace kiln::test;
namespace fs = std::filesystem;

namespace {

// Not tmpfs: the O_DIRECT cases need a real file system.
constexpr const char* kDirTemplate = "/var/tmp/kiln-qcow2-XXXXXX";


uint64_t get_be64(const std::vector<uint8_t>& d, uint64_t at) {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = v << 8 | d.at(at + static_cast<uint64_t>(i));
    return v;
}
void set_be64(std::vector<uint8_t>& d, uint64_t at, uint64_t v) {
    for (int i = 7; i >= 0; --i, v >>= 8) d.at(at + static_cast<uint64_t>(i)) = static_cast<uint8_t>(v);
}
void set_be32(std::vector<uint8_t>& d, uint64_t at, uint32_t v) {
    for (int i = 3; i >= 0; --i, v >>= 8) d.at(at + static_cast<uint64_t>(i)) = static_cast<uint8_t>(v);
}
// The host offset of L2 table `l1_index` of an image's bytes (the header's L1 table).
uint64_t l2_table_of(const std::vector<uint8_t>& d, uint64_t l1_index) {
    return get_be64(d, get_be64(d, 40) + 8 * l1_index) & 0x00fffffffffffe00ULL;
}

std::unique_ptr<DiskImage> open_raw_ro(const std::string& path) {
    auto fd = Fd::open(path, O_RDONLY);
    REQUIRE_MESSAGE(fd, fd.error().message());
    auto img = open_raw(std::move(*fd), path, true, 512);
    REQUIRE_MESSAGE(img, img.error().message());
    return std::move(*img);
}

Result<std::unique_ptr<DiskImage>> try_open(const std::string& path, bool read_only,
                                            std::unique_ptr<DiskImage> backing = nullptr, uint32_t alignment = 512) {
    auto fd = Fd::open(path, (read_only ? O_RDONLY : O_RDWR) | (alignment > 512 ? O_DIRECT : 0));
    if (!fd) return std::unexpected(fd.error());
    qcow2::OpenOptions o;
    o.read_only = read_only;
    o.alignment = alignment;
    return qcow2::open(std::move(*fd), path, std::move(backing), o);
}
std::unique_ptr<DiskImage> open_ok(const std::string& path, bool read_only,
                                   std::unique_ptr<DiskImage> backing = nullptr, uint32_t alignment = 512) {
    auto img = try_open(path, read_only, std::move(backing), alignment);
    REQUIRE_MESSAGE(img, img.error().message());
    return std::move(*img);
}

std::string header_error(const std::string& path) {
    auto fd = Fd::open(path, O_RDONLY);
    REQUIRE(fd);
    auto h = qcow2::read_header(fd->get());
    REQUIRE_FALSE(h);
    return h.error().message();
}

// `qemu-img check` exit 0 and no leak, no corruption in its report.
void check_clean(const std::string& path) {
    auto r = run_tool("qemu-img check " + path);
    CHECK_MESSAGE(r.status == 0, r.out);
    CHECK_MESSAGE(r.out.find("No errors were found") != std::string::npos, r.out);
    CHECK_MESSAGE(r.out.find("leak") == std::string::npos, r.out);
}

std::vector<uint8_t> convert_raw(const ScratchDir& dir, const std::string& image) {
    tool_ok("qemu-img convert -O raw " + image + " " + dir / "converted.raw");
    return read_bytes(dir / "converted.raw");
}

} // namespace

TEST_CASE("qcow2 header: read_header reports what qemu-img wrote, v2 and v3, with and without backing") {
    ScratchDir dir(kDirTemplate);
    write_bytes(dir / "base.raw", random_bytes(1 << 20, 1));
    tool_ok("qemu-img create -q -f qcow2 -o cluster_size=4096 -F raw -b base.raw " + dir / "v3.qcow2");
    tool_ok("qemu-img create -q -f qcow2 -o compat=0.10 " + dir / "v2.qcow2 3M");
    auto fd = Fd::open(dir / "v3.qcow2", O_RDONLY);
    REQUIRE(fd);
    auto h = qcow2::read_header(fd->get());
    REQUIRE_MESSAGE(h, h.error().message());
    CHECK(h->version == 3);
    CHECK(h->size == 1 << 20);
    CHECK(h->cluster_bits == 12);
    CHECK(h->backing_file == "base.raw");
    CHECK(h->backing_format == "raw");
    CHECK_FALSE(h->dirty);

    fd = Fd::open(dir / "v2.qcow2", O_RDONLY);
    REQUIRE(fd);
    h = qcow2::read_header(fd->get());
    REQUIRE_MESSAGE(h, h.error().message());
    CHECK(h->version == 2);
    CHECK(h->size == 3 << 20);
    CHECK(h->cluster_bits == 16);
    CHECK(h->backing_file.empty());
    CHECK(h->backing_format.empty());

    const uint8_t magic[] = {'Q', 'F', 'I', 0xfb, 0, 0, 0, 3};
    CHECK(qcow2::has_magic(magic));
    CHECK_FALSE(qcow2::has_magic(std::span(magic, 3)));
    const uint8_t not_magic[] = {'Q', 'F', 'I', 0xfa};
    CHECK_FALSE(qcow2::has_magic(not_magic));
}

TEST_CASE("qcow2 header: every broken field is refused by name, and nothing is written") {
    ScratchDir dir(kDirTemplate);
    const std::string good = dir / "good.qcow2";
    tool_ok("qemu-img create -q -f qcow2 -F raw -b base.raw -u " + good + " 4M");
    const auto pristine = read_bytes(good);
    auto patched = [&](const std::string& name, auto&& patch) {
        auto d = pristine;
        patch(d);
        write_bytes(dir / name, d);
        return dir / name;
    };
    struct Case {
        std::string path, message;
    } cases[] = {
        {patched("magic.qcow2", [](auto& d) { d[0] = 'X'; }), "magic"},
        {patched("v1.qcow2", [](auto& d) { set_be32(d, 4, 1); }), "version 1"},
        {patched("v4.qcow2", [](auto& d) { set_be32(d, 4, 4); }), "version 4"},
        {patched("cb8.qcow2", [](auto& d) { set_be32(d, 20, 8); }), "cluster_bits 8 is out of range (9..21)"},
        {patched("cb22.qcow2", [](auto& d) { set_be32(d, 20, 22); }), "cluster_bits 22 is out of range (9..21)"},
        {patched("aes.qcow2", [](auto& d) { set_be32(d, 32, 1); }), "encrypted"},
        {patched("luks.qcow2", [](auto& d) { set_be32(d, 32, 2); }), "encrypted"},
        {patched("ext-l2.qcow2", [](auto& d) { d[79] |= 0x10; }), "extended L2"},
        {patched("data-file.qcow2", [](auto& d) { d[79] |= 0x04; }), "external data file"},
        {patched("unknown.qcow2", [](auto& d) { d[79] |= 0x20; }), "unknown incompatible features 0x20"},
        {patched("corrupt.qcow2", [](auto& d) { d[79] |= 0x02; }), "corrupt"},
        {patched("order7.qcow2", [](auto& d) { set_be32(d, 96, 7); }), "refcount_order 7"},
        {patched("hlen.qcow2", [](auto& d) { set_be32(d, 100, 50); }), "header_length 50"},
        {patched("l1small.qcow2", [](auto& d) { set_be32(d, 36, 0); }), "l1_size 0 is too small"},
        {patched("l1huge.qcow2", [](auto& d) { set_be32(d, 36, 0x10000000); }), "l1_size 268435456 is too large"},
        {patched("l1off.qcow2", [](auto& d) { set_be64(d, 40, 0x1200); }), "l1_table_offset 0x1200"},
        {patched("rtoff.qcow2", [](auto& d) { set_be64(d, 48, 0); }), "refcount_table_offset 0x0"},
        {patched("rtclusters.qcow2", [](auto& d) { set_be32(d, 56, 0); }), "refcount_table_clusters 0"},
        {patched("size.qcow2", [](auto& d) { set_be64(d, 24, 1000); }), "size 1000"},
        {patched("bname.qcow2", [](auto& d) { set_be32(d, 16, 2000); }), "backing_file_size 2000"},
        {patched("boff.qcow2", [](auto& d) { set_be64(d, 8, 0x10000 - 4); }), "backing file name"},
        {patched("ext.qcow2", [](auto& d) { set_be32(d, 112 + 4, 0x100000); }), "header extension"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.path);
        const auto before = read_bytes(c.path);
        const auto e = header_error(c.path);
        CHECK_MESSAGE(e.find(c.message) != std::string::npos, e);
        CHECK_MESSAGE(e.find('\n') == std::string::npos, e);
        // open() names the image; the file is never written, even when opened for writing.
        auto img = try_open(c.path, false, open_raw_ro(good));
        REQUIRE_FALSE(img);
        CHECK_MESSAGE(img.error().message().starts_with("qcow2 '" + c.path + "'"), img.error().message());
        CHECK(read_bytes(c.path) == before);
    }
    // Truncated files: shorter than the v2 part of the header, and than the v3 part.
    for (size_t len : {0, 40, 90}) {
        CAPTURE(len);
        write_bytes(dir / "short.qcow2", std::vector<uint8_t>(pristine.begin(), pristine.begin() + static_cast<long>(len)));
        CHECK_FALSE(header_error(dir / "short.qcow2").empty());
    }
    // An unknown header extension and the compression-type bit (zstd) are fine to read.
    auto zstd = run_tool("qemu-img create -q -f qcow2 -o compression_type=zstd " + dir / "zstd.qcow2" + " 1M");
    if (zstd.status == 0) {
        tool_ok("qemu-io -f qcow2 -c 'write -P 0x7e 4k 8k' " + dir / "zstd.qcow2");
        auto img = open_ok(dir / "zstd.qcow2", true);
        CHECK(read_via(*img, 0, img->size()) == convert_raw(dir, dir / "zstd.qcow2"));
    }
    // An unknown incompatible bit the image's feature-name table names: the name is in the error.
    const auto named = patched("named.qcow2", [](auto& d) {
        d[79] |= 0x20;
        for (uint64_t at = 112; at + 8 < 4096;) {
            const uint64_t type = get_be64(d, at) >> 32, len = get_be64(d, at) & 0xffffffff;
            if (type == 0) break;
            if (type == 0x6803f857) { // first entry: incompatible bit 0, renamed and moved to bit 5
                d.at(at + 9) = 5;
                const char name[] = "teleportation";
                std::copy(name, name + sizeof(name), d.begin() + static_cast<long>(at + 10));
            }
            at += 8 + (len + 7) / 8 * 8;
        }
    });
    const auto ne = header_error(named);
    CHECK_MESSAGE(ne.find("unknown incompatible features 0x20 ('teleportation')") != std::string::npos, ne);
    const auto unknown_ext = patched("unknown-ext.qcow2", [](auto& d) {
        // Turn the feature-name table extension into one nobody knows.
        for (uint64_t at = 112; at + 8 < 4096;) {
            const uint64_t type = get_be64(d, at) >> 32, len = get_be64(d, at) & 0xffffffff;
            if (type == 0) break;
            if (type == 0x6803f857) set_be32(d, at, 0x12345678);
            at += 8 + (len + 7) / 8 * 8;
        }
    });
    auto fd = Fd::open(unknown_ext, O_RDONLY);
    REQUIRE(fd);
    auto h = qcow2::read_header(fd->get());
    REQUIRE_MESSAGE(h, h.error().message());
    CHECK(h->backing_format == "raw");
}

TEST_CASE("qcow2 create: a v3 image qemu-img finds clean, for every cluster size, with backing file and format") {
    ScratchDir dir(kDirTemplate);
    write_bytes(dir / "base.raw", std::vector<uint8_t>(1 << 20, 0x33));
    for (uint32_t bits : {9u, 12u, 16u, 21u}) {
        CAPTURE(bits);
        const std::string path = dir / fmt::format("c{}.qcow2", bits);
        {
            auto fd = Fd::open(path, O_RDWR | O_CREAT | O_EXCL, 0644);
            REQUIRE(fd);
            auto r = qcow2::create(fd->get(), {uint64_t{64} << 20, "base.raw", "raw", bits});
            REQUIRE_MESSAGE(r, r.error().message());
        }
        check_clean(path);
        auto info = run_tool("qemu-img info --output=json " + path);
        REQUIRE(info.status == 0);
        const auto j = kiln::test::squeeze(info.out);
        CHECK_MESSAGE(j.find("\"format\": \"qcow2\"") != std::string::npos, j);
        CHECK_MESSAGE(j.find("\"virtual-size\": 67108864") != std::string::npos, j);
        CHECK_MESSAGE(j.find(fmt::format("\"cluster-size\": {}", 1u << bits)) != std::string::npos, j);
        CHECK_MESSAGE(j.find("\"backing-filename\": \"base.raw\"") != std::string::npos, j);
        CHECK_MESSAGE(j.find("\"backing-filename-format\": \"raw\"") != std::string::npos, j);
        CHECK_MESSAGE(j.find("\"compat\": \"1.1\"") != std::string::npos, j);
        CHECK_MESSAGE(j.find("\"refcount-bits\": 16") != std::string::npos, j);
        CHECK_MESSAGE(j.find("\"corrupt\": false") != std::string::npos, j);
        auto fd = Fd::open(path, O_RDONLY);
        REQUIRE(fd);
        auto h = qcow2::read_header(fd->get());
        REQUIRE_MESSAGE(h, h.error().message());
        CHECK(h->cluster_bits == bits);
        CHECK(h->backing_file == "base.raw");
        CHECK(h->backing_format == "raw");
        // Reads through to the base until written.
        auto img = open_ok(path, true, open_raw_ro(dir / "base.raw"));
        CHECK(img->describe() == "qcow2 '" + path + "' over raw '" + dir / "base.raw" + "'");
        CHECK(read_via(*img, (1 << 20) - 4096, 8192) ==
              [] { std::vector<uint8_t> v(8192, 0); std::fill_n(v.begin(), 4096, 0x33); return v; }());
    }
    // What create refuses.
    auto fd = Fd::open(dir / "bad.qcow2", O_RDWR | O_CREAT, 0644);
    REQUIRE(fd);
    CHECK_FALSE(qcow2::create(fd->get(), {1000, "", "", 16}));
    CHECK_FALSE(qcow2::create(fd->get(), {1 << 20, "", "", 8}));
    CHECK_FALSE(qcow2::create(fd->get(), {1 << 20, std::string(1024, 'a'), "", 16}));
}

TEST_CASE("qcow2 read: extents coalesce contiguous clusters, cover exactly, and stop when out is full") {
    ScratchDir dir(kDirTemplate);
    const std::string path = dir / "seq.qcow2";
    tool_ok("qemu-img create -q -f qcow2 -o cluster_size=4096 " + path + " 8M");
    // One sequential write: qemu allocates the clusters back to back.
    tool_ok("qemu-io -f qcow2 -c 'write -P 0x5c 0 1m' -c 'write -P 0x6d 2m 4k' -c 'write -P 0x6e 2052k 4k' " + path);
    auto img = open_ok(path, true);
    const auto expected = convert_raw(dir, path);
    CHECK(read_via(*img, 0, img->size(), 1) == expected);
    CHECK(read_via(*img, 0, img->size(), 64) == expected);
    Extent ex[8];
    auto m = img->map_read(0, 1 << 20, ex);
    REQUIRE(m);
    CHECK(m->count == 1); // 256 clusters, one extent
    CHECK(m->covered == 1 << 20);
    // Data, then a hole, then data: three extents, the middle one Zero.
    m = img->map_read((1 << 20) - 512, 1024 + (1 << 20), ex);
    REQUIRE(m);
    REQUIRE(m->count == 3);
    CHECK(ex[0].kind == Extent::Kind::Data);
    CHECK(ex[0].length == 512);
    CHECK(ex[1].kind == Extent::Kind::Zero);
    CHECK(ex[1].length == 1 << 20);
    CHECK(ex[2].kind == Extent::Kind::Data);
    CHECK(ex[2].length == 512);
    // One slot: covered stops at the first change of kind.
    m = img->map_read((1 << 20) - 512, 1024, std::span(ex, 1));
    REQUIRE(m);
    CHECK(m->count == 1);
    CHECK(m->covered == 512);
}

TEST_CASE("qcow2 read: a backing file shorter than the image reads as zeros past its end, through a chain") {
    ScratchDir dir(kDirTemplate);
    const auto base = random_bytes(1 << 20, 7);
    write_bytes(dir / "base.raw", base);
    tool_ok("qemu-img create -q -f qcow2 -F raw -b base.raw " + dir / "mid.qcow2" + " 3M");
    tool_ok("qemu-io -f qcow2 -c 'write -P 0x21 900k 200k' " + dir / "mid.qcow2");
    tool_ok("qemu-img create -q -f qcow2 -o cluster_size=512 -F qcow2 -b mid.qcow2 " + dir / "top.qcow2" + " 4M");
    tool_ok("qemu-io -f qcow2 -c 'write -P 0x22 1000k 1k' -c 'write -z 1030k 1k' " + dir / "top.qcow2");
    auto mid = open_ok(dir / "mid.qcow2", true, open_raw_ro(dir / "base.raw"));
    auto img = open_ok(dir / "top.qcow2", true, std::move(mid));
    CHECK(img->size() == 4 << 20);
    const auto expected = convert_raw(dir, dir / "top.qcow2");
    CHECK(read_via(*img, 0, img->size()) == expected);
    CHECK(read_via(*img, (1 << 20) - 1536, 4096, 2) ==
          std::vector<uint8_t>(expected.begin() + (1 << 20) - 1536, expected.begin() + (1 << 20) + 2560));
    Extent ex[4];
    auto m = img->map_read(3 << 20, 1 << 20, ex); // beyond mid's 3 MiB: zeros, no file
    REQUIRE(m);
    CHECK(m->covered == 1 << 20);
    CHECK(m->count == 1);
    CHECK(ex[0].kind == Extent::Kind::Zero);
}

TEST_CASE("qcow2 read: refcount widths 1..64 and version 2 images read exactly - writing them is refused clearly") {
    ScratchDir dir(kDirTemplate);
    for (const char* opts : {"refcount_bits=1", "refcount_bits=8", "refcount_bits=64", "compat=0.10"}) {
        CAPTURE(opts);
        const std::string path = dir / "w.qcow2";
        fs::remove(path);
        tool_ok(std::string("qemu-img create -q -f qcow2 -o ") + opts + " " + path + " 2M");
        tool_ok("qemu-io -f qcow2 -c 'write -P 0x41 0 100k' -c 'write -P 0x42 1m 3k' " + path);
        auto img = open_ok(path, true);
        CHECK(read_via(*img, 0, img->size()) == convert_raw(dir, path));
        const auto before = read_bytes(path);
        auto w = try_open(path, false);
        if (w) { // a writer must then keep it valid
            write_via(**w, 50 * 1024, std::vector<uint8_t>(100 * 1024, 0x43));
            write_via(**w, 1536 * 1024, std::vector<uint8_t>(4096, 0x44));
            w->reset();
            check_clean(path);
        } else {
            CHECK_MESSAGE(w.error().message().find("qcow2 '" + path + "'") != std::string::npos, w.error().message());
            CHECK(read_bytes(path) == before);
        }
    }
}

TEST_CASE("qcow2 read: clusters zeroed over old data (preallocated zero clusters) read as zeros, writes stay exact") {
    ScratchDir dir(kDirTemplate);
    const std::string path = dir / "z.qcow2";
    tool_ok("qemu-img create -q -f qcow2 " + path + " 1M");
    // write -z without -u keeps the cluster allocated and sets the zero flag on it.
    tool_ok("qemu-io -f qcow2 -c 'write -P 0xab 0 192k' -c 'write -z 0 64k' -c 'write -z 128k 64k' " + path);
    const auto d = read_bytes(path);
    REQUIRE((get_be64(d, l2_table_of(d, 0)) & 0x00fffffffffffe01ULL) > 1); // allocated and zero: what this tests
    auto expected = convert_raw(dir, path);
    {
        auto img = open_ok(path, true);
        CHECK(read_via(*img, 0, img->size()) == expected);
    }
    {
        auto img = open_ok(path, false);
        write_via(*img, 4096, std::vector<uint8_t>(4096, 0xcd)); // partial: the rest must stay zero
        std::fill_n(expected.begin() + 4096, 4096, 0xcd);
        write_via(*img, 128 * 1024, std::vector<uint8_t>(64 * 1024, 0xef)); // whole cluster
        std::fill_n(expected.begin() + 128 * 1024, 64 * 1024, 0xef);
        CHECK(read_via(*img, 0, img->size()) == expected);
    }
    check_clean(path);
    write_bytes(dir / "expected.raw", expected);
    tool_ok("qemu-img compare -f qcow2 -F raw " + path + " " + dir / "expected.raw");
}

TEST_CASE("qcow2 write: in place where qemu allocated, copy-on-write of partial clusters, the base untouched") {
    ScratchDir dir(kDirTemplate);
    const auto base = random_bytes(2 << 20, 9);
    write_bytes(dir / "base.raw", base);
    const std::string path = dir / "child.qcow2";
    tool_ok("qemu-img create -q -f qcow2 -o cluster_size=4096 -F raw -b base.raw " + path);
    tool_ok("qemu-io -f qcow2 -c 'write -P 0x10 8k 4k' " + path);
    auto expected = base;
    std::fill_n(expected.begin() + 8192, 4096, 0x10);
    const auto size_before = fs::file_size(path);
    {
        auto img = open_ok(path, false, open_raw_ro(dir / "base.raw"));
        CHECK_FALSE(img->read_only());
        // The cluster qemu wrote: mapped in place, nothing allocated.
        Extent ex[2];
        auto before = img->map_read(8192, 4096, ex);
        REQUIRE(before);
        const uint64_t host = ex[0].file_offset;
        auto m = img->map_write(8192 + 512, 1024, ex);
        REQUIRE(m);
        CHECK(m->count == 1);
        CHECK(ex[0].file_offset == host + 512);
        CHECK(fs::file_size(path) == size_before);
        // Odd sizes across cluster boundaries, each partial end copied from the base.
        std::mt19937 rng(11);
        for (int i = 0; i < 200; ++i) {
            const uint64_t off = rng() % ((2 << 20) / 512 - 40) * 512;
            const size_t len = (1 + rng() % 32) * 512;
            const auto bytes = random_bytes(len, static_cast<unsigned>(i));
            write_via(*img, off, bytes);
            std::copy(bytes.begin(), bytes.end(), expected.begin() + static_cast<long>(off));
        }
        CHECK(read_via(*img, 0, img->size()) == expected);
        CHECK(img->flush_metadata());
    }
    CHECK(read_bytes(dir / "base.raw") == base);
    check_clean(path);
    write_bytes(dir / "expected.raw", expected);
    tool_ok("qemu-img compare -f qcow2 -F raw " + path + " " + dir / "expected.raw");
    // Read-only: writes refused, file unchanged.
    const auto bytes = read_bytes(path);
    auto ro = open_ok(path, true, open_raw_ro(dir / "base.raw"));
    CHECK(ro->read_only());
    Extent ex[2];
    CHECK_FALSE(ro->map_write(0, 512, ex));
    CHECK(read_bytes(path) == bytes);
}

TEST_CASE("qcow2 write: our own image without backing, 512-byte clusters: new L2 tables, refcount blocks and table") {
    ScratchDir dir(kDirTemplate);
    const std::string path = dir / "grow.qcow2";
    {
        auto fd = Fd::open(path, O_RDWR | O_CREAT | O_EXCL, 0644);
        REQUIRE(fd);
        REQUIRE(qcow2::create(fd->get(), {uint64_t{64} << 20, "", "", 9}));
    }
    std::vector<uint8_t> expected(64 << 20, 0);
    {
        auto img = open_ok(path, false);
        CHECK(img->describe() == "qcow2 '" + path + "'");
        // Spread writes: every one needs its own L2 table (64 guest clusters per table).
        for (uint64_t off = 0; off < expected.size(); off += 40 * 1024) {
            std::vector<uint8_t> b(1024, 0x99); // two whole 512-byte clusters
            std::fill_n(b.begin(), 700, static_cast<uint8_t>(off >> 10));
            write_via(*img, off, b);
            std::copy(b.begin(), b.end(), expected.begin() + static_cast<long>(off));
        }
        // Then enough clusters for several refcount blocks (256 clusters each) and a
        // refcount table that grows past its first cluster (64 blocks).
        const auto big = random_bytes(12 << 20, 5);
        write_via(*img, 20 << 20, big);
        std::copy(big.begin(), big.end(), expected.begin() + (20 << 20));
        CHECK(read_via(*img, 0, img->size()) == expected);
    }
    const auto d = read_bytes(path);
    const uint64_t rt_clusters = get_be64(d, 56) >> 32;
    CHECK(rt_clusters > 1); // the refcount table grew
    check_clean(path);
    write_bytes(dir / "expected.raw", expected);
    tool_ok("qemu-img compare -f qcow2 -F raw " + path + " " + dir / "expected.raw");
}

TEST_CASE("qcow2 write: four threads allocating at once leave a consistent image") {
    ScratchDir dir(kDirTemplate);
    const std::string path = dir / "mt.qcow2";
    write_bytes(dir / "base.raw", random_bytes(8 << 20, 12));
    tool_ok("qemu-img create -q -f qcow2 -o cluster_size=4096 -F raw -b base.raw " + path);
    auto expected = read_bytes(dir / "base.raw");
    {
        auto img = open_ok(path, false, open_raw_ro(dir / "base.raw"));
        std::vector<std::thread> threads;
        for (unsigned t = 0; t < 4; ++t)
            threads.emplace_back([&, t] {
                // Disjoint stripes of 3 KiB at odd places: allocation and copy-on-write race.
                for (uint64_t off = t * 3072; off + 3072 <= expected.size(); off += 4 * 3072 * 5) {
                    PageBuffer b(3072);
                    std::fill_n(b.p, 3072, static_cast<uint8_t>(t + 1));
                    Extent ex[4];
                    uint64_t pos = 0;
                    while (pos < 3072) {
                        auto m = img->map_write(off + pos, 3072 - pos, ex);
                        if (!m) return;
                        uint64_t at = pos;
                        for (size_t i = 0; i < m->count; ++i) {
                            if (::pwrite(ex[i].fd, b.p + at, ex[i].length, static_cast<off_t>(ex[i].file_offset)) < 0)
                                return;
                            at += ex[i].length;
                        }
                        pos += m->covered;
                    }
                }
            });
        for (auto& th : threads) th.join();
        for (unsigned t = 0; t < 4; ++t)
            for (uint64_t off = t * 3072; off + 3072 <= expected.size(); off += 4 * 3072 * 5)
                std::fill_n(expected.begin() + static_cast<long>(off), 3072, static_cast<uint8_t>(t + 1));
        CHECK(read_via(*img, 0, img->size()) == expected);
    }
    check_clean(path);
    write_bytes(dir / "expected.raw", expected);
    tool_ok("qemu-img compare -f qcow2 -F raw " + path + " " + dir / "expected.raw");
}

TEST_CASE("qcow2 write: O_DIRECT with 4 KiB alignment reads and writes a chain exactly") {
    ScratchDir dir(kDirTemplate);
    const auto base = random_bytes(4 << 20, 13);
    write_bytes(dir / "base.raw", base);
    const std::string path = dir / "direct.qcow2";
    tool_ok("qemu-img create -q -f qcow2 -o cluster_size=65536 -F raw -b base.raw " + path);
    tool_ok("qemu-io -f qcow2 -c 'write -P 0x71 128k 64k' " + path);
    auto expected = convert_raw(dir, path);
    {
        auto fd = Fd::open(dir / "base.raw", O_RDONLY | O_DIRECT);
        REQUIRE(fd);
        auto b = open_raw(std::move(*fd), dir / "base.raw", true, 4096);
        REQUIRE(b);
        auto img = open_ok(path, false, std::move(*b), 4096);
        CHECK(img->alignment() == 4096);
        for (uint64_t off : {uint64_t{4096}, uint64_t{130} << 10, uint64_t{1} << 20, (uint64_t{4} << 20) - 8192}) {
            const auto bytes = random_bytes(8192, static_cast<unsigned>(off));
            write_via(*img, off, bytes);
            std::copy(bytes.begin(), bytes.end(), expected.begin() + static_cast<long>(off));
        }
        CHECK(read_via(*img, 0, img->size()) == expected);
    }
    CHECK(read_bytes(dir / "base.raw") == base);
    check_clean(path);
    write_bytes(dir / "expected.raw", expected);
    tool_ok("qemu-img compare -f qcow2 -F raw " + path + " " + dir / "expected.raw");

    // Clusters smaller than the O_DIRECT block: refused at open with a reason, or read right.
    tool_ok("qemu-img create -q -f qcow2 -o cluster_size=512 " + dir / "tiny.qcow2" + " 1M");
    tool_ok("qemu-io -f qcow2 -c 'write -P 0x72 1k 3k' " + dir / "tiny.qcow2");
    auto tiny = try_open(dir / "tiny.qcow2", true, nullptr, 4096);
    if (tiny) {
        Extent ex[4];
        auto m = (*tiny)->map_read(0, 4096, ex);
        CHECK_MESSAGE(m, m.error().message());
    } else {
        CHECK_MESSAGE(tiny.error().message().find("512") != std::string::npos, tiny.error().message());
    }
}

TEST_CASE("qcow2 write: internal snapshots stay intact - shared clusters are copied, never written in place") {
    ScratchDir dir(kDirTemplate);
    const std::string path = dir / "snap.qcow2";
    tool_ok("qemu-img create -q -f qcow2 " + path + " 1M");
    tool_ok("qemu-io -f qcow2 -c 'write -P 0x01 0 256k' " + path);
    tool_ok("qemu-img snapshot -c before " + path);
    tool_ok("qemu-io -f qcow2 -c 'write -P 0x02 64k 64k' " + path); // active L1 now differs
    auto expected = convert_raw(dir, path);
    {
        auto img = open_ok(path, true);
        CHECK(read_via(*img, 0, img->size()) == expected);
    }
    auto img = try_open(path, false);
    if (!img) { // refusing is safe, if it says why
        CHECK_MESSAGE(img.error().message().find("snapshot") != std::string::npos, img.error().message());
        return;
    }
    write_via(**img, 512, std::vector<uint8_t>(1024, 0x03));      // shared with the snapshot
    write_via(**img, 64 * 1024, std::vector<uint8_t>(512, 0x04)); // the active image's own
    std::fill_n(expected.begin() + 512, 1024, 0x03);
    std::fill_n(expected.begin() + 64 * 1024, 512, 0x04);
    img->reset();
    check_clean(path);
    write_bytes(dir / "expected.raw", expected);
    tool_ok("qemu-img compare -f qcow2 -F raw " + path + " " + dir / "expected.raw");
    tool_ok("qemu-img convert -l snapshot.name=before -O raw " + path + " " + dir / "snap.raw");
    const auto snap = read_bytes(dir / "snap.raw");
    CHECK(std::all_of(snap.begin(), snap.begin() + 256 * 1024, [](uint8_t b) { return b == 0x01; }));
}

TEST_CASE("qcow2 hostile: tables pointing at metadata, past the file or off alignment give errors, not damage") {
    ScratchDir dir(kDirTemplate);
    const std::string good = dir / "good.qcow2";
    tool_ok("qemu-img create -q -f qcow2 -o cluster_size=4096 " + good + " 1M");
    tool_ok("qemu-io -f qcow2 -c 'write -P 0x61 0 8k' " + good);
    const auto pristine = read_bytes(good);
    const uint64_t l1 = get_be64(pristine, 40), l2 = l2_table_of(pristine, 0), rt = get_be64(pristine, 48);
    const uint64_t copied = 1ULL << 63;
    auto patched = [&](const std::string& name, uint64_t at, uint64_t value) {
        auto d = pristine;
        set_be64(d, at, value);
        write_bytes(dir / name, d);
        return dir / name;
    };
    // A data cluster that is really the L1 table, the refcount table, its own L2 table or
    // the refcount block: a write there would destroy the image, so map_write refuses it.
    for (uint64_t target : {l1, rt, l2, get_be64(pristine, rt)}) {
        CAPTURE(target);
        const auto p = patched("meta.qcow2", l2 + 8, target | copied);
        auto img = try_open(p, false);
        if (!img) continue; // refused at open: fine too
        Extent ex[4];
        auto m = (*img)->map_write(4096, 4096, ex);
        if (m) {
            for (size_t i = 0; i < m->count; ++i) {
                const bool overlaps = ex[i].file_offset < target + 4096 && ex[i].file_offset + ex[i].length > target;
                CHECK_MESSAGE(!overlaps, "guest write mapped onto metadata at " << target);
            }
        } else {
            CHECK_MESSAGE(m.error().message().find("metadata") != std::string::npos, m.error().message());
        }
    }
    // An L2 table or refcount block inside other metadata: an allocating write would put
    // an L2 entry or a refcount there, so a writer refuses the image at open; a reader may
    // go on (it writes nothing).
    for (const auto& p : {patched("l2-in-l1.qcow2", l1, l1 | copied), patched("l2-in-rt.qcow2", l1, rt | copied),
                          patched("rb-in-l1.qcow2", rt, l1), patched("rb-on-l2.qcow2", rt, l2)}) {
        CAPTURE(p);
        const auto before = read_bytes(p);
        auto img = try_open(p, false);
        REQUIRE_FALSE(img);
        CHECK_MESSAGE(img.error().message().find("inside other metadata") != std::string::npos,
                      img.error().message());
        CHECK(read_bytes(p) == before);
    }
    // An L1 entry off cluster alignment, an L2 table past the end of the file, a data
    // cluster past the end of the file: errors or zeros, never a crash or a hang.
    const auto unaligned = patched("unaligned.qcow2", l1, (l2 + 512) | copied);
    auto u = try_open(unaligned, true);
    if (u) {
        Extent ex[4];
        CHECK_FALSE((*u)->map_read(0, 4096, ex));
    }
    for (const auto& p : {patched("l2-far.qcow2", l1, (uint64_t{1} << 40) | copied),
                          patched("data-far.qcow2", l2, (uint64_t{1} << 40) | copied),
                          patched("data-unaligned.qcow2", l2, (uint64_t{5} << 9) | copied)}) {
        CAPTURE(p);
        auto img = try_open(p, true);
        if (!img) continue;
        Extent ex[4];
        auto m = (*img)->map_read(0, 8192, ex);
        if (m && ex[0].kind == Extent::Kind::Data) CHECK(ex[0].file_offset % 512 == 0);
    }
}
