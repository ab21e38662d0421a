// virtio-blk end to end: the test guest's ring-3 driver against Kiln's virtio-mmio
// virtio-blk on /dev/kvm, checked on both sides: what the guest read and reported, and
// what the host file holds afterwards (with qemu-img as the referee for qcow2).
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <csignal>
#include <unistd.h>

#include "tests/support/files.hpp"
#include "tests/support/process.hpp"

using namespace kiln::test;
using kiln::test::ProcessResult;
using kiln::test::run_kiln;
using kiln::test::run_process;
namespace fs = std::filesystem;

namespace {

constexpr uint64_t kSector = 512;

// zlib's CRC-32 (what the guest's job=blk-crc prints).
uint32_t crc32(const uint8_t* p, size_t n) {
    static const auto table = [] {
        std::array<uint32_t, 256> t{};
        for (uint32_t i = 0; i < 256; ++i) {
            uint32_t c = i;
            for (int k = 0; k < 8; ++k) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
            t[i] = c;
        }
        return t;
    }();
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; ++i) c = table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

ProcessResult boot(const std::string& cmdline, const std::vector<std::string>& disks, const char* kernel = TESTGUEST_ELF) {
    std::vector<std::string> args{"run", "--kernel", kernel, "--cmdline", cmdline, "--memory", "128M",
                                  "--timeout", "60"};
    for (const auto& d : disks) {
        args.push_back("--disk");
        args.push_back(d);
    }
    return run_kiln(args);
}

void check_exit(const ProcessResult& r, int expected) {
    INFO("stdout: " << r.out);
    INFO("stderr: " << r.err);
    REQUIRE_FALSE(r.timed_out);
    CHECK(r.term_signal == 0);
    CHECK(r.exit_code == expected);
}

std::string crc_line(const std::vector<uint8_t>& data, uint64_t sector, uint64_t count) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "crc32=%08x", crc32(data.data() + sector * kSector, count * kSector));
    return buf;
}

std::string qemu_img(const std::vector<std::string>& args, int* status = nullptr) {
    std::vector<std::string> argv{"qemu-img"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = run_process(argv);
    if (status) *status = r.exit_code;
    return r.out + r.err;
}

// A child image over `base` (whose guest view is `data`): the guest writes `count`
// sectors of `byte` at `sector` into it; the base stays as it was, qemu-img finds the
// child clean and exactly those writes, and a later VM reads them back.
void check_child_write(const fs::path& base, const char* base_format, const std::vector<uint8_t>& data,
                       uint64_t sector, uint64_t count, uint8_t byte) {
    const fs::path child = base.parent_path() / "child.qcow2", expected_file = base.parent_path() / "expected.raw";
    const auto base_before = read_bytes(base);
    int status = -1;
    auto out = qemu_img({"create", "-q", "-f", "qcow2", "-F", base_format, "-b", base.string(), child.string()}, &status);
    REQUIRE_MESSAGE(status == 0, out);
    auto r = boot(fmt::format("job=blk-write sector={} count={} byte={}", sector, count, byte), {"path=" + child.string()});
    check_exit(r, 0);
    CHECK(read_bytes(base) == base_before);
    out = qemu_img({"check", child.string()}, &status);
    CHECK_MESSAGE(status == 0, out);
    // The guest's view of the child must be the base with exactly those sectors changed.
    auto expected = data;
    std::fill(expected.begin() + static_cast<long>(sector * kSector),
              expected.begin() + static_cast<long>((sector + count) * kSector), byte);
    write_bytes(expected_file, expected);
    out = qemu_img({"compare", "-f", "qcow2", "-F", "raw", child.string(), expected_file.string()}, &status);
    CHECK_MESSAGE(status == 0, out);
    r = boot(fmt::format("job=blk-crc sector=0 count={}", data.size() / kSector), {"path=" + child.string()});
    check_exit(r, 0);
    CHECK(r.out.find(crc_line(expected, 0, data.size() / kSector)) != std::string::npos);
}

} // namespace

