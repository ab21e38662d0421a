// Disk images without a VM: the --disk spec, raw and qcow2 images read and written
// through the same map_read/map_write calls the virtio-blk workers use, with QEMU's
// own tools (qemu-img, qemu-io) as the referee for the format and the locks.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "devices/block/disk.hpp"
#include "devices/block/qcow2.hpp"
#include "devices/virtio/blk.hpp"
#include "test_disk_tools.hpp"

using namespace kiln;
using namespace kiln::block;
using namespace kiln::test;
namespace fs = std::filesystem;

TEST_CASE("disk spec: every key, and one clear line for each mistake") {
    auto s = parse_disk_spec("path=/a/b.qcow2,format=qcow2,readonly=on,cache=none,queues=4,serial=KILN-1");
    REQUIRE_MESSAGE(s, s.error().message());
    CHECK(s->path == "/a/b.qcow2");
    CHECK(s->format == Format::Qcow2);
    CHECK(s->read_only);
    CHECK_FALSE(s->snapshot);
    CHECK(s->cache == Cache::None);
    CHECK(s->queues == 4);
    CHECK(s->serial == "KILN-1");
    auto sc = parse_disk_spec("scratch=2G,queues=2");
    REQUIRE(sc);
    CHECK(sc->scratch_size == (uint64_t(2) << 30));
    CHECK(sc->path.empty());

    CHECK(spec_error("path=a,cache=maybe") == "disk spec 'path=a,cache=maybe': cache must be none or writeback, not 'maybe'");
    CHECK(spec_error("path=a,format=vhd") == "disk spec 'path=a,format=vhd': format must be raw or qcow2, not 'vhd'");
    CHECK(spec_error("path=a,bogus=1").find("unknown key 'bogus'") != std::string::npos);
    CHECK(spec_error("path=a,queues=0") == "disk spec 'path=a,queues=0': queues must be a number from 1 to 16, not '0'");
    CHECK(spec_error("path=a,queues=17").find("1 to 16") != std::string::npos);
    CHECK(spec_error("path=a,path=b") == "disk spec 'path=a,path=b': path is given twice");
    CHECK(spec_error("path=") == "disk spec 'path=': path needs a value");
    CHECK(spec_error("path=a,,readonly=on").find("empty item") != std::string::npos);
    CHECK(spec_error("path=a,") .find("empty item") != std::string::npos);
    CHECK(spec_error("a.img") == "disk spec 'a.img': 'a.img' is not key=value");
    CHECK(spec_error("readonly=on") == "disk spec 'readonly=on': needs path=FILE or scratch=SIZE");
    CHECK(spec_error("scratch=12Q").find("invalid size '12Q'") != std::string::npos);
    CHECK(spec_error("scratch=1000").find("multiple of 512") != std::string::npos);
    CHECK(spec_error("scratch=1G,path=a") == "disk spec 'scratch=1G,path=a': a scratch disk takes no path");
    CHECK(spec_error("path=a,readonly=yes") == "disk spec 'path=a,readonly=yes': readonly must be on or off, not 'yes'");
    CHECK(spec_error("path=a,serial=012345678901234567890").find("longer than 20 bytes") != std::string::npos);
    CHECK(spec_error("path=a,serial=a\tb").find("printable") != std::string::npos);
    CHECK(spec_error("=x") == "disk spec '=x': '=x' has no key before '='");
    CHECK(spec_error("path=a,readonly=on,snapshot=on").find("pick one") != std::string::npos);
}

