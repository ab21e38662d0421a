// The --disk spec, opening an image with its backing chain, the copy-on-write modes and
// `kiln disk create`.
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

#include "devices/block/disk.hpp"
#include "devices/block/aligned_buffer.hpp"
#include "devices/block/image_lock.hpp"
#include "devices/block/qcow2.hpp"
#include "devices/block/raw.hpp"
#include "vmm/base/fd.hpp"
#include "vmm/base/size.hpp"

namespace kiln::block {
namespace {

constexpr size_t kMaxSerial = 20;     // VIRTIO_BLK_ID_BYTES
constexpr size_t kMaxChainDepth = 16;

Result<bool> on_off(std::string_view key, std::string_view v) {
    if (v == "on") return true;
    if (v == "off") return false;
    return fail("{} must be on or off, not '{}'", key, v);
}

Result<void> parse_pair(DiskSpec& d, std::string_view key, std::string_view v) {
    if (key == "path") {
        d.path = v;
    } else if (key == "scratch") {
        d.scratch_size = KILN_TRY(parse_size(v));
        if (d.scratch_size == 0 || d.scratch_size % 512)
            return fail("scratch size must be a non-zero multiple of 512 bytes, not '{}'", v);
    } else if (key == "format") {
        if (v == "raw") d.format = Format::Raw;
        else if (v == "qcow2") d.format = Format::Qcow2;
        else return fail("format must be raw or qcow2, not '{}'", v);
    } else if (key == "readonly") {
        d.read_only = KILN_TRY(on_off(key, v));
    } else if (key == "snapshot") {
        d.snapshot = KILN_TRY(on_off(key, v));
    } else if (key == "cache") {
        if (v == "none") d.cache = Cache::None;
        else if (v == "writeback") d.cache = Cache::Writeback;
        else return fail("cache must be none or writeback, not '{}'", v);
    } else if (key == "queues") {
        unsigned n = 0;
        auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
        if (ec != std::errc() || p != v.data() + v.size() || n < 1 || n > 16)
            return fail("queues must be a number from 1 to 16, not '{}'", v);
        d.queues = static_cast<uint16_t>(n);
    } else if (key == "serial") {
        if (v.size() > kMaxSerial) return fail("serial '{}' is longer than {} bytes", v, kMaxSerial);
        for (char c : v)
            if (c < 0x20 || c > 0x7e) return fail("serial '{}' has a character that is not printable ASCII", v);
        d.serial = v;
    } else {
        return fail("unknown key '{}' (path, format, readonly, snapshot, cache, queues, serial, scratch)", key);
    }
    return {};
}

// A path's directory, for resolving a backing name the way QEMU does: relative to the
// image that names it.
std::string resolve_backing(const std::string& image, const std::string& backing) {
    if (backing.starts_with("/")) return backing;
    // Absolute, so messages say where we looked whatever the working directory.
    const auto dir = std::filesystem::absolute(std::filesystem::path(image)).parent_path();
    return (dir / backing).lexically_normal().string();
}

std::string temp_dir() {
    const char* t = std::getenv("TMPDIR");
    return t && *t ? t : "/var/tmp";
}

// O_DIRECT needs I/O aligned to the device's logical block size: ask a block device,
// probe a file with a 512-byte direct read (4 KiB-sector disks refuse it).
Result<uint32_t> direct_alignment(int fd, const std::string& name) {
    struct stat st{};
    if (::fstat(fd, &st) != 0) return fail_errno(fmt::format("disk '{}': stat", name));
    if (S_ISBLK(st.st_mode)) {
        int ss = 512;
        if (::ioctl(fd, BLKSSZGET, &ss) == 0 && ss >= 512) return static_cast<uint32_t>(ss);
        return 512;
    }
    AlignedBuffer buf(4096, 4096);
    if (!buf) return fail("disk '{}': out of memory", name);
    if (::pread(fd, buf.data(), 512, 0) >= 0) return 512;
    if (errno != EINVAL) return fail_errno(fmt::format("disk '{}': O_DIRECT read", name));
    if (::pread(fd, buf.data(), 4096, 0) >= 0) return 4096;
    return fail_errno(fmt::format("disk '{}': cache=none: O_DIRECT reads fail on this file", name));
}

struct OpenedFile {
    Fd fd;
    uint32_t alignment = 512;
};

Result<OpenedFile> open_file(const std::string& path, bool writable, bool direct) {
    int flags = (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC;
    if (direct) flags |= O_DIRECT;
    const int fd = ::open(path.c_str(), flags);
    if (fd < 0) {
        const int e = errno;
        if (direct && e == EINVAL)
            return fail("disk '{}': cache=none: the file system does not support O_DIRECT (use cache=writeback)",
                        path);
        return fail_errno(fmt::format("disk '{}'", path), e);
    }
    OpenedFile f{Fd(fd), 512};
    if (direct) f.alignment = KILN_TRY(direct_alignment(fd, path));
    return f;
}

Result<bool> probe_qcow2(int fd, const std::string& name) {
    AlignedBuffer buf(4096, 4096);
    if (!buf) return fail("disk '{}': out of memory", name);
    ssize_t n = ::pread(fd, buf.data(), 4096, 0);
    if (n < 0 && errno == EINVAL) n = ::pread(fd, buf.data(), 512, 0); // O_DIRECT, 4 KiB > file
    if (n < 0) return fail_errno(fmt::format("disk '{}': reading its first bytes", name));
    return qcow2::has_magic({buf.data(), static_cast<size_t>(n)});
}

// An error from a backing file names it ("disk '/abs/base.img': ..."); say how the chain
// got there: "disk 'child.qcow2': backing file 'base.img' (resolved to '/abs/base.img'): ...".
Error under_child(const Error& e, const std::string& file, const std::string& label) {
    const std::string own = fmt::format("disk '{}'", file);
    const std::string& m = e.message();
    if (m.starts_with(own)) return Error(label + m.substr(own.size()), e.sys_errno());
    return Error(fmt::format("{}: {}", label, m), e.sys_errno());
}

// The files of one chain, by identity: a chain that names a file twice loops.
using Chain = std::vector<std::pair<dev_t, ino_t>>;

// Opens `path` and, for qcow2, its backing chain read-only; `backing`: `path` is itself
// a backing file (which decides its lock bytes).
Result<std::unique_ptr<DiskImage>> open_image(const std::string& path, Format format, bool writable, bool backing,
                                              bool direct, Chain& chain) {
    if (chain.size() >= kMaxChainDepth)
        return fail("disk '{}': backing chain deeper than {} images", path, kMaxChainDepth);
    auto f = KILN_TRY(open_file(path, writable, direct));
    struct stat st{};
    if (::fstat(f.fd.get(), &st) != 0) return fail_errno(fmt::format("disk '{}': stat", path));
    for (const auto& [dev, ino] : chain)
        if (dev == st.st_dev && ino == st.st_ino)
            return fail("disk '{}' is already in this backing chain (the chain loops)", path);
    chain.emplace_back(st.st_dev, st.st_ino);

    // Probing reads; nothing is written before the lock and every check below.
    const bool is_qcow2 = KILN_TRY(probe_qcow2(f.fd.get(), path));
    if (format == Format::Qcow2 && !is_qcow2) return fail("disk '{}' is not a qcow2 image (format=qcow2)", path);
    const bool as_qcow2 = is_qcow2 && format != Format::Raw;
    const LockRole role = backing ? LockRole::Backing : as_qcow2 ? LockRole::Qcow2Disk : LockRole::RawDisk;
    KILN_TRY(lock_image(f.fd.get(), role, writable, path));
    if (!as_qcow2) return open_raw(std::move(f.fd), path, !writable, f.alignment);

    const auto hdr = KILN_TRY_CTX(qcow2::read_header(f.fd.get()), "disk '{}'", path);
    std::unique_ptr<DiskImage> below;
    if (!hdr.backing_file.empty()) {
        const std::string bpath = resolve_backing(path, hdr.backing_file);
        const std::string label =
            fmt::format("disk '{}': backing file '{}' (resolved to '{}')", path, hdr.backing_file, bpath);
        Format bfmt = Format::Auto;
        if (hdr.backing_format == "raw") bfmt = Format::Raw;
        else if (hdr.backing_format == "qcow2") bfmt = Format::Qcow2;
        else if (!hdr.backing_format.empty())
            return fail("{} has format '{}'; Kiln reads raw and qcow2", label, hdr.backing_format);
        auto b = open_image(bpath, bfmt, false, true, direct, chain);
        if (!b) return std::unexpected(under_child(b.error(), bpath, label));
        below = std::move(*b);
    }
    return qcow2::open(std::move(f.fd), path, std::move(below), {!writable, f.alignment});
}

// An unlinked file in $TMPDIR (or /var/tmp): O_TMPFILE never gives it a name, so it
// vanishes with the last fd, however the process ends. Falls back to buffered I/O when
// the directory's file system has no O_DIRECT (tmpfs), and to mkstemp + unlink where
// O_TMPFILE is not supported.
Result<OpenedFile> temp_file(bool direct, const char* what) {
    const std::string dir = temp_dir();
    for (bool d : {direct, false}) {
        if (!d && direct) spdlog::debug("{} in '{}': no O_DIRECT there, using the page cache", what, dir);
        int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_EXCL | O_CLOEXEC | (d ? O_DIRECT : 0), 0600);
        if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR)) {
            std::string tmpl = dir + "/kiln-XXXXXX";
            fd = ::mkostemp(tmpl.data(), O_CLOEXEC | (d ? O_DIRECT : 0));
            if (fd >= 0) ::unlink(tmpl.c_str());
        }
        if (fd >= 0) {
            OpenedFile f{Fd(fd), 512};
            if (d) f.alignment = 4096; // no data to probe yet: the safe choice
            return f;
        }
        if (!(d && errno == EINVAL)) return fail_errno(fmt::format("{}: creating a temporary file in '{}'", what, dir));
    }
    return fail("{}: cannot create a temporary file in '{}'", what, dir);
}