TEST_CASE("virtio-blk: the guest reads a raw disk exactly (CRC of sectors), both boot formats") {
    ScratchDir dir;
    const auto data = random_bytes(8 << 20, 1);
    const fs::path disk = dir.path / "disk.raw";
    write_bytes(disk, data);
    for (const char* kernel : {TESTGUEST_ELF, TESTGUEST_BZIMAGE}) {
        CAPTURE(kernel);
        for (auto [sector, count] : {std::pair<uint64_t, uint64_t>{0, 1}, {7, 300}, {0, 16384}, {16000, 384}}) {
            CAPTURE(sector);
            auto r = boot(fmt::format("job=blk-crc sector={} count={}", sector, count), {"path=" + disk.string()}, kernel);
            check_exit(r, 0);
            CHECK(r.out.find(crc_line(data, sector, count)) != std::string::npos);
        }
    }
    for (const char* cache : {"none", "writeback"}) {
        CAPTURE(cache);
        auto r = boot("job=blk-crc sector=100 count=1000", {"path=" + disk.string() + ",cache=" + cache});
        check_exit(r, 0);
        CHECK(r.out.find(crc_line(data, 100, 1000)) != std::string::npos);
    }
}

TEST_CASE("virtio-blk: writes reach the raw file, flushed, and nothing else changes") {
    ScratchDir dir;
    const auto data = random_bytes(4 << 20, 2);
    const fs::path disk = dir.path / "disk.raw";
    write_bytes(disk, data);
    auto r = boot("job=blk-write sector=33 count=77 byte=171", {"path=" + disk.string() + ",cache=none"});
    check_exit(r, 0);
    auto after = read_bytes(disk);
    REQUIRE(after.size() == data.size());
    auto expected = data;
    std::fill(expected.begin() + 33 * kSector, expected.begin() + (33 + 77) * kSector, uint8_t{171});
    CHECK(after == expected);
}

TEST_CASE("virtio-blk: serial, several disks, and a read-only disk that refuses writes") {
    ScratchDir dir;
    const auto a = random_bytes(1 << 20, 3), b = random_bytes(2 << 20, 4);
    write_bytes(dir.path / "a.raw", a);
    write_bytes(dir.path / "b.raw", b);
    const std::string da = "path=" + (dir.path / "a.raw").string() + ",serial=KILN-A";
    const std::string db = "path=" + (dir.path / "b.raw").string() + ",serial=KILN-DISK-B,readonly=on";
    auto r = boot("job=blk-id disk=1", {da, db});
    check_exit(r, 0);
    CHECK(r.out.find("KILN-DISK-B") != std::string::npos);
    r = boot("job=blk-crc disk=1 sector=0 count=4096", {da, db});
    check_exit(r, 0);
    CHECK(r.out.find(crc_line(b, 0, 4096)) != std::string::npos);
    r = boot("job=blk-write disk=1 sector=0 count=8 byte=1", {da, db});
    check_exit(r, 4); // the guest's write fails with VIRTIO_BLK_S_IOERR (guest status 4); kiln carries on
    CHECK(r.out.find("I/O error") != std::string::npos);
    CHECK(read_bytes(dir.path / "b.raw") == b);
}

TEST_CASE("virtio-blk: snapshot=on writes into a throw-away overlay - the base stays bit-identical") {
    ScratchDir dir;
    const auto data = random_bytes(4 << 20, 5);
    const fs::path base = dir.path / "base.raw";
    write_bytes(base, data);
    auto r = boot("job=blk-write sector=0 count=2048 byte=7", {"path=" + base.string() + ",snapshot=on"});
    check_exit(r, 0); // the guest read its own writes back from the overlay
    CHECK(read_bytes(base) == data);
    CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator{}) == 1); // no overlay left here
}

TEST_CASE("virtio-blk: a qcow2 child over a raw base: qemu-img check is clean, compare shows exactly the writes") {
    ScratchDir dir;
    const auto data = random_bytes(8 << 20, 6);
    const fs::path base = dir.path / "base.raw";
    write_bytes(base, data);
    // Partial clusters at both ends: copy-on-write from the base must keep the rest.
    check_child_write(base, "raw", data, 129, 300, 90);
}

