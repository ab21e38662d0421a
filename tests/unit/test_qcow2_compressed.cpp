// Compressed qcow2 clusters (zlib and zstd), as `qemu-img convert -c` writes them and
// distro cloud images ship: read exactly, copied-on-write into a child, rewritten
// uncompressed when written in place - with qemu-img check and compare as the referee.
#include <doctest/doctest.h>

#include <libdeflate.h>

#include <functional>
#include <string>
#include <vector>

#include "devices/block/cluster_inflater.hpp"
#include "devices/block/disk.hpp"
#include "test_disk_tools.hpp"
#include "tests/support/files.hpp"

using namespace kiln;
using namespace kiln::block;
using namespace kiln::test;

namespace {

// 3 MiB + 20 KiB (not a whole number of clusters): compressible text-like runs, an
// incompressible stretch (qemu-img stores those clusters plain), and zeros.
std::vector<uint8_t> mixed_contents() {
    std::vector<uint8_t> d(3 * 1024 * 1024 + 20 * 1024, 0);
    for (size_t i = 0; i < 1024 * 1024; ++i) d[i] = static_cast<uint8_t>("kiln compresses "[i % 16] + (i >> 14));
    const auto noise = random_bytes(512 * 1024, 7);
    std::copy(noise.begin(), noise.end(), d.begin() + 1024 * 1024);
    for (size_t i = 2 * 1024 * 1024; i < d.size() - 4096; ++i) d[i] = static_cast<uint8_t>(i * 31 / 4096);
    return d;
}

int compressed_clusters(const std::string& image) {
    auto r = run_tool("qemu-img check --output=json " + image + " | sed -n 's/.*\"compressed-clusters\": \\([0-9]*\\).*/\\1/p'");
    return r.out.empty() ? -1 : std::stoi(r.out);
}

// `data` as a zlib-compressed qcow2 image made by qemu-img: its path.
std::string compressed_image(const ScratchDir& dir, const std::vector<uint8_t>& data, const std::string& name) {
    write_bytes(dir / "src.raw", data);
    tool_ok("qemu-img convert -q -c -O qcow2 " + dir / "src.raw" + " " + dir / name);
    return dir / name;
}

void put_be64(std::vector<uint8_t>& b, uint64_t at, uint64_t v) {
    for (int i = 7; i >= 0; --i, v >>= 8) b.at(at + static_cast<uint64_t>(i)) = static_cast<uint8_t>(v);
}

struct Fill {
    uint64_t offset, length;
    uint8_t byte;
};
// Writes each fill through map_write and into `expected`, then reads the whole image
// back through map_read: it must be `expected`.
void write_fills(DiskImage& d, std::vector<uint8_t>& expected, std::initializer_list<Fill> fills) {
    for (const Fill& f : fills) {
        write_via(d, f.offset, std::vector<uint8_t>(f.length, f.byte));
        std::fill_n(expected.begin() + static_cast<long>(f.offset), f.length, f.byte);
    }
    CHECK(read_via(d, 0, expected.size()) == expected);
}

} // namespace

TEST_CASE("qcow2 compressed: zlib and zstd images from qemu-img read exactly, buffered and O_DIRECT") {
    ScratchDir dir("/var/tmp/kiln-test-XXXXXX");
    const auto data = mixed_contents();
    write_bytes(dir / "src.raw", data);
    for (const std::string type : {"zlib", "zstd"}) {
        for (const std::string cs : {"65536", "4096"}) {
            CAPTURE(type);
            CAPTURE(cs);
            const std::string img = dir / ("c-" + type + "-" + cs + ".qcow2");
            tool_ok("qemu-img convert -q -c -O qcow2 -o compression_type=" + type + ",cluster_size=" + cs + " " +
                    dir / "src.raw" + " " + img);
            CHECK(compressed_clusters(img) > 0);
            for (const std::string cache : {"writeback", "none"}) {
                auto d = open_ok("path=" + img + ",readonly=on,cache=" + cache);
                CHECK(read_via(*d, 0, data.size(), 3) == data);
                // Ranges that start and end inside clusters, across compressed/plain/zero.
                for (uint64_t off : {512ULL, 61440ULL, 1048064ULL, 2 * 1024 * 1024ULL - 4096}) {
                    const uint64_t len = 3 * 65536 + 1024;
                    const std::vector<uint8_t> want(data.begin() + static_cast<long>(off),
                                                    data.begin() + static_cast<long>(off + len));
                    CHECK(read_via(*d, off, len, 2) == want);
                }
            }
        }
    }
}