TEST_CASE("raw: one extent per request, read-only refuses writes, discard and write-zeroes") {
    ScratchDir dir;
    const auto data = random_bytes(1 << 20, 1);
    write_bytes(dir / "d.raw", data);
    {
        auto img = open_ok("path=" + dir / "d.raw");
        CHECK(std::string(img->format()) == "raw");
        CHECK(img->size() == data.size());
        CHECK(read_via(*img, 4096, 8192) == std::vector<uint8_t>(data.begin() + 4096, data.begin() + 12288));
        write_via(*img, 512, std::vector<uint8_t>(1024, 0xab));
        REQUIRE(img->supports_write_zeroes()); // /tmp: ext4 or tmpfs here
        REQUIRE(img->write_zeroes(65536, 65536, false));
        REQUIRE(img->discard(131072, 65536));
    }
    auto after = read_bytes(dir / "d.raw");
    auto expected = data;
    std::fill_n(expected.begin() + 512, 1024, 0xab);
    std::fill_n(expected.begin() + 65536, 131072, 0);
    CHECK(after == expected);

    auto ro = open_ok("path=" + dir / "d.raw" + ",readonly=on");
    CHECK(ro->read_only());
    Extent ex[1];
    CHECK_FALSE(ro->map_write(0, 512, ex));
    CHECK(read_bytes(dir / "d.raw") == expected);

    write_bytes(dir / "empty.raw", {});
    CHECK(open_error("path=" + dir / "empty.raw") == "disk '" + dir / "empty.raw" + "': the file is empty");
    CHECK(open_error("path=" + dir / "missing.raw") ==
          "disk '" + dir / "missing.raw" + "': No such file or directory");
    CHECK(open_error("path=" + dir / "d.raw" + ",format=qcow2,readonly=on") ==
          "disk '" + dir / "d.raw" + "' is not a qcow2 image (format=qcow2)");
}

TEST_CASE("qcow2: images written by qemu-io read back exactly, through a chain raw <- qcow2 <- qcow2") {
    ScratchDir dir;
    const std::string base = dir / "base.raw", mid = dir / "mid.qcow2", top = dir / "top.qcow2";
    write_bytes(base, random_bytes(4 << 20, 2));
    tool_ok("qemu-img create -q -f qcow2 -F raw -b " + base + " " + mid);
    tool_ok("qemu-io -f qcow2 -c 'write -P 0x11 0 64k' -c 'write -P 0x22 100k 3k' -c 'write -z 1m 128k' " + mid);
    tool_ok("qemu-img create -q -f qcow2 -o cluster_size=4096 -F qcow2 -b mid.qcow2 " + top); // relative name
    tool_ok("qemu-io -f qcow2 -c 'write -P 0x33 60k 8k' -c 'write -P 0x44 3m 4k' " + top);
    tool_ok("qemu-img convert -O raw " + top + " " + dir / "expected.raw");
    const auto expected = read_bytes(dir / "expected.raw");
    auto img = open_ok("path=" + top + ",readonly=on");
    CHECK(std::string(img->format()) == "qcow2");
    CHECK(img->describe() == "qcow2 '" + top + "' over qcow2 '" + dir / "mid.qcow2" + "' over raw '" + base + "'");
    REQUIRE(img->size() == expected.size());
    CHECK(read_via(*img, 0, img->size()) == expected);
    CHECK(read_via(*img, 99 * 1024, 5120) ==
          std::vector<uint8_t>(expected.begin() + 99 * 1024, expected.begin() + 104 * 1024));
}

TEST_CASE("qcow2: writes into a child keep the base untouched - qemu-img check is clean and compare exact") {
    ScratchDir dir;
    const std::string base = dir / "base.raw", child = dir / "child.qcow2";
    const auto data = random_bytes(8 << 20, 3);
    write_bytes(base, data);
    for (const char* how : {"kiln", "qemu-img"}) {
        CAPTURE(how);
        fs::remove(child);
        if (std::string(how) == "kiln") {
            REQUIRE(create_image({child, "base.raw", Format::Auto, std::nullopt, 16}));
        } else {
            tool_ok("qemu-img create -q -f qcow2 -F raw -b base.raw " + child);
        }
        tool_ok("qemu-img check -q " + child);
        auto expected = data;
        {
            auto img = open_ok("path=" + child);
            // A partial cluster at each end, a whole cluster, a write across an L2 boundary
            // and one past the backing file's data.
            struct W {
                uint64_t off;
                size_t len;
                uint8_t byte;
            } writes[] = {{512, 1536, 0xa1}, {65536, 65536, 0xb2}, {200 * 1024 + 512, 300 * 1024, 0xc3},
                          {(8 << 20) - 4096, 4096, 0xd4}, {1024, 512, 0xe5}};
            for (const auto& w : writes) {
                write_via(*img, w.off, std::vector<uint8_t>(w.len, w.byte));
                std::fill_n(expected.begin() + static_cast<long>(w.off), w.len, w.byte);
            }
            CHECK(read_via(*img, 0, img->size()) == expected);
        }
        CHECK(read_bytes(base) == data);
        tool_ok("qemu-img check " + child);
        write_bytes(dir / "expected.raw", expected);
        tool_ok("qemu-img compare -f qcow2 -F raw " + child + " " + dir / "expected.raw");
    }
}