TEST_CASE("virtio-blk: a compressed qcow2 base, as cloud images ship: read exactly, written through an overlay and a child") {
    ScratchDir dir("/var/tmp/kiln-test-XXXXXX"); // cache=none below: O_DIRECT
    // 8 MiB: compressible runs with an incompressible stretch (stored plain) between.
    std::vector<uint8_t> data(8 << 20);
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>("a compressed base "[i % 18] ^ (i >> 16));
    const auto noise = random_bytes(1 << 20, 9);
    std::copy(noise.begin(), noise.end(), data.begin() + (3 << 20));
    write_bytes(dir.path / "src.raw", data);
    int status = -1;
    // zlib and zstd; and 512-byte clusters, so one 256 KiB request of the guest's meets
    // 512 compressed clusters (more than a request's slices if each kept its own).
    for (const char* type : {"zlib", "zstd", "zlib,cluster_size=512"}) {
        CAPTURE(type);
        std::string name = type;
        std::replace_if(name.begin(), name.end(), [](char c) { return c == ',' || c == '='; }, '-');
        const fs::path base = dir.path / fmt::format("base-{}.qcow2", name); // base-zlib.qcow2, ...
        auto out = qemu_img({"convert", "-q", "-c", "-O", "qcow2", "-o", fmt::format("compression_type={}", type),
                             (dir.path / "src.raw").string(), base.string()}, &status);
        REQUIRE_MESSAGE(status == 0, out);
        out = qemu_img({"check", "--output=json", base.string()});
        CHECK_MESSAGE(std::regex_search(out, std::regex("\"compressed-clusters\": [1-9]")), out);
        for (const char* cache : {"none", "writeback"}) {
            auto r = boot("job=blk-crc sector=0 count=16384", {fmt::format("path={},readonly=on,cache={}", base.string(), cache)});
            check_exit(r, 0);
            CHECK(r.out.find(crc_line(data, 0, 16384)) != std::string::npos);
        }
    }
    const fs::path base = dir.path / "base-zlib.qcow2";
    const auto base_before = read_bytes(base);
    // A throw-away overlay: partial clusters copied out of compressed ones.
    auto r = boot("job=blk-write sector=129 count=300 byte=90", {"path=" + base.string() + ",snapshot=on,cache=none"});
    check_exit(r, 0);
    CHECK(read_bytes(base) == base_before);
    // A persistent child, its partial clusters copied out of compressed ones.
    check_child_write(base, "qcow2", data, 6001, 300, 91);

    // A broken stream (guest cluster 40's, found through L1[0] and its L2 table; 64 KiB
    // clusters: the descriptor's low 54 bits are the byte offset): the guest's read of
    // it gets an I/O error status, one warning names the image, the reads before it
    // were exact, and kiln ends normally with the guest's status.
    auto bytes = read_bytes(base);
    auto be64 = [&](uint64_t at) {
        uint64_t v = 0;
        for (uint64_t i = 0; i < 8; ++i) v = v << 8 | bytes.at(at + i);
        return v;
    };
    const uint64_t entry = be64((be64(be64(40)) & 0x00fffffffffffe00ULL) + 8 * 40);
    REQUIRE((entry >> 62 & 1) == 1);
    std::fill_n(bytes.begin() + static_cast<long>(entry & ((1ULL << 54) - 1)), 16, uint8_t{0xff});
    const fs::path broken = dir.path / "broken.qcow2";
    write_bytes(broken, bytes);
    r = boot("job=blk-crc sector=0 count=16384", {"path=" + broken.string() + ",readonly=on"});
    check_exit(r, 4);
    CHECK_MESSAGE(r.err.find("the deflate stream is broken") != std::string::npos, r.err);
    CHECK(r.err.find("broken.qcow2") != std::string::npos);
    r = boot("job=blk-crc sector=0 count=5120", {"path=" + broken.string() + ",readonly=on"}); // clusters 0..39
    check_exit(r, 0);
    CHECK(r.out.find(crc_line(data, 0, 5120)) != std::string::npos);
}

TEST_CASE("virtio-blk: a scratch disk is made at start and gone at exit") {
    auto r = boot("job=blk-write sector=1000 count=64 byte=3", {"scratch=64M"});
    check_exit(r, 0);
    r = boot("job=blk-crc sector=0 count=8", {"scratch=1M"});
    check_exit(r, 0);
    CHECK(r.out.find(crc_line(std::vector<uint8_t>(8 * kSector, 0), 0, 8)) != std::string::npos);
}

TEST_CASE("virtio-blk: a host that runs out of space gives the guest an I/O error, and kiln carries on") {
    ScratchDir dir;
    const fs::path mnt = dir.path / "small";
    fs::create_directory(mnt);
    if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=1M") != 0) {
        MESSAGE("cannot mount a tmpfs here (" << std::strerror(errno) << "): ENOSPC case skipped");
        return;
    }
    const fs::path disk = mnt / "disk.raw";
    { std::ofstream f(disk); }
    fs::resize_file(disk, 64 << 20); // sparse: 64 MiB of disk on 1 MiB of tmpfs
    auto r = boot("job=blk-write sector=0 count=8192 byte=5", {"path=" + disk.string() + ",cache=writeback"});
    ::umount(mnt.c_str());
    check_exit(r, 4);
    CHECK(r.out.find("I/O error") != std::string::npos);
}