TEST_CASE("qcow2 compressed: a worker's own InflateScratch serves images of both types and cluster sizes") {
    ScratchDir dir;
    const auto data = mixed_contents();
    write_bytes(dir / "src.raw", data);
    InflateScratch scratch; // one, as a queue worker has, across every image it meets
    for (const std::string spec : {"zstd,cluster_size=65536", "zlib,cluster_size=4096", "zlib,cluster_size=65536"}) {
        CAPTURE(spec);
        const std::string img = dir / "c.qcow2";
        tool_ok("qemu-img convert -q -c -O qcow2 -o compression_type=" + spec + " " + dir / "src.raw" + " " + img);
        auto d = open_ok("path=" + img + ",readonly=on");
        std::vector<uint8_t> got(data.size());
        Extent ex[16];
        uint64_t pos = 0, compressed = 0;
        while (pos < data.size()) {
            auto m = d->map_read(pos, data.size() - pos, ex);
            REQUIRE_MESSAGE(m, m.error().message());
            uint64_t at = pos;
            for (size_t i = 0; i < m->count; at += ex[i].length, ++i) {
                const iovec v{got.data() + at, ex[i].length};
                if (ex[i].kind == Extent::Kind::Zero) {
                    std::fill_n(got.data() + at, ex[i].length, 0);
                } else if (ex[i].kind == Extent::Kind::Data) {
                    REQUIRE(::pread(ex[i].fd, v.iov_base, v.iov_len, static_cast<off_t>(ex[i].file_offset)) ==
                            static_cast<ssize_t>(v.iov_len));
                } else {
                    // The worker's path: it reads the stored bytes, the image inflates them.
                    std::vector<uint8_t> stored(ex[i].stored);
                    const auto n = ::pread(ex[i].fd, stored.data(), stored.size(), static_cast<off_t>(ex[i].file_offset));
                    REQUIRE(n > 0);
                    auto r = ex[i].source->inflate_into(ex[i], std::span(stored).first(static_cast<size_t>(n)), {&v, 1},
                                                        scratch);
                    REQUIRE_MESSAGE(r, r.error().message());
                    ++compressed;
                }
            }
            pos += m->covered;
        }
        CHECK(compressed > 0);
        CHECK(got == data);
    }
}

TEST_CASE("qcow2 compressed: a child over a compressed base copies-on-write exactly, the base untouched") {
    ScratchDir dir;
    const auto data = mixed_contents();
    const std::string base = compressed_image(dir, data, "base.qcow2");
    const auto base_before = read_bytes(base);
    REQUIRE(create_image({dir / "child.qcow2", "base.qcow2", Format::Qcow2, std::nullopt, 16}));
    auto expected = data;
    {
        auto d = open_ok("path=" + dir / "child.qcow2");
        // Partial clusters inside compressed ones (copy-on-write) and a whole cluster.
        write_fills(*d, expected, {{4096, 8192, 0xa1}, {69632, 512, 0xa2}, {131072, 65536, 0xa3},
                                   {2 * 1024 * 1024 + 512, 1024, 0xa4}});
    }
    write_bytes(dir / "expected.raw", expected);
    tool_ok("qemu-img check -q " + dir / "child.qcow2");
    tool_ok("qemu-img compare -q -f qcow2 -F raw " + dir / "child.qcow2" + " " + dir / "expected.raw");
    CHECK(read_bytes(base) == base_before);
}

TEST_CASE("qcow2 compressed: writing into a compressed image rewrites those clusters plain, check finds it clean") {
    ScratchDir dir;
    const auto data = mixed_contents();
    const std::string img = compressed_image(dir, data, "c.qcow2");
    const int before = compressed_clusters(img);
    REQUIRE(before > 4);
    auto expected = data;
    {
        auto d = open_ok("path=" + img);
        write_fills(*d, expected, {{512, 512, 0x5a}, {65536, 65536, 0x5b}, {3 * 65536 + 100 * 512, 4096, 0x5c}});
    }
    write_bytes(dir / "expected.raw", expected);
    // No leaks, no errors: the compressed clusters' sectors lost their references
    // exactly as QEMU would free them.
    auto check = run_tool("qemu-img check " + img);
    CHECK_MESSAGE(check.status == 0, check.out);
    CHECK(check.out.find("No errors were found") != std::string::npos);
    CHECK(compressed_clusters(img) == before - 3);
    tool_ok("qemu-img compare -q -f qcow2 -F raw " + img + " " + dir / "expected.raw");
}