TEST_CASE("qcow2: thousands of small clusters grow the refcount table - qemu-img finds no leak") {
    ScratchDir dir;
    const std::string img_path = dir / "small.qcow2";
    REQUIRE(create_image({img_path, "", Format::Auto, uint64_t(16) << 20, 9})); // 512-byte clusters
    std::vector<uint8_t> expected(16 << 20, 0);
    {
        auto img = open_ok("path=" + img_path);
        std::mt19937 rng(4);
        for (int i = 0; i < 3000; ++i) {
            const uint64_t off = (rng() % (expected.size() / 512)) * 512;
            const std::vector<uint8_t> block(512, static_cast<uint8_t>(i));
            write_via(*img, off, block);
            std::copy(block.begin(), block.end(), expected.begin() + static_cast<long>(off));
        }
        write_via(*img, 0, std::vector<uint8_t>(1 << 20, 0x5a)); // 2048 clusters in one go
        std::fill_n(expected.begin(), 1 << 20, 0x5a);
        CHECK(read_via(*img, 0, img->size()) == expected);
    }
    auto r = run_tool("qemu-img check " + img_path);
    CHECK_MESSAGE(r.status == 0, r.out);
    CHECK(r.out.find("No errors were found") != std::string::npos);
    CHECK(r.out.find("leaked") == std::string::npos);
    write_bytes(dir / "expected.raw", expected);
    tool_ok("qemu-img compare -f qcow2 -F raw " + img_path + " " + dir / "expected.raw");
}

TEST_CASE("qcow2: a 1 TiB child costs what a 1 GiB one does") {
    ScratchDir dir;
    for (const char* size : {"1G", "1T"}) {
        const std::string base = dir / (std::string("base-") + size + ".qcow2");
        tool_ok("qemu-img create -q -f qcow2 " + base + " " + size);
        const std::string child = dir / (std::string("child-") + size + ".qcow2");
        REQUIRE(create_image({child, fs::path(base).filename().string(), Format::Auto, std::nullopt, 16}));
        CHECK(fs::file_size(child) <= 256 * 1024); // header, refcounts, one L1 cluster
        tool_ok("qemu-img check -q " + child);
    }
}

