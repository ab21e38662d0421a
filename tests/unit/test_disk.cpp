// open_disk and create_image as a user meets them: the spec forms, format probing,
// backing chains and their errors, the copy-on-write modes (snapshot=on, scratch) with
// nothing left behind, cache=none, and the image locks with real QEMU processes (a VM
// started with -S, qemu-io) as the peer on the other side.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/magic.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "devices/block/disk.hpp"
#include "test_disk_tools.hpp"

using namespace kiln;
using namespace kiln::block;
using namespace kiln::test;
namespace fs = std::filesystem;

namespace {

// $TMPDIR pointed at a private directory for the scope: where overlays and scratch
// files would appear if they ever had a name.
struct TmpdirScope {
    explicit TmpdirScope(const std::string& dir) {
        if (const char* old = std::getenv("TMPDIR")) saved = old;
        ::setenv("TMPDIR", dir.c_str(), 1);
    }
    ~TmpdirScope() {
        if (saved) ::setenv("TMPDIR", saved->c_str(), 1);
        else ::unsetenv("TMPDIR");
    }
    std::optional<std::string> saved;
    TmpdirScope(const TmpdirScope&) = delete;
    TmpdirScope& operator=(const TmpdirScope&) = delete;
};

void put_file(const std::string& p, size_t size, uint8_t seed) {
    std::vector<char> d(size);
    for (size_t i = 0; i < size; ++i) d[i] = static_cast<char>(i * 13 + seed);
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f.write(d.data(), static_cast<std::streamsize>(d.size()));
    REQUIRE(f.good());
}

// One request through the extents, as a queue worker does it (read_via/write_via).
std::string read_at(DiskImage& img, uint64_t off, size_t len) {
    const auto v = read_via(img, off, len, 8);
    return {v.begin(), v.end()};
}

void write_at(DiskImage& img, uint64_t off, size_t len, uint8_t byte) {
    write_via(img, off, std::vector<uint8_t>(len, byte));
}


// A QEMU process this test starts and stops by its pid; it holds its images until then.
class QemuPeer {
public:
    explicit QemuPeer(std::vector<std::string> argv) {
        pid_ = ::fork();
        REQUIRE(pid_ >= 0);
        if (pid_ == 0) {
            const int null = ::open("/dev/null", O_RDWR);
            ::dup2(null, 0);
            ::dup2(null, 1);
            ::dup2(null, 2);
            std::vector<char*> args;
            for (auto& a : argv) args.push_back(a.data());
            args.push_back(nullptr);
            ::execvp(args[0], args.data());
            ::_exit(127);
        }
    }
    ~QemuPeer() {
        ::kill(pid_, SIGKILL);
        int st = 0;
        ::waitpid(pid_, &st, 0);
    }
    QemuPeer(const QemuPeer&) = delete;
    QemuPeer& operator=(const QemuPeer&) = delete;