std::string absolute(const std::string& path) {
    std::error_code ec;
    auto p = std::filesystem::canonical(path, ec);
    return ec ? std::filesystem::absolute(path).string() : p.string();
}

} // namespace

Result<DiskSpec> parse_disk_spec(std::string_view text) {
    auto bad = [&](const Error& e) { return fail("disk spec '{}': {}", text, e.message()); };
    DiskSpec d;
    std::set<std::string, std::less<>> seen;
    size_t pos = 0;
    while (pos <= text.size()) {
        size_t comma = text.find(',', pos);
        if (comma == std::string_view::npos) comma = text.size();
        const std::string_view item = text.substr(pos, comma - pos);
        pos = comma + 1;
        if (item.empty()) return fail("disk spec '{}': an empty item (two commas, or a comma at the end)", text);
        const size_t eq = item.find('=');
        if (eq == std::string_view::npos)
            return fail("disk spec '{}': '{}' is not key=value", text, item);
        const std::string_view key = item.substr(0, eq), value = item.substr(eq + 1);
        if (key.empty()) return fail("disk spec '{}': '{}' has no key before '='", text, item);
        if (value.empty()) return fail("disk spec '{}': {} needs a value", text, key);
        if (!seen.emplace(key).second) return fail("disk spec '{}': {} is given twice", text, key);
        if (auto r = parse_pair(d, key, value); !r) return bad(r.error());
    }
    if (d.scratch_size) {
        for (const char* k : {"path", "format", "readonly", "snapshot"})
            if (seen.contains(k)) return fail("disk spec '{}': a scratch disk takes no {}", text, k);
    } else if (d.path.empty()) {
        return fail("disk spec '{}': needs path=FILE or scratch=SIZE", text);
    }
    if (d.read_only && d.snapshot)
        return fail("disk spec '{}': readonly=on and snapshot=on: pick one (snapshot=on already keeps the file "
                    "unchanged)",
                    text);
    return d;
}