TEST_CASE("qcow2: broken, encrypted and dirty images give one clear error and stay unchanged") {
    ScratchDir dir;
    const std::string good = dir / "good.qcow2";
    tool_ok("qemu-img create -q -f qcow2 " + good + " 4M");
    const auto pristine = read_bytes(good);
    auto patched = [&](const std::string& name, size_t at, std::vector<uint8_t> bytes) {
        auto d = pristine;
        std::copy(bytes.begin(), bytes.end(), d.begin() + static_cast<long>(at));
        write_bytes(dir / name, d);
        return dir / name;
    };
    struct Case {
        std::string path, message;
    } cases[] = {
        {patched("v4.qcow2", 4, {0, 0, 0, 4}), "version 4 is not supported"},
        {patched("cb.qcow2", 20, {0, 0, 0, 30}), "cluster_bits 30 is out of range (9..21)"},
        {patched("crypt.qcow2", 32, {0, 0, 0, 1}), "the image is encrypted"},
        {patched("incompat.qcow2", 72, {0, 0, 0, 0, 0, 0, 1, 0}), "unknown incompatible features 0x100"},
        {patched("corrupt.qcow2", 72, {0, 0, 0, 0, 0, 0, 0, 2}), "marked corrupt"},
        {patched("l1.qcow2", 36, {0x7f, 0, 0, 0}), "l1_size 2130706432 is too large"},
        {patched("l1off.qcow2", 40, {0, 0, 0, 0, 0, 0, 0x12, 0x34}), "l1_table_offset 0x1234 is invalid"},
        // Bytes 72..104: incompatible (compression bit), compatible, autoclear,
        // refcount_order 4, header_length 112, then the compression type.
        {patched("ctype.qcow2", 72, {0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                     0, 0, 0, 4, 0, 0, 0, 0x70, 2}),
         "compression type 2 is not supported (0 zlib, 1 zstd)"},
        {patched("cbit.qcow2", 104, {1}), "compression type 1 without the compression-type incompatible bit"},
        {patched("zbit.qcow2", 72, {0, 0, 0, 0, 0, 0, 0, 8}), "the compression-type incompatible bit is set for type 0"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.path);
        const auto before = read_bytes(c.path);
        const auto e = open_error("path=" + c.path);
        CHECK_MESSAGE(e.find(c.message) != std::string::npos, e);
        CHECK(e.starts_with("disk '" + c.path + "'"));
        CHECK(read_bytes(c.path) == before);
    }
    write_bytes(dir / "short.qcow2", std::vector<uint8_t>(pristine.begin(), pristine.begin() + 40));
    CHECK(open_error("path=" + dir / "short.qcow2").find("shorter than a qcow2 header") != std::string::npos);

    // Dirty: readable, not writable.
    const auto dirty = patched("dirty.qcow2", 72, {0, 0, 0, 0, 0, 0, 0, 1});
    CHECK(open_error("path=" + dirty).find("qemu-img check -r all") != std::string::npos);
    CHECK(open_disk(*parse_disk_spec("path=" + dirty + ",readonly=on")));

    // A backing file that is missing.
    tool_ok("qemu-img create -q -f qcow2 -F raw -u -b gone.raw " + dir / "orphan.qcow2" + " 1M");
    const auto e = open_error("path=" + dir / "orphan.qcow2");
    CHECK_MESSAGE(e.find("gone.raw") != std::string::npos, e);
    CHECK(e.find("No such file or directory") != std::string::npos);
}

TEST_CASE("snapshot=on and scratch: writes land in an unlinked file - the base is bit-identical") {
    ScratchDir dir, tmp;
    const std::string base = dir / "base.raw";
    const auto data = random_bytes(4 << 20, 5);
    write_bytes(base, data);
    struct TmpdirGuard {
        explicit TmpdirGuard(const char* dir) { ::setenv("TMPDIR", dir, 1); }
        ~TmpdirGuard() { ::unsetenv("TMPDIR"); }
    } tmpdir(tmp.path.c_str());
    for (const char* cache : {"writeback", "none"}) {
        CAPTURE(cache);
        auto img = open_ok("path=" + base + ",snapshot=on,cache=" + cache);
        CHECK_FALSE(img->read_only());
        write_via(*img, 4096 + 512, std::vector<uint8_t>(70000 - 70000 % 512, 0x77));
        auto expected = data;
        std::fill_n(expected.begin() + 4608, 70000 - 70000 % 512, 0x77);
        CHECK(read_via(*img, 0, img->size()) == expected);
        CHECK(fs::is_empty(tmp.path)); // O_TMPFILE: never a name
        CHECK(read_bytes(base) == data);
    }
    auto scratch = open_ok("scratch=64M");
    CHECK(scratch->size() == 64u << 20);
    write_via(*scratch, 1 << 20, std::vector<uint8_t>(4096, 1));
    CHECK(read_via(*scratch, (1 << 20) - 512, 1024) ==
          [] { std::vector<uint8_t> v(1024, 0); std::fill(v.begin() + 512, v.end(), 1); return v; }());
    CHECK(fs::is_empty(tmp.path));
}