    // Until QEMU holds at least `locks` lock bytes on `path` (it has opened the image),
    // or it died (false).
    [[nodiscard]] bool holds(const std::string& path, int locks = 2) const {
        for (int i = 0; i < 600; ++i) { // 30 s: QEMU starts slowly on a loaded host
            if (ofd_locks_on(path) >= locks) return true;
            int st = 0;
            if (::waitpid(pid_, &st, WNOHANG) == pid_) return false;
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        return false;
    }

private:
    pid_t pid_ = -1;
};

// A VM that never runs (-S) but has its disk open exactly as a running one does.
std::vector<std::string> qemu_vm(const std::string& path, const char* format, bool read_only) {
    return {"qemu-system-x86_64", "-S", "-display", "none", "-nodefaults", "-machine", "accel=tcg", "-monitor",
            "none", "-drive",
            "file=" + path + ",format=" + format + ",if=virtio" + (read_only ? ",readonly=on" : "")};
}

bool have_qemu() { return kiln::test::have_tool("qemu-system-x86_64") && kiln::test::have_tool("qemu-io"); }

} // namespace

TEST_CASE("disk spec: sizes, limits and the forms a scratch disk allows") {
    auto a = parse_disk_spec("cache=writeback,snapshot=on,path=/x/y.img,queues=16,serial=ABCDEFGHIJ0123456789");
    REQUIRE_MESSAGE(a, a.error().message());
    CHECK(a->path == "/x/y.img");
    CHECK(a->snapshot);
    CHECK(a->cache == Cache::Writeback);
    CHECK(a->queues == 16);
    CHECK(a->serial.size() == 20);
    CHECK(a->format == Format::Auto);

    auto p = parse_disk_spec("path=/x,format=raw,readonly=off,snapshot=off");
    REQUIRE(p);
    CHECK(p->format == Format::Raw);
    CHECK_FALSE(p->read_only);
    CHECK_FALSE(p->snapshot);

    for (auto [text, bytes] : {std::pair{"scratch=512", uint64_t{512}}, std::pair{"scratch=512M", uint64_t{512} << 20},
                               std::pair{"scratch=1T", uint64_t{1} << 40}, std::pair{"scratch=64K", uint64_t{64} << 10}}) {
        CAPTURE(text);
        auto s = parse_disk_spec(text);
        REQUIRE_MESSAGE(s, s.error().message());
        CHECK(s->scratch_size == bytes);
        CHECK(s->path.empty());
    }
    auto sc = parse_disk_spec("scratch=1G,cache=none,queues=2,serial=s1");
    REQUIRE_MESSAGE(sc, sc.error().message());
    CHECK(sc->cache == Cache::None);

    CHECK(spec_error("path=a,queues=x") == "disk spec 'path=a,queues=x': queues must be a number from 1 to 16, not 'x'");
    CHECK(spec_error("path=a,queues=2x").find("1 to 16, not '2x'") != std::string::npos);
    CHECK(spec_error("path=a,queues=") == "disk spec 'path=a,queues=': queues needs a value");
    CHECK(spec_error("path=a,snapshot=maybe") ==
          "disk spec 'path=a,snapshot=maybe': snapshot must be on or off, not 'maybe'");
    CHECK(spec_error("path=a,readonly=on,readonly=off") == "disk spec 'path=a,readonly=on,readonly=off': readonly is given twice");
    CHECK(spec_error("scratch=0").find("scratch") != std::string::npos);
    CHECK(spec_error("scratch=1G,format=raw") == "disk spec 'scratch=1G,format=raw': a scratch disk takes no format");
    CHECK(spec_error("scratch=1G,readonly=on") == "disk spec 'scratch=1G,readonly=on': a scratch disk takes no readonly");
    CHECK(spec_error("scratch=1G,snapshot=on") == "disk spec 'scratch=1G,snapshot=on': a scratch disk takes no snapshot");
    CHECK(spec_error("scratch=99999999999T").find("too large") != std::string::npos);
    CHECK(spec_error("path=a,Path=b").find("unknown key 'Path'") != std::string::npos);
    CHECK(spec_error("path=a,serial=\x01").find("printable") != std::string::npos);
    CHECK_FALSE(spec_error("").empty()); // one line, no crash
    CHECK_FALSE(spec_error("=").empty());
    CHECK_FALSE(spec_error(",").empty());
    // Every message is one line that quotes the whole spec.
    for (const char* s : {"path=a,cache=maybe", "path=a,x=1", "scratch=7", "path=a,,b"}) {
        CAPTURE(s);
        const auto e = spec_error(s);
        CHECK(e.starts_with(std::string("disk spec '") + s + "': "));
        CHECK(e.find('\n') == std::string::npos);
    }
}

TEST_CASE("disk: the format is probed - format=raw on a qcow2 file is obeyed, format=qcow2 on a raw one is not") {
    ScratchDir dir;
    const auto q = dir / "q.qcow2";
    tool_ok("qemu-img create -q -f qcow2 " + q + " 3M");
    {
        auto img = open_ok("path=" + q);
        CHECK(std::string(img->format()) == "qcow2");
        CHECK(img->size() == (3u << 20));
    }
    {
        // The user said raw: the guest sees the qcow2 file's bytes (its magic first).
        auto img = open_ok("path=" + q + ",format=raw,readonly=on");
        CHECK(std::string(img->format()) == "raw");
        CHECK(img->size() == fs::file_size(q) / 512 * 512);
        CHECK(read_at(*img, 0, 512).substr(0, 4) == "QFI\xfb");
    }
    const auto r = dir / "r.raw";
    put_file(r, 1 << 20, 1);
    const auto before = read_text(r);
    CHECK(open_error("path=" + r + ",format=qcow2") == "disk '" + r + "' is not a qcow2 image (format=qcow2)");
    CHECK(read_text(r) == before);
    // A raw image that merely starts with the qcow2 magic still probes as qcow2 and is
    // then refused by the header checks, without a byte written.
    const auto fake = dir / "fake.raw";
    put_file(fake, 1 << 20, 2);
    {
        std::fstream f(fake, std::ios::in | std::ios::out | std::ios::binary);
        f.write("QFI\xfb", 4);
    }
    const auto fake_before = read_text(fake);
    const auto e = open_error("path=" + fake);
    CHECK(e.starts_with("disk '" + fake + "'"));
    CHECK(e.find('\n') == std::string::npos);
    CHECK(read_text(fake) == fake_before);
}

TEST_CASE("disk: backing chains resolve names against the image's directory - errors name both files") {
    ScratchDir dir;
    fs::create_directories(dir.path / "sub");
    const auto base = dir / "sub/base.raw", child = dir / "sub/child.qcow2";
    put_file(base, 2 << 20, 3);
    tool_ok("qemu-img create -q -f qcow2 -F raw -b base.raw " + child); // relative name, as QEMU writes it
    tool_ok("qemu-io -f qcow2 -c 'write -P 0x5a 1m 4k' " + child);
    {
        // The working directory is not the images': the name must resolve against sub/.
        auto img = open_ok("path=" + child + ",readonly=on");
        CHECK(img->describe().find("raw '" + base + "'") != std::string::npos);
        CHECK(read_at(*img, 0, 4096) == read_text(base).substr(0, 4096));
        CHECK(read_at(*img, 1 << 20, 4096) == std::string(4096, '\x5a'));
    }

    // The backing file is gone: the message names the child, the name and where it looked.
    fs::rename(base, dir / "elsewhere.raw");
    const auto child_before = read_text(child);
    const auto e = open_error("path=" + child);
    CAPTURE(e);
    CHECK(e.starts_with("disk '" + child + "'"));
    CHECK(e.find("base.raw") != std::string::npos);
    CHECK(e.find(base) != std::string::npos); // the resolved path
    CHECK(e.ends_with("No such file or directory"));
    CHECK(e.find('\n') == std::string::npos);
    CHECK(read_text(child) == child_before); // writable open, nothing written

    // The header says the backing file is qcow2, but it is raw.
    fs::rename(dir / "elsewhere.raw", base);
    const auto liar = dir / "sub/liar.qcow2";
    tool_ok("qemu-img create -q -f qcow2 -u -F qcow2 -b base.raw " + liar + " 2M");
    const auto liar_before = read_text(liar);
    const auto le = open_error("path=" + liar);
    CHECK_MESSAGE(le.find("not a qcow2 image") != std::string::npos, le);
    CHECK(read_text(liar) == liar_before);

    // A chain that loops (an image that is its own backing file) ends at the depth limit.
    const auto loop = dir / "loop.qcow2";
    // qemu-img will not name the image itself: create it under another name, then rename.
    tool_ok("qemu-img create -q -f qcow2 -u -F qcow2 -b loop.qcow2 " + dir / "tmp.qcow2" + " 1M");
    fs::rename(dir / "tmp.qcow2", loop);
    const auto loop_before = read_text(loop);
    const auto lo = open_error("path=" + loop + ",readonly=on");
    CHECK_MESSAGE((lo.find("deeper than 16") != std::string::npos || lo.find("loops") != std::string::npos), lo);
    CHECK(read_text(loop) == loop_before);
}

TEST_CASE("disk: snapshot=on over a qcow2 chain leaves every file bit-identical, even after kill -9") {
    ScratchDir dir, tmp;
    TmpdirScope scope(tmp.path.string());
    const auto base = dir / "base.raw", child = dir / "child.qcow2";
    put_file(base, 4 << 20, 4);
    tool_ok("qemu-img create -q -f qcow2 -F raw -b base.raw " + child);
    tool_ok("qemu-io -f qcow2 -c 'write -P 0x61 64k 64k' " + child);
    const auto base_before = read_text(base), child_before = read_text(child);
    {
        auto img = open_ok("path=" + child + ",snapshot=on");
        CHECK_FALSE(img->read_only());
        CHECK(std::string(img->format()) == "qcow2");
        CHECK(img->size() == (4u << 20));
        write_at(*img, 60 << 10, 8 << 10, 0x7e); // straddles the child's cluster: copy-on-write
        CHECK(read_at(*img, 60 << 10, 8 << 10) == std::string(8 << 10, '\x7e'));
        CHECK(read_at(*img, 68 << 10, 4 << 10) == std::string(4 << 10, '\x61'));
        CHECK(read_at(*img, 2 << 20, 4096) == base_before.substr(2 << 20, 4096));
        CHECK(fs::is_empty(tmp.path));
    }
    CHECK(read_text(base) == base_before);
    CHECK(read_text(child) == child_before);
    tool_ok("qemu-img check -q " + child);

    // However the process ends, no overlay file is left behind.
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        auto s = parse_disk_spec("path=" + child + ",snapshot=on");
        if (s) {
            if (auto d = open_disk(*s)) {
                Extent ex[1];
                (void)(*d)->map_write(0, 65536, ex);
                ::kill(::getpid(), SIGKILL); // with the overlay open and written
            }
        }
        ::_exit(1);
    }
    int st = 0;
    REQUIRE(::waitpid(pid, &st, 0) == pid);
    CHECK(WIFSIGNALED(st));
    CHECK(fs::is_empty(tmp.path));
    CHECK(read_text(base) == base_before);
    CHECK(read_text(child) == child_before);
}