Result<std::unique_ptr<DiskImage>> open_disk(const DiskSpec& spec) {
    const bool direct = spec.cache == Cache::None;
    if (spec.scratch_size) {
        auto f = KILN_TRY(temp_file(direct, "scratch disk"));
        if (::ftruncate(f.fd.get(), static_cast<off_t>(spec.scratch_size)) != 0)
            return fail_errno(fmt::format("scratch disk of {} bytes", spec.scratch_size));
        return open_raw(std::move(f.fd), fmt::format("scratch {} KiB", spec.scratch_size >> 10), false, f.alignment);
    }
    Chain chain;
    const bool writable = !spec.read_only && !spec.snapshot;
    // snapshot=on: the image is the overlay's backing file, and locked as one.
    auto image = KILN_TRY(open_image(spec.path, spec.format, writable, spec.snapshot, direct, chain));
    if (!spec.snapshot) return image;

    // snapshot=on: a qcow2 overlay over the read-only image, in an unlinked file. 4 KiB
    // clusters: a guest's 4 KiB write then fills a whole cluster and needs no
    // copy-on-write from the base; its metadata never leaves memory (nobody can open
    // the file again), so allocating costs no extra I/O.
    auto f = KILN_TRY(temp_file(direct, "snapshot overlay"));
    qcow2::CreateOptions c;
    c.size = image->size();
    // Larger clusters only for huge bases, to keep the L1 table (in memory) at 4 MiB.
    c.cluster_bits = 12;
    while (c.cluster_bits < 21 && (c.size >> c.cluster_bits) / ((1ULL << c.cluster_bits) / 8) * 8 > (4u << 20))
        ++c.cluster_bits;
    c.backing_file = absolute(spec.path);
    c.backing_format = image->format();
    KILN_TRY_CTX(qcow2::create(f.fd.get(), c), "disk '{}': snapshot overlay", spec.path);
    const uint32_t alignment = std::max(f.alignment, image->alignment());
    return qcow2::open(std::move(f.fd), fmt::format("snapshot of {}", spec.path), std::move(image),
                       {false, alignment, true});
}