TEST_CASE("locks: one writer per image, any number of readers, and QEMU sees Kiln's locks (and the reverse)") {
    ScratchDir dir;
    const std::string img_path = dir / "d.raw";
    write_bytes(img_path, random_bytes(1 << 20, 6));
    {
        auto writer = open_ok("path=" + img_path);
        CHECK(open_error("path=" + img_path) ==
              "disk '" + img_path +
                  "' is locked by another process that does not share \"write\" access (a VM is using it): refusing "
                  "to open it for writing");
        CHECK(open_error("path=" + img_path + ",readonly=on") ==
              "disk '" + img_path +
                  "' is locked by another process that has \"write\" access (a VM is using it): refusing to open it "
                  "for reading");
        // QEMU, a real peer: its write is refused while Kiln holds the image.
        auto q = run_tool("qemu-io -f raw -c 'write 0 512' " + img_path);
        CHECK(q.status != 0);
        CHECK_MESSAGE(q.out.find("Failed to get \"write\" lock") != std::string::npos, q.out);
    }
    {
        auto r1 = open_ok("path=" + img_path + ",readonly=on");
        auto r2 = open_ok("path=" + img_path + ",snapshot=on"); // a base is read too
        auto r3 = open_ok("path=" + img_path + ",readonly=on");
        CHECK(open_error("path=" + img_path).find("does not share \"write\" access") != std::string::npos);
    }
    // And the reverse: QEMU holding the image for writing keeps Kiln out.
    tool_ok("qemu-img create -q -f qcow2 " + dir / "q.qcow2" + " 1M");
    const std::string fifo = dir / "ctl";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    // qemu-io keeps the image open until its stdin (the FIFO) reaches EOF.
    const std::string cmd = "qemu-io -f qcow2 " + dir / "q.qcow2" + " < " + fifo + " > /dev/null 2>&1 &";
    REQUIRE(std::system(cmd.c_str()) == 0);
    const int ctl = ::open(fifo.c_str(), O_WRONLY);
    REQUIRE(ctl >= 0);
    // Until qemu-io has the image open and locked (30 s: slow under load). Watched in
    // /proc/locks, not by opening it: an open by this test would take the lock bytes
    // itself, and a qemu-io starting at that moment would fail and quit.
    for (int i = 0; i < 600 && ofd_locks_on(dir / "q.qcow2") < 2; ++i) ::usleep(50'000);
    std::string e;
    auto d = open_disk(*parse_disk_spec("path=" + dir / "q.qcow2"));
    if (!d) e = d.error().message();
    ::close(ctl); // qemu-io reads EOF and quits
    CHECK_MESSAGE(e.find("is locked by another process") != std::string::npos, e);
}

TEST_CASE("virtio-blk: the ring watch needs a CPU no vCPU needs, and an out-of-range one is refused") {
    using std::chrono::microseconds;
    const auto standard = kiln::virtio::VirtioBlk::Options{}.ring_watch;
    CHECK(standard > microseconds(0));
    CHECK(kiln::virtio::VirtioBlk::ring_watch_for(2, 1) == standard);
    CHECK(kiln::virtio::VirtioBlk::ring_watch_for(64, 8) == standard);
    CHECK(kiln::virtio::VirtioBlk::ring_watch_for(1, 1) == microseconds(0)); // a one-CPU batch slot
    CHECK(kiln::virtio::VirtioBlk::ring_watch_for(4, 4) == microseconds(0));
    CHECK(kiln::virtio::VirtioBlk::ring_watch_for(2, 8) == microseconds(0)); // oversubscribed

    ScratchDir dir;
    write_bytes(dir / "d.raw", std::vector<uint8_t>(65536, 0));
    kiln::virtio::VirtioBlk::Options opt;
    opt.ring_watch = microseconds(-1);
    auto bad = kiln::virtio::VirtioBlk::create(open_ok("path=" + dir / "d.raw"), opt);
    REQUIRE_FALSE(bad);
    CHECK(bad.error().message().find("ring watch") != std::string::npos);
    opt.ring_watch = microseconds(0);
    CHECK(kiln::virtio::VirtioBlk::create(open_ok("path=" + dir / "d.raw"), opt));
}