TEST_CASE("virtio-blk: two VMs may not write one image - any number may read a read-only base") {
    ScratchDir dir;
    const fs::path disk = dir.path / "disk.raw";
    write_bytes(disk, random_bytes(1 << 20, 7));
    const std::string rw = "path=" + disk.string();
    std::thread first([&] { (void)boot("job=timer ms=3000", {rw}); });
    std::this_thread::sleep_for(std::chrono::milliseconds(800));
    auto r = boot("job=hello", {rw});
    CHECK(r.exit_code == 125);
    CHECK(r.err.find("is locked by another process") != std::string::npos);
    first.join();
    const std::string ro = rw + ",readonly=on";
    std::thread reader([&] { (void)boot("job=timer ms=2000", {ro}); });
    std::this_thread::sleep_for(std::chrono::milliseconds(800));
    r = boot("job=blk-crc sector=0 count=8", {ro});
    check_exit(r, 0);
    reader.join();
}

TEST_CASE("virtio-blk: bad --disk specs and broken images: one line, status 125, nothing written") {
    ScratchDir dir;
    const fs::path good = dir.path / "ok.raw";
    write_bytes(good, random_bytes(1 << 20, 8));
    const fs::path corrupt = dir.path / "corrupt.qcow2";
    auto bytes = random_bytes(64 << 10, 9);
    bytes[0] = 'Q', bytes[1] = 'F', bytes[2] = 'I', bytes[3] = 0xfb; // qcow2 magic, nonsense after
    write_bytes(corrupt, bytes);
    const fs::path orphan = dir.path / "orphan.qcow2";
    int status = -1;
    auto out = qemu_img({"create", "-q", "-f", "qcow2", "-F", "raw", "-b", (dir.path / "gone.raw").string(), "-u",
                         orphan.string(), "1M"}, &status);
    REQUIRE_MESSAGE(status == 0, out);
    const auto orphan_before = read_bytes(orphan);
    for (const std::string& spec : {std::string("path=") + (dir.path / "missing.raw").string(),
                                    "path=" + good.string() + ",format=vhd", "path=" + good.string() + ",bogus=1",
                                    "path=" + good.string() + ",queues=0", std::string("scratch=12Q"), "path=" + corrupt.string(),
                                    "path=" + orphan.string(), std::string("size=1G")}) {
        CAPTURE(spec);
        auto r = boot("job=hello", {spec});
        CHECK(r.exit_code == 125);
        CHECK(r.err.find("kiln: error:") == 0);
        CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    }
    CHECK(read_bytes(corrupt) == bytes);
    CHECK(read_bytes(orphan) == orphan_before);
}

TEST_CASE("virtio-blk: snapshot=on leaves nothing behind when kiln is killed with SIGKILL") {
    ScratchDir dir, tmp;
    const auto data = random_bytes(2 << 20, 10);
    const fs::path base = dir.path / "base.raw";
    write_bytes(base, data);
    kiln::test::ProcessOptions opt;
    opt.limit = std::chrono::milliseconds(2500); // then run_process sends SIGKILL
    opt.env = {"TMPDIR=" + tmp.path.string()};
    // The guest keeps writing into the overlay until it is killed.
    auto r = run_kiln({"run", "--kernel", TESTGUEST_ELF, "--memory", "128M", "--cmdline",
                       "job=blk-bench pattern=randwrite bs=4096 qd=4 seconds=60", "--disk",
                       "path=" + base.string() + ",snapshot=on"},
                      opt);
    CHECK(r.timed_out);
    CHECK(r.term_signal == SIGKILL);
    CHECK(read_bytes(base) == data);
    CHECK(fs::is_empty(tmp.path));  // the overlay was never linked into TMPDIR
    CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator{}) == 1);
}