TEST_CASE("disk: scratch disks are sparse, zero-filled and nameless, with or without cache=none") {
    ScratchDir tmp;
    TmpdirScope scope(tmp.path.string());
    for (const char* cache : {"writeback", "none"}) {
        CAPTURE(cache);
        auto img = open_ok(std::string("scratch=1T,cache=") + cache);
        CHECK(img->size() == (uint64_t{1} << 40));
        CHECK_FALSE(img->read_only());
        CHECK(img->alignment() % 512 == 0);
        CHECK(read_at(*img, (uint64_t{1} << 40) - 4096, 4096) == std::string(4096, '\0'));
        write_at(*img, uint64_t{1} << 39, 4096, 0x33);
        CHECK(read_at(*img, uint64_t{1} << 39, 4096) == std::string(4096, '\x33'));
        struct stat st{};
        REQUIRE(::fstat(img->top_fd(), &st) == 0);
        CHECK(st.st_blocks * 512 < (1 << 20)); // a terabyte that costs a page
        CHECK(st.st_nlink == 0);                // never had a name
        CHECK(fs::is_empty(tmp.path));
    }
    // tmpfs has no O_DIRECT: cache=none still gets a working scratch disk there.
    struct statfs fs_info{};
    if (::statfs("/dev/shm", &fs_info) == 0 && static_cast<unsigned long>(fs_info.f_type) == TMPFS_MAGIC) {
        ScratchDir shm_holder;
        char tmpl[] = "/dev/shm/kiln-disk-XXXXXX";
        REQUIRE(::mkdtemp(tmpl));
        struct Cleanup {
            std::string p;
            ~Cleanup() {
                std::error_code ec;
                fs::remove_all(p, ec);
            }
        } cleanup{tmpl};
        TmpdirScope on_tmpfs(tmpl);
        auto img = open_ok("scratch=16M,cache=none");
        write_at(*img, 4096, 4096, 0x44);
        CHECK(read_at(*img, 4096, 4096) == std::string(4096, '\x44'));
        CHECK(fs::is_empty(tmpl));
    }
}