Result<void> create_image(const CreateSpec& spec) {
    qcow2::CreateOptions c;
    c.cluster_bits = spec.cluster_bits;
    if (!spec.backing.empty()) {
        // QEMU resolves a relative backing name against the child's directory; so do we,
        // now and whenever the child is opened.
        const std::string resolved = resolve_backing(spec.path, spec.backing);
        Chain chain;
        auto base = open_image(resolved, spec.backing_format, false, true, false, chain);
        if (!base) return std::unexpected(base.error().context(fmt::format("backing file '{}'", spec.backing)));
        c.size = spec.size.value_or((*base)->size());
        c.backing_file = spec.backing;
        c.backing_format = (*base)->format();
    } else {
        c.size = spec.size.value_or(0);
    }
    if (c.size == 0 || c.size % 512) return fail("image size {} is not a non-zero multiple of 512 bytes", c.size);
    const int fd = ::open(spec.path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return fail_errno(fmt::format("creating '{}'", spec.path));
    Fd child(fd);
    if (auto r = qcow2::create(child.get(), c); !r) {
        ::unlink(spec.path.c_str()); // never leave a half-written image behind
        return std::unexpected(r.error().context(fmt::format("creating '{}'", spec.path)));
    }
    if (::fsync(child.get()) != 0) {
        const int e = errno;
        ::unlink(spec.path.c_str());
        return fail_errno(fmt::format("creating '{}'", spec.path), e);
    }
    return {};
}

} // namespace kiln::block