TEST_CASE("qcow2 compressed: hostile descriptors and broken streams are one clear error, nothing written") {
    ScratchDir dir;
    const std::string img = compressed_image(dir, std::vector<uint8_t>(1 << 20, 0x42), "c.qcow2");
    const auto pristine = read_bytes(img);
    auto be64 = [&](size_t at) {
        uint64_t v = 0;
        for (size_t i = 0; i < 8; ++i) v = v << 8 | pristine.at(at + i);
        return v;
    };
    // Guest cluster 15's L2 entry, found through L1[0] (64 KiB clusters: the
    // descriptor's low 54 bits are the byte offset, the next 8 the extra sectors).
    const uint64_t l2_entry_at = (be64(be64(40)) & 0x00fffffffffffe00ULL) + 8 * 15;
    const uint64_t entry = be64(l2_entry_at);
    REQUIRE((entry >> 62 & 1) == 1); // compressed
    const uint64_t stream = entry & ((1ULL << 54) - 1);
    constexpr uint64_t kCompressedBit = 1ULL << 62;
    struct Case {
        const char* what;
        std::function<void(std::vector<uint8_t>&)> patch;
        const char* message;
    } cases[] = {
        {"garbage at the stream's start", [&](auto& b) { std::fill_n(b.begin() + static_cast<long>(stream), 8, 0xff); },
         "the deflate stream is broken"},
        {"an offset past the end of the file",
         [&](auto& b) { put_be64(b, l2_entry_at, kCompressedBit | (pristine.size() + 4096)); },
         "lies past the end of the file"},
        {"the largest offset and sector count",
         [&](auto& b) { put_be64(b, l2_entry_at, kCompressedBit | (0xffULL << 54) | ((1ULL << 54) - 1)); },
         "lies past the end of the file"},
        {"the L1 table as a stream", [&](auto& b) { put_be64(b, l2_entry_at, kCompressedBit | be64(40)); },
         "deflate stream"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.what);
        auto bytes = pristine;
        c.patch(bytes);
        write_bytes(img, bytes);
        {
            auto d = open_ok("path=" + img + ",readonly=on");
            Extent ex[4];
            auto m = d->map_read(15 * 65536, 4096, ex);
            REQUIRE_MESSAGE(m, m.error().message());
            REQUIRE(ex[0].kind == Extent::Kind::Compressed);
            std::vector<uint8_t> out(4096);
            const iovec v{out.data(), out.size()};
            auto r = ex[0].source->read_compressed(ex[0], {&v, 1});
            REQUIRE_FALSE(r);
            CHECK_MESSAGE(r.error().message().find(c.message) != std::string::npos, r.error().message());
            CHECK(r.error().message().find("c.qcow2") != std::string::npos);
        }
        {
            // A partial write over it: refused before anything is allocated.
            auto d = open_ok("path=" + img);
            Extent ex[4];
            auto w = d->map_write(15 * 65536 + 512, 512, ex);
            REQUIRE_FALSE(w);
            CHECK_MESSAGE(w.error().message().find(c.message) != std::string::npos, w.error().message());
        }
        CHECK(read_bytes(img) == bytes);
    }
}

TEST_CASE("cluster inflater: whole clusters only - short, long and broken streams are refused") {
    std::vector<uint8_t> cluster(4096);
    for (size_t i = 0; i < cluster.size(); ++i) cluster[i] = static_cast<uint8_t>(i / 100);
    auto deflate_raw = [](const std::vector<uint8_t>& in) {
        libdeflate_compressor* c = libdeflate_alloc_compressor(9);
        REQUIRE(c);
        std::vector<uint8_t> out(libdeflate_deflate_compress_bound(c, in.size()));
        out.resize(libdeflate_deflate_compress(c, in.data(), in.size(), out.data(), out.size()));
        libdeflate_free_compressor(c);
        REQUIRE(!out.empty());
        return out;
    };
    auto z = ClusterInflater::create(Compression::Zlib);
    REQUIRE(z);
    const auto stream = deflate_raw(cluster);
    std::vector<uint8_t> out(4096);
    auto padded = stream;
    padded.resize(stream.size() + 300, 0xee); // sector padding after the stream: fine
    REQUIRE(z->inflate(padded, out));
    CHECK(out == cluster);
    // The same context again (reset per cluster).
    std::fill(out.begin(), out.end(), 0);
    REQUIRE(z->inflate(stream, out));
    CHECK(out == cluster);
    // A stream of half a cluster.
    auto half = deflate_raw(std::vector<uint8_t>(cluster.begin(), cluster.begin() + 2048));
    auto e = z->inflate(half, out);
    REQUIRE_FALSE(e);
    CHECK_MESSAGE(e.error().message().find("ends after 2048 of the cluster's 4096 bytes") != std::string::npos,
                  e.error().message());
    // Cut short.
    CHECK_FALSE(z->inflate(std::span(stream).first(stream.size() / 2), out));
    // Garbage.
    auto g = z->inflate(std::vector<uint8_t>(64, 0xff), out);
    REQUIRE_FALSE(g);
    CHECK(g.error().message() == "the deflate stream is broken");
    // More than a cluster.
    auto big = cluster;
    big.resize(2 * cluster.size(), 7);
    auto more = z->inflate(deflate_raw(big), out);
    REQUIRE_FALSE(more);
    CHECK(more.error().message() == "the deflate stream holds more than the cluster's 4096 bytes");
    CHECK(z->inflate(stream, out)); // and the context still works after errors
}