TEST_CASE("disk: cache=none reads and writes a qcow2 chain through O_DIRECT") {
    ScratchDir dir;
    const auto base = dir / "base.raw", child = dir / "child.qcow2";
    put_file(base, 2 << 20, 5);
    tool_ok("qemu-img create -q -f qcow2 -F raw -b base.raw " + child);
    const auto base_before = read_text(base);
    {
        auto img = open_ok("path=" + child + ",cache=none");
        CHECK(img->alignment() >= 512);
        CHECK((::fcntl(img->top_fd(), F_GETFL) & O_DIRECT) != 0);
        write_at(*img, 1 << 20, 64 << 10, 0x21);
        CHECK(read_at(*img, 0, 4096) == base_before.substr(0, 4096));
        CHECK(read_at(*img, 1 << 20, 64 << 10) == std::string(64 << 10, '\x21'));
        REQUIRE(img->flush_metadata());
    }
    tool_ok("qemu-img check -q " + child);
    auto r = run_tool("qemu-io -r -f qcow2 -c 'read -P 0x21 1m 64k' " + child);
    CHECK_MESSAGE(r.out.find("Pattern verification failed") == std::string::npos, r.out);
    CHECK(read_text(base) == base_before);
}

TEST_CASE("disk locks: QEMU VMs and Kiln keep each other from writing an image - readers coexist") {
    if (!have_qemu()) {
        MESSAGE("skipped: qemu-system-x86_64 or qemu-io missing");
        return;
    }
    ScratchDir dir;
    const auto img = dir / "shared.raw";
    put_file(img, 1 << 20, 6);

    SUBCASE("a QEMU VM writing the image keeps Kiln out, for writing and for reading") {
        QemuPeer vm(qemu_vm(img, "raw", false));
        REQUIRE(vm.holds(img, 2));
        CHECK(open_error("path=" + img).find("refusing to open it for writing") != std::string::npos);
        CHECK(open_error("path=" + img + ",readonly=on").find("refusing to open it for reading") != std::string::npos);
        CHECK(open_error("path=" + img + ",snapshot=on").find("locked by another process") != std::string::npos);
    }
    SUBCASE("a QEMU VM reading the image keeps Kiln writers out, not Kiln readers") {
        QemuPeer vm(qemu_vm(img, "raw", true));
        REQUIRE(vm.holds(img, 2));
        const auto e = open_error("path=" + img);
        CHECK(e.starts_with("disk '" + img + "'"));
        CHECK(e.find("refusing to open it for writing") != std::string::npos);
        auto r1 = open_ok("path=" + img + ",readonly=on");
        auto r2 = open_ok("path=" + img + ",snapshot=on");
    }
    SUBCASE("a QEMU VM running an overlay keeps Kiln from writing its backing file") {
        const auto overlay = dir / "overlay.qcow2";
        tool_ok("qemu-img create -q -f qcow2 -F raw -b shared.raw " + overlay);
        QemuPeer vm(qemu_vm(overlay, "qcow2", false));
        // QEMU 7.2 locks three bytes of the backing file (consistent-read 100, unshare
        // write 201 and resize 203), one at a time: wait for all of them, or Kiln may
        // look between the first and the one that keeps writers out.
        REQUIRE(vm.holds(img, 3));
        CHECK(open_error("path=" + img).find("refusing to open it for writing") != std::string::npos);
        CHECK(open_ok("path=" + img + ",readonly=on") != nullptr);
        CHECK(open_error("path=" + overlay + ",readonly=on").find("locked by another process") != std::string::npos);
    }
    SUBCASE("Kiln writing the image keeps QEMU out; the lock goes with the image") {
        {
            auto w = open_ok("path=" + img);
            auto q = run_tool("qemu-io -f raw -c 'write 0 512' " + img);
            CHECK(q.status != 0);
            CHECK_MESSAGE(q.out.find("Failed to get \"write\" lock") != std::string::npos, q.out);
            // A QEMU VM with the disk read-only is refused too, as QEMU refuses QEMU.
            auto vm = run_tool("timeout 10 qemu-system-x86_64 -S -display none -nodefaults -machine accel=tcg "
                               "-monitor none -drive file=" + img + ",format=raw,if=virtio,readonly=on");
            CHECK(vm.status != 0);
            CHECK_MESSAGE(vm.out.find("lock") != std::string::npos, vm.out);
        }
        tool_ok("qemu-io -f raw -c 'write -P 0x11 0 512' " + img); // released
    }
    SUBCASE("Kiln reading the image (or a chain) keeps QEMU writers out, not QEMU readers") {
        const auto child = dir / "child.qcow2";
        tool_ok("qemu-img create -q -f qcow2 -F raw -b shared.raw " + child);
        auto r = open_ok("path=" + child); // writes child, reads shared.raw
        auto w_base = run_tool("qemu-io -f raw -c 'write 0 512' " + img);
        CHECK(w_base.status != 0);
        CHECK_MESSAGE(w_base.out.find("Failed to get \"write\" lock") != std::string::npos, w_base.out);
        auto w_child = run_tool("qemu-io -f qcow2 -c 'write 0 512' " + child);
        CHECK(w_child.status != 0);
        CHECK_MESSAGE(w_child.out.find("lock") != std::string::npos, w_child.out);
        QemuPeer reader(qemu_vm(img, "raw", true)); // a second reader of the base: fine
        CHECK(reader.holds(img, 4));                 // Kiln's bytes and QEMU's
        CHECK(run_tool("qemu-img info " + img).status == 0);
    }
}