TEST_CASE("virtio-blk: queues=N offers VIRTIO_BLK_F_MQ with N queues, each served on its own") {
    ScratchDir dir;
    const auto data = random_bytes(1 << 20, 11);
    write_bytes(dir.path / "d.raw", data);
    auto r = boot("job=blk-info", {"path=" + (dir.path / "d.raw").string() + ",queues=4"});
    check_exit(r, 0);
    CHECK(r.out.find("num_queues=4") != std::string::npos);
    CHECK(r.out.find("sectors=2048") != std::string::npos);
    // Each queue has its own worker and io_uring ring: the guest may use any of them.
    for (int q : {0, 3}) {
        CAPTURE(q);
        r = boot(fmt::format("job=blk-crc sector=0 count=2048 queue={}", q),
                 {"path=" + (dir.path / "d.raw").string() + ",queues=4"});
        check_exit(r, 0);
        CHECK(r.out.find(crc_line(data, 0, 2048)) != std::string::npos);
    }
    r = boot("job=blk-write sector=100 count=8 byte=66 queue=2", {"path=" + (dir.path / "d.raw").string() + ",queues=4"});
    check_exit(r, 0);
    // Queue 4 does not exist on a 4-queue disk, nor queue 1 on a single-queue one.
    r = boot("job=blk-crc queue=4", {"path=" + (dir.path / "d.raw").string() + ",queues=4"});
    check_exit(r, 5);
    r = boot("job=blk-crc queue=1", {"path=" + (dir.path / "d.raw").string()});
    check_exit(r, 5);
}

TEST_CASE("virtio-blk: a guest that writes nonsense into its virtqueue gets error statuses, then NEEDS_RESET - kiln carries on") {
    ScratchDir dir;
    const auto data = random_bytes(1 << 20, 12);
    write_bytes(dir.path / "d.raw", data);
    // Buffers outside RAM, a 4 GiB length, loops, next beyond the queue, a short header,
    // an unwritable status byte, an unknown type, out-of-range and partial sectors, then
    // an available index far ahead of the ring; then reset and a good read (guest side:
    // guest-images/testguest/jobs/blk_hostile.c).
    auto r = boot("job=blk-hostile", {"path=" + (dir.path / "d.raw").string()});
    check_exit(r, 0);
    CHECK(r.out.find("blk-hostile: 0 failure(s)") != std::string::npos);
    CHECK(r.out.find("FAIL") == std::string::npos);
    CHECK(r.err.find("queue stopped: the available index ran ahead of the queue") != std::string::npos);
    CHECK(read_bytes(dir.path / "d.raw") == data); // the refused write never reached the file
}

TEST_CASE("virtio-blk: write-zeroes and discard from the guest reach the raw file (zeros, a punched hole)") {
    ScratchDir dir;
    const auto data = random_bytes(4 << 20, 13);
    const fs::path disk = dir.path / "d.raw";
    write_bytes(disk, data);
    const std::string spec = "path=" + disk.string();
    auto r = boot("job=blk-zero sector=100 count=50", {spec});
    check_exit(r, 0);
    r = boot("job=blk-zero sector=300 count=16 unmap=1", {spec});
    check_exit(r, 0);
    struct stat before{};
    REQUIRE(::stat(disk.c_str(), &before) == 0);
    r = boot("job=blk-discard sector=2048 count=2048", {spec});
    check_exit(r, 0);
    struct stat after{};
    REQUIRE(::stat(disk.c_str(), &after) == 0);
    CHECK(after.st_size == before.st_size);
    CHECK(after.st_blocks < before.st_blocks); // 1 MiB of blocks given back
    auto expected = data;
    std::fill_n(expected.begin() + 100 * kSector, 50 * kSector, 0);
    std::fill_n(expected.begin() + 300 * kSector, 16 * kSector, 0);
    std::fill_n(expected.begin() + 2048 * kSector, 2048 * kSector, 0);
    CHECK(read_bytes(disk) == expected);
    // A read-only disk offers neither and fails them; a qcow2 image does not offer them.
    r = boot("job=blk-zero sector=0 count=8", {spec + ",readonly=on"});
    check_exit(r, 4);
    CHECK(read_bytes(disk) == expected);
    int status = -1;
    auto out = qemu_img({"create", "-q", "-f", "qcow2", (dir.path / "q.qcow2").string(), "1M"}, &status);
    REQUIRE_MESSAGE(status == 0, out);
    r = boot("job=blk-discard sector=0 count=8", {"path=" + (dir.path / "q.qcow2").string()});
    check_exit(r, 4);
    CHECK(r.out.find("unsupported") != std::string::npos);
}