TEST_CASE("disk create: a qcow2 child of a backing file, and nothing left behind when it cannot be made") {
    ScratchDir dir;
    const auto base = dir / "base.raw";
    put_file(base, 3 << 20, 7);
    const auto child = dir / "child.qcow2";
    REQUIRE(create_image({child, "base.raw", Format::Auto, std::nullopt, 16}));
    auto info = run_tool("qemu-img info --output=json " + child);
    REQUIRE(info.status == 0);
    CHECK_MESSAGE(info.out.find("\"backing-filename\": \"base.raw\"") != std::string::npos, info.out);
    CHECK(info.out.find("\"backing-filename-format\": \"raw\"") != std::string::npos);
    CHECK(info.out.find("\"virtual-size\": 3145728") != std::string::npos);
    CHECK(info.out.find("\"cluster-size\": 65536") != std::string::npos);
    tool_ok("qemu-img check -q " + child);
    tool_ok("qemu-img compare -q " + base + " " + child);

    // The child exists: refused, and left as it was.
    const auto before = read_text(child);
    auto again = create_image({child, "base.raw", Format::Auto, std::nullopt, 16});
    REQUIRE_FALSE(again);
    CHECK(again.error().message().find("File exists") != std::string::npos);
    CHECK(read_text(child) == before);

    // A size of its own, and another cluster size.
    const auto big = dir / "big.qcow2";
    REQUIRE(create_image({big, "child.qcow2", Format::Qcow2, uint64_t{8} << 20, 12}));
    info = run_tool("qemu-img info --output=json " + big);
    CHECK(info.out.find("\"virtual-size\": 8388608") != std::string::npos);
    CHECK(info.out.find("\"cluster-size\": 4096") != std::string::npos);
    CHECK(info.out.find("\"backing-filename-format\": \"qcow2\"") != std::string::npos);
    tool_ok("qemu-img check -q " + big);

    // No backing and no size; a missing backing file; a backing file that is not what the
    // user said: an error each, and no file.
    const auto orphan = dir / "orphan.qcow2";
    auto no_size = create_image({orphan, "", Format::Auto, std::nullopt, 16});
    REQUIRE_FALSE(no_size);
    CHECK_FALSE(fs::exists(orphan));
    auto missing = create_image({orphan, "nope.raw", Format::Auto, std::nullopt, 16});
    REQUIRE_FALSE(missing);
    CHECK(missing.error().message().find("nope.raw") != std::string::npos);
    CHECK_FALSE(fs::exists(orphan));
    auto wrong = create_image({orphan, "base.raw", Format::Qcow2, std::nullopt, 16});
    REQUIRE_FALSE(wrong);
    CHECK_FALSE(fs::exists(orphan));
    auto odd = create_image({orphan, "", Format::Auto, uint64_t{1000}, 16});
    REQUIRE_FALSE(odd);
    CHECK_FALSE(fs::exists(orphan));

    // Without a backing file.
    const auto plain = dir / "plain.qcow2";
    REQUIRE(create_image({plain, "", Format::Auto, uint64_t{1} << 30, 16}));
    tool_ok("qemu-img check -q " + plain);
    auto img = open_ok("path=" + plain);
    CHECK(img->size() == (uint64_t{1} << 30));
    CHECK(read_at(*img, 0, 4096) == std::string(4096, '\0'));
}

namespace {

// The lock bytes held on `path`, merged ranges ("100 102") expanded: {100, 101, 102}.
std::set<int> lock_bytes(const std::string& path) {
    struct stat st{};
    std::set<int> bytes;
    if (::stat(path.c_str(), &st) != 0) return bytes;
    const std::string needle = fmt::format(":{} ", st.st_ino);
    std::ifstream f("/proc/locks");
    for (std::string line; std::getline(f, line);) {
        if (line.find("OFDLCK") == std::string::npos || line.find(needle) == std::string::npos) continue;
        std::istringstream in(line.substr(line.find(needle) + needle.size()));
        int start = 0, end = 0;
        if (in >> start >> end)
            for (int b = start; b <= end; ++b) bytes.insert(b);
    }
    return bytes;
}

std::string show(const std::set<int>& s) {
    std::string out;
    for (int b : s) out += fmt::format("{} ", b);
    return out;
}

} // namespace

// QEMU 7.2's bytes, measured: a VM's writable raw disk {100 101 201}; its read-only raw
// disk {100 201}; a writable qcow2 disk {100 101 103 201 203} over a backing file
// {100 201 203}. Kiln should hold the very same bytes, so every outcome matches QEMU's
// (a raw image in use stays resizable by `qemu-img resize`, as under QEMU).
TEST_CASE("disk locks: Kiln holds exactly the bytes a QEMU 7.2 VM holds") {
    if (!have_qemu()) return;
    ScratchDir dir;
    const auto raw = dir / "d.raw", top = dir / "top.qcow2";
    put_file(raw, 1 << 20, 8);
    tool_ok("qemu-img create -q -f qcow2 -F raw -b d.raw " + top);
    struct Case {
        std::string kiln_spec, qemu_file, format;
        bool read_only;
    } cases[] = {
        {"path=" + raw, raw, "raw", false},
        {"path=" + raw + ",readonly=on", raw, "raw", true},
        {"path=" + top, top, "qcow2", false},
        {"path=" + top + ",readonly=on", top, "qcow2", true},
    };
    for (const auto& c : cases) {
        CAPTURE(c.kiln_spec);
        std::set<int> q_top, q_base;
        {
            QemuPeer vm(qemu_vm(c.qemu_file, c.format.c_str(), c.read_only));
            REQUIRE(vm.holds(c.qemu_file, 2));
            std::this_thread::sleep_for(std::chrono::milliseconds(200)); // the backing file's too
            q_top = lock_bytes(c.qemu_file);
            q_base = lock_bytes(raw);
        }
        auto img = open_ok(c.kiln_spec);
        CHECK_MESSAGE(show(lock_bytes(c.qemu_file)) == show(q_top), "QEMU: " << show(q_top));
        if (c.qemu_file != raw) CHECK_MESSAGE(show(lock_bytes(raw)) == show(q_base), "QEMU: " << show(q_base));
    }
}

// The messages as specified: one short line naming the image, the backing name as
// written and the absolute path it resolved to.
TEST_CASE("disk: backing-chain errors are one short line with the resolved path") {
    ScratchDir dir;
    const auto child = dir / "child.qcow2";
    tool_ok("qemu-img create -q -f qcow2 -u -F raw -b base.img " + child + " 1M");
    CHECK(open_error("path=" + child) == "disk '" + child + "': backing file 'base.img' (resolved to '" +
                                          dir / "base.img" + "'): No such file or directory");
    // Opened by a relative path from another directory: the resolved path is still absolute.
    const auto cwd = fs::current_path();
    fs::current_path(dir.path.parent_path());
    const std::string rel = dir.path.filename().string() + "/child.qcow2";
    const auto e = open_error("path=" + rel);
    fs::current_path(cwd);
    CHECK_MESSAGE(e.find("(resolved to '" + dir / "base.img" + "')") != std::string::npos, e);

    const auto loop = dir / "loop.qcow2";
    tool_ok("qemu-img create -q -f qcow2 -u -F qcow2 -b loop.qcow2 " + dir / "tmp.qcow2" + " 1M");
    fs::rename(dir / "tmp.qcow2", loop);
    const auto lo = open_error("path=" + loop + ",readonly=on");
    CHECK_MESSAGE(lo.size() < 300, lo); // a loop is named once, not 16 times
    CHECK(lo.find("loops") != std::string::npos);
}
