// qcow2: header checks, image creation, and the DiskImage that maps guest ranges onto
// clusters (docs/interop/qcow2.txt in QEMU's tree).
//
// Metadata is written through at once (pwrite, no write-back cache), in an order that
// leaves at worst leaked clusters, never a reference to an unreferenced one, if the
// process dies in between: a new cluster's refcount first, then its contents (copy-on-
// write from the backing image, or zeros), then the L2 entry, then (for a new L2 table)
// the L1 entry. Guest data for a new cluster is written by the caller after map_write
// returns, into a cluster already referenced: a crash then leaves stale, never foreign,
// data there.
#include "devices/block/qcow2.hpp"
#include "devices/block/aligned_buffer.hpp"
#include "devices/block/cluster_inflater.hpp"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <fcntl.h>
#include <cstring>
#include <mutex>
#include <optional>
#include <set>
#include <unordered_map>
#include <vector>

#include <spdlog/spdlog.h>

namespace kiln::block::qcow2 {
namespace {

constexpr uint32_t kMagic = 0x514649fb; // "QFI\xfb"
constexpr uint64_t kOffsetMask = 0x00fffffffffffe00ULL;
constexpr uint64_t kCopied = 1ULL << 63;
constexpr uint64_t kCompressed = 1ULL << 62;
constexpr uint64_t kZeroFlag = 1ULL;
constexpr uint64_t kIncompatDirty = 1, kIncompatCorrupt = 2, kIncompatDataFile = 4, kIncompatCompression = 8,
                   kIncompatExtL2 = 16;
constexpr uint64_t kKnownIncompat = kIncompatDirty | kIncompatCorrupt | kIncompatDataFile | kIncompatCompression |
                                    kIncompatExtL2;
constexpr uint32_t kExtEnd = 0, kExtBackingFormat = 0xe2792aca, kExtFeatureNames = 0x6803f857,
                   kExtEncryption = 0x0537be77, kExtDataFile = 0x44415441;
constexpr uint32_t kHeaderV3Length = 112; // as QEMU 7.2 writes it (with the compression type byte)
constexpr uint64_t kMaxL1Bytes = 32ULL << 20;     // QEMU's QCOW_MAX_L1_SIZE
constexpr uint64_t kMaxRefTableBytes = 8ULL << 20; // QEMU's QCOW_MAX_REFTABLE_SIZE
constexpr uint64_t kMaxOffset = 1ULL << 56;       // host offsets are 56 bits
constexpr size_t kL2CacheSlots = 32;
// Inflated compressed clusters kept: a guest reading a compressed image 4 KiB at a time
// reads each cluster 16 times, and two or three streams may interleave.
constexpr size_t kInflatedSlots = 4;

uint64_t be64(const uint8_t* p) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    return __builtin_bswap64(v);
}
uint16_t be16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }

uint32_t be32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return __builtin_bswap32(v);
}
void put64(uint8_t* p, uint64_t v) {
    v = __builtin_bswap64(v);
    std::memcpy(p, &v, 8);
}
void put32(uint8_t* p, uint32_t v) {
    v = __builtin_bswap32(v);
    std::memcpy(p, &v, 4);
}
void put16(uint8_t* p, uint16_t v) {
    v = __builtin_bswap16(v);
    std::memcpy(p, &v, 2);
}
uint64_t div_up(uint64_t a, uint64_t b) { return (a + b - 1) / b; }
uint64_t align_up(uint64_t a, uint64_t b) { return div_up(a, b) * b; }

Result<void> pread_all(int fd, uint8_t* buf, size_t len, uint64_t off, std::string_view what) {
    size_t done = 0;
    while (done < len) {
        const ssize_t n = ::pread(fd, buf + done, len - done, static_cast<off_t>(off + done));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail_errno(fmt::format("{}: reading {:#x}+{:#x}", what, off, len));
        if (n == 0) { // past the end of the file: a sparse tail reads as zeros
            std::memset(buf + done, 0, len - done);
            return {};
        }
        done += static_cast<size_t>(n);
    }
    return {};
}

Result<void> pwrite_all(int fd, const uint8_t* buf, size_t len, uint64_t off, std::string_view what) {
    size_t done = 0;
    while (done < len) {
        const ssize_t n = ::pwrite(fd, buf + done, len - done, static_cast<off_t>(off + done));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail_errno(fmt::format("{}: writing {:#x}+{:#x}", what, off, len));
        done += static_cast<size_t>(n);
    }
    return {};
}

// The parsed header, everything open() needs.
struct Header {
    HeaderInfo info;
    uint64_t l1_offset = 0;
    uint32_t l1_size = 0;
    uint64_t refcount_table_offset = 0;
    uint32_t refcount_table_clusters = 0;
    uint32_t nb_snapshots = 0;
    uint64_t incompatible = 0, compatible = 0, autoclear = 0;
    uint32_t refcount_order = 4;
    uint32_t header_length = 72;
    Compression compression = Compression::Zlib; // of compressed clusters (byte 104)
};

Result<Header> parse_header(int fd) {
    // The header, its extensions and the backing name all live in the first cluster;
    // read up to 64 KiB of it (O_DIRECT-safe: aligned buffer and length).
    AlignedBuffer buf(64 << 10, 4096);
    if (!buf) return fail("out of memory");
    ssize_t n;
    do n = ::pread(fd, buf.data(), buf.size(), 0);
    while (n < 0 && errno == EINTR);
    if (n < 0) return fail_errno("reading the qcow2 header");
    const auto got = static_cast<size_t>(n);
    const uint8_t* h = buf.data();
    if (got < 72) return fail("qcow2 header: the file is {} bytes, shorter than a qcow2 header", got);
    if (be32(h) != kMagic) return fail("qcow2 header: bad magic (not a qcow2 image)");
    Header r;
    r.info.version = be32(h + 4);
    if (r.info.version != 2 && r.info.version != 3)
        return fail("qcow2 header: version {} is not supported (2 or 3)", r.info.version);
    const uint64_t backing_offset = be64(h + 8);
    const uint32_t backing_size = be32(h + 16);
    r.info.cluster_bits = be32(h + 20);
    r.info.size = be64(h + 24);
    const uint32_t crypt = be32(h + 32);
    r.l1_size = be32(h + 36);
    r.l1_offset = be64(h + 40);
    r.refcount_table_offset = be64(h + 48);
    r.refcount_table_clusters = be32(h + 56);
    r.nb_snapshots = be32(h + 60);
    if (r.info.cluster_bits < 9 || r.info.cluster_bits > 21)
        return fail("qcow2 header: cluster_bits {} is out of range (9..21)", r.info.cluster_bits);
    const uint64_t cs = 1ULL << r.info.cluster_bits;
    if (crypt != 0) return fail("qcow2 header: the image is encrypted (crypt_method {}); Kiln does not decrypt", crypt);
    if (r.info.version == 3) {
        if (got < 104) return fail("qcow2 header: version 3 header is truncated");
        r.incompatible = be64(h + 72);
        r.compatible = be64(h + 80);
        r.autoclear = be64(h + 88);
        r.refcount_order = be32(h + 96);
        r.header_length = be32(h + 100);
        if (r.header_length < 104 || r.header_length > got || r.header_length % 8 != 0)
            return fail("qcow2 header: header_length {} is invalid", r.header_length);
        if (r.refcount_order > 6) return fail("qcow2 header: refcount_order {} is out of range (0..6)", r.refcount_order);
        // Compression type (byte 104, when the header has it): non-zlib types must be
        // flagged incompatible, so that readers who do not know them refuse the image.
        const uint8_t type = r.header_length > 104 ? h[104] : 0;
        if (type > 1) return fail("qcow2 header: compression type {} is not supported (0 zlib, 1 zstd)", type);
        if (type != 0 && !(r.incompatible & kIncompatCompression))
            return fail("qcow2 header: compression type {} without the compression-type incompatible bit", type);
        if (type == 0 && (r.incompatible & kIncompatCompression))
            return fail("qcow2 header: the compression-type incompatible bit is set for type 0 (zlib)");
        r.compression = static_cast<Compression>(type);
    }
    r.info.dirty = r.incompatible & kIncompatDirty;
    if (r.incompatible & kIncompatCorrupt)
        return fail("qcow2 header: the image is marked corrupt; repair it with 'qemu-img check -r all'");
    if (r.incompatible & kIncompatDataFile)
        return fail("qcow2 header: the image keeps its data in an external data file, which Kiln does not support");
    if (r.incompatible & kIncompatExtL2)
        return fail("qcow2 header: the image uses extended L2 entries (subclusters), which Kiln does not support");
    if (r.info.size % 512 != 0) return fail("qcow2 header: size {} is not a multiple of 512", r.info.size);
    if (r.info.size > (1ULL << 62)) return fail("qcow2 header: size {} is too large", r.info.size);
    const uint64_t l2_entries = cs / 8;
    const uint64_t needed_l1 = div_up(div_up(r.info.size, cs), l2_entries);
    if (r.l1_size < needed_l1)
        return fail("qcow2 header: l1_size {} is too small for a {}-byte image", r.l1_size, r.info.size);
    if (uint64_t{r.l1_size} * 8 > kMaxL1Bytes) return fail("qcow2 header: l1_size {} is too large", r.l1_size);
    if (r.l1_offset % cs || r.l1_offset == 0 || r.l1_offset >= kMaxOffset)
        return fail("qcow2 header: l1_table_offset {:#x} is invalid", r.l1_offset);
    if (r.refcount_table_offset % cs || r.refcount_table_offset == 0 || r.refcount_table_offset >= kMaxOffset)
        return fail("qcow2 header: refcount_table_offset {:#x} is invalid", r.refcount_table_offset);
    if (r.refcount_table_clusters == 0 || uint64_t{r.refcount_table_clusters} * cs > kMaxRefTableBytes)
        return fail("qcow2 header: refcount_table_clusters {} is invalid", r.refcount_table_clusters);

    // Header extensions, up to the end marker.
    std::string unknown_names; // of unknown incompatible features, from the feature-name table
    size_t at = r.info.version == 3 ? r.header_length : 72;
    for (;;) {
        if (at + 8 > got || at + 8 > cs) return fail("qcow2 header: header extensions run past the first cluster");
        const uint32_t type = be32(h + at), len = be32(h + at + 4);
        if (type == kExtEnd) break;
        if (len > cs || at + 8 + len > got || at + 8 + len > cs)
            return fail("qcow2 header: header extension {:#x} runs past the first cluster", type);
        if (type == kExtBackingFormat) r.info.backing_format.assign(reinterpret_cast<const char*>(h + at + 8), len);
        if (type == kExtFeatureNames) { // 48-byte entries: type, bit, name (NUL-padded)
            for (uint32_t e = 0; e + 48 <= len; e += 48) {
                const uint8_t* f = h + at + 8 + e;
                if (f[0] == 0 && f[1] < 64 && (r.incompatible & ~kKnownIncompat & (1ULL << f[1])))
                    unknown_names += fmt::format("{}'{}'", unknown_names.empty() ? "" : ", ",
                                                 std::string(reinterpret_cast<const char*>(f + 2),
                                                             strnlen(reinterpret_cast<const char*>(f + 2), 46)));
            }
        }
        if (type == kExtEncryption) return fail("qcow2 header: the image is encrypted; Kiln does not decrypt");
        if (type == kExtDataFile)
            return fail("qcow2 header: the image keeps its data in an external data file, which Kiln does not support");
        at += 8 + align_up(len, 8);
    }
    if (r.incompatible & ~kKnownIncompat)
        return fail("qcow2 header: unknown incompatible features {:#x}{}", r.incompatible & ~kKnownIncompat,
                    unknown_names.empty() ? std::string() : " (" + unknown_names + ")");
    if (backing_offset != 0) {
        if (backing_size == 0 || backing_size > 1023)
            return fail("qcow2 header: backing_file_size {} is invalid (1..1023)", backing_size);
        if (backing_offset + backing_size > std::min<uint64_t>(got, cs))
            return fail("qcow2 header: the backing file name lies outside the first cluster");
        r.info.backing_file.assign(reinterpret_cast<const char*>(h + backing_offset), backing_size);
        if (r.info.backing_file.find('\0') != std::string::npos)
            return fail("qcow2 header: the backing file name contains a NUL byte");
    }
    return r;
}

// A cluster-sized table (L2, refcount block) in memory, tagged with its file offset.
struct TableSlot {
    uint64_t offset = 0; // 0: empty
    uint64_t last_use = 0;
    AlignedBuffer buf;
};

// A compressed cluster's place in the file, from its L2 entry (qcow2.txt, "Compressed
// Clusters Descriptor"): `stored` bytes from `offset`, sector-rounded, so they may run
// into the next host cluster and hold padding after the stream.
struct CompressedPlace {
    uint64_t offset = 0;
    uint32_t stored = 0;
    uint64_t sectors = 0; // whole 512-byte sectors from offset's own sector
};

class Qcow2Image final : public DiskImage, public CompressedSource {
public:
    Qcow2Image(Fd fd, std::string name, std::unique_ptr<DiskImage> backing, const OpenOptions& opt, Header h)
        : fd_(std::move(fd)), name_(std::move(name)), backing_(std::move(backing)), read_only_(opt.read_only),
          alignment_(std::max<uint32_t>(opt.alignment, 512)), h_(std::move(h)), cs_(1ULL << h_.info.cluster_bits),
          l2_entries_(cs_ / 8), volatile_(opt.volatile_metadata && !opt.read_only) {}

    [[nodiscard]] Result<void> init() {
        const std::string what = describe();
        // The L1 table, whole, in memory (at most 32 MiB; 16 KiB for 1 TiB at 64 KiB).
        const uint64_t l1_bytes = align_up(uint64_t{h_.l1_size} * 8, alignment_);
        AlignedBuffer l1(l1_bytes, alignment_);
        if (!l1) return fail("{}: out of memory for the L1 table", what);
        KILN_TRY(pread_all(fd_.get(), l1.data(), l1_bytes, h_.l1_offset, what + ": L1 table"));
        l1_.resize(h_.l1_size);
        for (uint32_t i = 0; i < h_.l1_size; ++i) {
            l1_[i] = be64(l1.data() + 8 * i);
            const uint64_t off = l1_[i] & kOffsetMask;
            if (off % cs_ != 0) return fail("{}: L1 entry {} points at an unaligned L2 table {:#x}", what, i, off);
        }
        for (auto& s : l2_cache_) s.buf = AlignedBuffer(cs_, alignment_);
        scratch_ = AlignedBuffer(cs_, alignment_);
        copy_ = AlignedBuffer(cs_, alignment_);
        meta_ = AlignedBuffer(std::max<uint64_t>(alignment_, 512), alignment_);
        if (!scratch_ || !copy_ || !meta_) return fail("{}: out of memory", what);
        if (read_only_) return {};

        if (h_.info.dirty)
            return fail("{}: the image was not closed cleanly (dirty bit set); run 'qemu-img check -r all' on it first",
                        what);
        if (h_.nb_snapshots != 0)
            return fail("{}: the image has {} internal snapshots; Kiln writes only images without them", what,
                        h_.nb_snapshots);
        if (alignment_ > cs_)
            return fail("{}: its {}-byte clusters are smaller than the {}-byte blocks O_DIRECT needs here; use "
                        "cache=writeback",
                        what, cs_, alignment_);
        if (h_.refcount_order != 4)
            return fail("{}: refcount_order {} (only 16-bit refcounts, QEMU's default, are written)", what,
                        h_.refcount_order);
        // The refcount table, whole, in memory, and the refcount block cache.
        const uint64_t rt_bytes = uint64_t{h_.refcount_table_clusters} * cs_;
        AlignedBuffer rt(rt_bytes, alignment_);
        if (!rt) return fail("{}: out of memory for the refcount table", what);
        KILN_TRY(pread_all(fd_.get(), rt.data(), rt_bytes, h_.refcount_table_offset, what + ": refcount table"));
        refcount_table_.resize(rt_bytes / 8);
        for (size_t i = 0; i < refcount_table_.size(); ++i) refcount_table_[i] = be64(rt.data() + 8 * i);
        refblock_ = TableSlot{0, 0, AlignedBuffer(cs_, alignment_)};
        KILN_TRY(collect_metadata());
        // New clusters go after everything the file has now.
        const off_t end = ::lseek(fd_.get(), 0, SEEK_END);
        if (end < 0) return fail_errno(what + ": finding the end of the file");
        file_end_ = align_up(static_cast<uint64_t>(end), cs_);
        next_free_ = file_end_ / cs_;
        // Bits QEMU sets on features Kiln does not maintain (persistent bitmaps): a
        // writer that does not keep them up to date must clear them (qcow2.txt).
        if (h_.info.version == 3 && h_.autoclear != 0) {
            uint8_t* m = meta_.data();
            KILN_TRY(pread_all(fd_.get(), m, alignment_, 0, what));
            put64(m + 88, 0);
            KILN_TRY(pwrite_all(fd_.get(), m, alignment_, 0, what + ": clearing autoclear features"));
            h_.autoclear = 0;
        }
        return {};
    }

    uint64_t size() const override { return h_.info.size; }
    bool read_only() const override { return read_only_; }
    int top_fd() const override { return fd_.get(); }
    uint32_t alignment() const override { return std::max(alignment_, backing_ ? backing_->alignment() : 512u); }
    const char* format() const override { return "qcow2"; }
    std::string describe() const override {
        return backing_ ? fmt::format("qcow2 '{}' over {}", name_, backing_->describe())
                        : fmt::format("qcow2 '{}'", name_);
    }

    Result<Mapped> map_read(uint64_t offset, uint64_t len, std::span<Extent> out) override {
        std::lock_guard lock(mu_);
        Mapped m;
        uint64_t pos = offset;
        const uint64_t end = offset + len;
        while (pos < end && m.count < out.size()) {
            const uint64_t in_cluster = pos % cs_;
            const uint64_t n = std::min(end - pos, cs_ - in_cluster);
            const uint64_t entry = KILN_TRY(data_entry(pos));
            const uint64_t host = entry & kOffsetMask;
            uint64_t done = n;
            if (entry & kCompressed) {
                const CompressedPlace c = compressed_place(entry);
                add(out, m, Extent{Extent::Kind::Compressed, fd_.get(), c.offset, n, static_cast<uint32_t>(in_cluster),
                                   c.stored, this});
            } else if ((entry & kZeroFlag) || (host == 0 && (!backing_ || pos >= backing_->size()))) {
                // A v3 zero cluster (preallocated or not), or unallocated with nothing below.
                add(out, m, Extent{Extent::Kind::Zero, -1, 0, n});
            } else if (host != 0) {
                add(out, m, Extent{Extent::Kind::Data, fd_.get(), host + in_cluster, n});
            } else {
                // Unallocated here: the backing image's bytes (zeros past its end).
                const uint64_t in_backing = std::min(n, backing_->size() - pos);
                Extent sub[8];
                const size_t room = std::min<size_t>(std::size(sub), out.size() - m.count);
                auto b = KILN_TRY(backing_->map_read(pos, in_backing, std::span(sub, room)));
                for (size_t i = 0; i < b.count; ++i) add(out, m, sub[i]);
                done = b.covered;
                if (done == in_backing && in_backing < n && m.count < out.size()) {
                    add(out, m, Extent{Extent::Kind::Zero, -1, 0, n - in_backing});
                    done = n;
                }
            }
            m.covered += done;
            pos += done;
            if (done < n) break;
        }
        return m;
    }

    Result<Mapped> map_write(uint64_t offset, uint64_t len, std::span<Extent> out) override {
        if (read_only_) return fail("{} is read-only", describe());
        std::lock_guard lock(mu_);
        Mapped m;
        uint64_t pos = offset;
        const uint64_t end = offset + len;
        while (pos < end && m.count < out.size()) {
            const uint64_t in_cluster = pos % cs_;
            const uint64_t n = std::min(end - pos, cs_ - in_cluster);
            const uint64_t entry = KILN_TRY(data_entry(pos));
            uint64_t host = entry & kOffsetMask;
            if (host == 0 || (entry & kCompressed)) {
                host = KILN_TRY(allocate_data_cluster(pos / cs_, entry, in_cluster, n));
            } else {
                // In place. A hostile or damaged image may point a data cluster at its own
                // tables: writing there would destroy it (QEMU calls this an overlap and
                // marks the image corrupt).
                if (metadata_.contains(host))
                    return fail("{}: the data cluster for guest offset {:#x} is at {:#x}, on the image's own "
                                "metadata; refusing to write (check the image with 'qemu-img check')",
                                describe(), pos - in_cluster, host);
                if (entry & kZeroFlag) KILN_TRY(unzero_cluster(pos / cs_, host));
            }
            add(out, m, Extent{Extent::Kind::Data, fd_.get(), host + in_cluster, n});
            m.covered += n;
            pos += n;
        }
        return m;
    }

    Result<void> flush_metadata() override { return {}; } // written through already

    Result<void> read_compressed(const Extent& e, std::span<const iovec> out) override {
        std::lock_guard lock(inflate_mu_);
        return copy_out(e, KILN_TRY(inflated(CompressedPlace{e.file_offset, e.stored, 0})), out);
    }

    bool copy_inflated(const Extent& e, std::span<const iovec> out) override {
        std::lock_guard lock(inflate_mu_);
        const uint8_t* c = cached(e.file_offset);
        return c && copy_out(e, c, out);
    }

    Result<void> inflate_into(const Extent& e, std::span<const uint8_t> stored, std::span<const iovec> out,
                              InflateScratch& scratch) override {
        if (copy_inflated(e, out)) return {}; // another worker got there first
        const auto cluster = KILN_TRY(inflate(scratch, e.file_offset, stored));
        KILN_TRY(copy_out(e, cluster.data(), out));
        std::lock_guard lock(inflate_mu_);
        KILN_TRY(ensure_cache());
        keep(e.file_offset, cluster); // at hand for the next reader
        return {};
    }

private:
    static void add(std::span<Extent> out, Mapped& m, const Extent& e) {
        if (m.count > 0 && e.kind != Extent::Kind::Compressed) { // each compressed cluster inflates alone
            Extent& last = out[m.count - 1];
            const bool contiguous = last.kind == e.kind && last.fd == e.fd &&
                                    (e.kind == Extent::Kind::Zero || last.file_offset + last.length == e.file_offset);
            if (contiguous) {
                last.length += e.length;
                return;
            }
        }
        out[m.count++] = e;
    }

    // A preallocated zero cluster about to be written in place: its old bytes must read
    // as zeros around the guest's write, so the cluster is zeroed first, then the flag
    // is cleared.
    Result<void> unzero_cluster(uint64_t gc, uint64_t host) {
        std::memset(copy_.data(), 0, cs_);
        KILN_TRY(pwrite_all(fd_.get(), copy_.data(), cs_, host, describe() + ": zeroing a preallocated cluster"));
        const uint64_t l2 = l1_[gc / l2_entries_] & kOffsetMask;
        uint8_t* t = KILN_TRY(l2_table(l2));
        const uint64_t i = gc % l2_entries_;
        put64(t + 8 * i, host | kCopied);
        if (!volatile_) KILN_TRY(write_back(t, l2, l2 + 8 * i, 8, "L2 entry"));
        return {};
    }

    // Every cluster the image's own structures occupy (header, L1, refcount table, L2
    // tables, refcount blocks), kept for writable images so no guest write lands on one.
    void note_metadata(uint64_t offset, uint64_t bytes) {
        for (uint64_t c = offset / cs_ * cs_; c < offset + bytes; c += cs_) metadata_.insert(c);
    }
    // Also refuses tables a writer would turn into damage: an L2 table or refcount
    // block inside the header, the L1 table, the refcount table or each other (an
    // allocating write would put an L2 entry or a refcount there), and an L2 table shared
    // with a snapshot (no COPIED flag: its entries must not change in place).
    Result<void> collect_metadata() {
        note_metadata(0, cs_);
        note_metadata(h_.l1_offset, uint64_t{h_.l1_size} * 8);
        note_metadata(h_.refcount_table_offset, uint64_t{h_.refcount_table_clusters} * cs_);
        for (size_t i = 0; i < refcount_table_.size(); ++i) {
            const uint64_t rb = refcount_table_[i] & kOffsetMask;
            if (rb == 0) continue;
            if (rb % cs_ || metadata_.contains(rb))
                return fail("{}: refcount table entry {} points at {:#x}, inside other metadata; the image is corrupt "
                            "(qemu-img check -r all)",
                            describe(), i, rb);
            metadata_.insert(rb);
        }
        for (size_t i = 0; i < l1_.size(); ++i) {
            const uint64_t l2 = l1_[i] & kOffsetMask;
            if (l2 == 0) continue;
            if (metadata_.contains(l2))
                return fail("{}: L1 entry {} points at {:#x}, inside other metadata; the image is corrupt "
                            "(qemu-img check -r all)",
                            describe(), i, l2);
            if (!(l1_[i] & kCopied))
                return fail("{}: L2 table {} is shared with a snapshot (no COPIED flag); Kiln does not write such "
                            "images",
                            describe(), i);
            metadata_.insert(l2);
        }
        return {};
    }

    // The L2 table at `offset`, from the cache or the file.
    Result<uint8_t*> l2_table(uint64_t offset) {
        if (!volatile_l2_.empty())
            if (auto it = volatile_l2_.find(offset); it != volatile_l2_.end()) return it->second.data();
        TableSlot* victim = &l2_cache_[0];
        for (auto& s : l2_cache_) {
            if (s.offset == offset) {
                s.last_use = ++clock_;
                return s.buf.data();
            }
            if (s.last_use < victim->last_use) victim = &s;
        }
        victim->offset = 0;
        KILN_TRY_CTX(pread_all(fd_.get(), victim->buf.data(), cs_, offset, "L2 table"), "{}", describe());
        victim->offset = offset;
        victim->last_use = ++clock_;
        return victim->buf.data();
    }

    // The L2 entry of the cluster holding guest offset `pos`, refused when no valid image
    // has it (an unaligned data cluster, compressed data beyond the 56-bit offsets).
    Result<uint64_t> data_entry(uint64_t pos) {
        const uint64_t entry = KILN_TRY(l2_entry(pos / cs_));
        const uint64_t cluster = pos / cs_ * cs_;
        if (entry & kCompressed) {
            if (const CompressedPlace c = compressed_place(entry); c.offset + c.stored > kMaxOffset)
                return fail("{}: the compressed cluster for guest offset {:#x} lies beyond any file ({:#x})",
                            describe(), cluster, c.offset);
            return entry;
        }
        if ((entry & kOffsetMask) % cs_)
            return fail("{}: the L2 entry for guest offset {:#x} points at {:#x}, not cluster-aligned", describe(),
                        cluster, entry & kOffsetMask);
        return entry;
    }

    // Bits 0..x-1 the byte offset, x..61 the sectors after the first, x = 62 - (cluster_bits - 8).
    CompressedPlace compressed_place(uint64_t entry) const {
        const unsigned x = 62 - (h_.info.cluster_bits - 8);
        CompressedPlace c;
        c.offset = entry & ((1ULL << x) - 1);
        c.sectors = ((entry & ~(kCopied | kCompressed)) >> x) + 1;
        c.stored = static_cast<uint32_t>(c.sectors * 512 - c.offset % 512); // at most 2 clusters
        return c;
    }

    // Copies the extent's part of inflated cluster `c` into `out`.
    Result<void> copy_out(const Extent& e, const uint8_t* c, std::span<const iovec> out) const {
        uint64_t at = e.in_cluster;
        for (const iovec& v : out) {
            if (at + v.iov_len > cs_) return fail("{}: a compressed extent runs past its cluster", describe());
            std::memcpy(v.iov_base, c + at, v.iov_len);
            at += v.iov_len;
        }
        return {};
    }

    // Memory for compressed clusters comes at the first one an image meets (inflate_mu_
    // held, as for everything below); `stored_` is there once all of it is.
    Result<void> ensure_cache() {
        if (stored_) return {};
        bool ok = true;
        for (auto& s : inflated_) {
            s.buf = AlignedBuffer(cs_, alignment_);
            ok = ok && s.buf;
        }
        if (ok) stored_ = AlignedBuffer(2 * cs_ + 2 * alignment_, alignment_);
        if (!stored_) return fail("{}: out of memory for compressed clusters", describe());
        return {};
    }

    // The cached inflated cluster stored at file offset `offset`, or null.
    const uint8_t* cached(uint64_t offset) {
        for (auto& s : inflated_)
            if (s.offset == offset + 1) { // +1: offset 0 is a valid place, slot offset 0 is "empty"
                s.last_use = ++inflate_clock_;
                return s.buf.data();
            }
        return nullptr;
    }

    // Keeps `cluster`, stored at `offset`, in the least recently used cache slot.
    const uint8_t* keep(uint64_t offset, std::span<const uint8_t> cluster) {
        TableSlot* victim = &inflated_[0];
        for (auto& s : inflated_)
            if (s.last_use < victim->last_use) victim = &s;
        std::memcpy(victim->buf.data(), cluster.data(), cs_);
        victim->offset = offset + 1;
        victim->last_use = ++inflate_clock_;
        return victim->buf.data();
    }

    // Inflates the cluster stored at `offset` from its compressed bytes (`stored`: from
    // `offset` on, up to the descriptor's length or the end of the file) with `scratch`.
    Result<std::span<const uint8_t>> inflate(InflateScratch& scratch, uint64_t offset, std::span<const uint8_t> stored) {
        return KILN_TRY_CTX(scratch.inflate(h_.compression, stored, cs_), "{}: the compressed cluster at {:#x}",
                            describe(), offset);
    }

    // The whole inflated cluster stored at `c`, from the cache or read from the file.
    Result<const uint8_t*> inflated(const CompressedPlace& c) {
        if (const uint8_t* hit = cached(c.offset)) return hit;
        KILN_TRY(ensure_cache());
        const StoredRead read = stored_read(c.offset, c.stored, alignment_);
        uint64_t got = 0;
        while (got < read.length) {
            const ssize_t r = ::pread(fd_.get(), stored_.data() + got, read.length - got, static_cast<off_t>(read.from + got));
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) return fail_errno(fmt::format("{}: reading a compressed cluster at {:#x}", describe(), c.offset));
            if (r == 0) break;
            got += static_cast<uint64_t>(r);
        }
        const auto stream = read.stream(stored_.data(), got, c.stored);
        if (stream.empty())
            return fail("{}: the compressed cluster at {:#x} lies past the end of the file", describe(), c.offset);
        return keep(c.offset, KILN_TRY(inflate(own_scratch_, c.offset, stream)));
    }

    // Host cluster `hc`'s refcount (writable images: 16-bit refcounts).
    Result<uint16_t> refcount(uint64_t hc) {
        const uint64_t rti = hc / refs_per_block();
        if (rti >= refcount_table_.size()) return 0;
        const uint64_t rb = refcount_table_[rti] & kOffsetMask;
        if (rb == 0) return 0;
        const uint8_t* t = KILN_TRY(refblock(rb));
        return be16(t + 2 * (hc % refs_per_block()));
    }

    // A compressed cluster was rewritten elsewhere: one reference less on each host
    // cluster its sectors touch (as QEMU frees them; shared clusters stay). The guest's
    // write has already landed, so a failure here is only logged, as QEMU does: at worst
    // the old sectors leak, which `qemu-img check -r leaks` reclaims.
    void release_compressed(const CompressedPlace& c) {
        const uint64_t first = c.offset / 512 * 512;
        for (uint64_t hc = first / cs_; hc <= (first + c.sectors * 512 - 1) / cs_; ++hc) {
            const auto drop = [&]() -> Result<void> {
                const uint16_t r = KILN_TRY(refcount(hc));
                if (r == 0) return fail("host cluster {:#x} has no references left", hc * cs_);
                return set_refcount(hc, static_cast<uint16_t>(r - 1));
            };
            if (auto done = drop(); !done)
                spdlog::warn("{}: freeing the old sectors of a compressed cluster at {:#x}: {} (qemu-img check -r all "
                             "repairs it)",
                             describe(), c.offset, done.error().message());
        }
    }

    // The L2 entry for guest cluster `gc` (0: unallocated, no table).
    Result<uint64_t> l2_entry(uint64_t gc) {
        const uint64_t l1i = gc / l2_entries_;
        if (l1i >= l1_.size()) return fail("{}: guest cluster {} is beyond the L1 table", describe(), gc);
        const uint64_t l2 = l1_[l1i] & kOffsetMask;
        if (l2 == 0) return 0;
        const uint8_t* t = KILN_TRY(l2_table(l2));
        return be64(t + 8 * (gc % l2_entries_));
    }

    // Writes [offset, offset+len) of an in-memory copy of the file region that starts at
    // `base` (buffer `buf`) back to the file, widened to the I/O alignment.
    Result<void> write_back(const uint8_t* buf, uint64_t base, uint64_t offset, uint64_t len, const char* what) {
        const uint64_t from = offset / alignment_ * alignment_;
        const uint64_t to = align_up(offset + len, alignment_);
        return pwrite_all(fd_.get(), buf + (from - base), to - from, from, fmt::format("{}: {}", describe(), what));
    }

    // Writes entry `index` of a table kept whole in memory (L1, refcount table) that
    // starts at file offset `table_offset`: the aligned block around it, big-endian.
    Result<void> write_table_entry(const std::vector<uint64_t>& table, uint64_t table_offset, uint64_t index,
                                   const char* what) {
        uint8_t* m = meta_.data();
        const uint64_t from = (table_offset + index * 8) / alignment_ * alignment_;
        for (uint64_t i = 0; i < alignment_ / 8; ++i) {
            const uint64_t idx = (from - table_offset) / 8 + i;
            put64(m + 8 * i, idx < table.size() ? table[idx] : 0);
        }
        return pwrite_all(fd_.get(), m, alignment_, from, fmt::format("{}: {}", describe(), what));
    }

    Result<uint8_t*> refblock(uint64_t offset) {
        if (refblock_.offset != offset) {
            refblock_.offset = 0;
            KILN_TRY_CTX(pread_all(fd_.get(), refblock_.buf.data(), cs_, offset, "refcount block"), "{}", describe());
            refblock_.offset = offset;
        }
        return refblock_.buf.data();
    }

    uint64_t refs_per_block() const { return cs_ / 2; }

    // Sets host cluster `hc`'s refcount, creating its refcount block (and growing the
    // refcount table) as needed.
    Result<void> set_refcount(uint64_t hc, uint16_t value) {
        const uint64_t rti = hc / refs_per_block();
        if (rti >= refcount_table_.size()) KILN_TRY(grow_refcount_table(rti));
        uint64_t rb = refcount_table_[rti] & kOffsetMask;
        if (rb == 0) rb = KILN_TRY(new_refblock(rti));
        uint8_t* t = KILN_TRY(refblock(rb));
        put16(t + 2 * (hc % refs_per_block()), value);
        return write_back(t, rb, rb + 2 * (hc % refs_per_block()), 2, "refcount");
    }

    // A refcount block for table entry `rti`, in a new cluster. When that cluster is
    // among those the block describes, the block counts itself; otherwise its own
    // refcount goes into another block first.
    Result<uint64_t> new_refblock(uint64_t rti) {
        const uint64_t c = next_free_++;
        const uint64_t at = c * cs_;
        KILN_TRY(extend_file(at + cs_));
        uint8_t* t = copy_.data(); // not in use while metadata is being allocated
        std::memset(t, 0, cs_);
        const bool self = c / refs_per_block() == rti;
        if (self) put16(t + 2 * (c % refs_per_block()), 1);
        KILN_TRY(pwrite_all(fd_.get(), t, cs_, at, describe() + ": new refcount block"));
        if (!self) KILN_TRY(set_refcount(c, 1));
        refcount_table_[rti] = at;
        metadata_.insert(at);
        if (!growing_)
            KILN_TRY(write_table_entry(refcount_table_, h_.refcount_table_offset, rti, "refcount table entry"));
        return at;
    }

    // Moves the refcount table to new clusters at the end of the file, large enough for
    // entry `need` and for its own clusters, then switches the header to it and frees
    // the old one.
    Result<void> grow_refcount_table(uint64_t need) {
        if (growing_) return fail("{}: the refcount table cannot describe its own growth", describe());
        growing_ = true;
        const uint64_t old_offset = h_.refcount_table_offset, old_clusters = h_.refcount_table_clusters;
        uint64_t entries = std::max<uint64_t>(need + 1, refcount_table_.size() * 2);
        uint64_t clusters = div_up(entries * 8, cs_);
        // Room also for the blocks that will count the new table's own clusters.
        clusters = div_up((entries + div_up(clusters, refs_per_block()) + 1) * 8, cs_);
        if (clusters * cs_ > kMaxRefTableBytes) {
            growing_ = false;
            return fail("{}: the refcount table would exceed {} MiB", describe(), kMaxRefTableBytes >> 20);
        }
        refcount_table_.resize(clusters * cs_ / 8, 0);
        const uint64_t first = next_free_;
        next_free_ += clusters;
        KILN_TRY(extend_file(next_free_ * cs_));
        for (uint64_t c = first; c < first + clusters; ++c) KILN_TRY(set_refcount(c, 1));
        AlignedBuffer t(clusters * cs_, alignment_);
        if (!t) return fail("{}: out of memory for the refcount table", describe());
        for (size_t i = 0; i < refcount_table_.size(); ++i) put64(t.data() + 8 * i, refcount_table_[i]);
        KILN_TRY(pwrite_all(fd_.get(), t.data(), t.size(), first * cs_, describe() + ": new refcount table"));
        // The switch: one header write carries both fields (offset 48..60).
        uint8_t* m = meta_.data();
        KILN_TRY(pread_all(fd_.get(), m, alignment_, 0, describe()));
        put64(m + 48, first * cs_);
        put32(m + 56, static_cast<uint32_t>(clusters));
        KILN_TRY(pwrite_all(fd_.get(), m, alignment_, 0, describe() + ": header"));
        h_.refcount_table_offset = first * cs_;
        note_metadata(first * cs_, clusters * cs_);
        h_.refcount_table_clusters = static_cast<uint32_t>(clusters);
        growing_ = false;
        for (uint64_t c = old_offset / cs_; c < old_offset / cs_ + old_clusters; ++c) KILN_TRY(set_refcount(c, 0));
        return {};
    }

    Result<void> extend_file(uint64_t end) {
        // Allocated clusters must lie inside the file: a read of a sparse tail would
        // otherwise come back short.
        if (end <= file_end_) return {};
        // A throw-away image grows in 64 MiB steps, allocated up front with fallocate:
        // the file system then does not allocate blocks inside each guest write (4 KiB
        // random writes into a snapshot overlay here: 74k -> 93k IOPS at QD32, about
        // what the raw file does). Where fallocate is not supported, a sparse truncate.
        // An image QEMU may open again grows exactly, by truncation.
        if (volatile_) {
            end = align_up(end, 64ULL << 20);
            if (::fallocate(fd_.get(), 0, static_cast<off_t>(file_end_), static_cast<off_t>(end - file_end_)) == 0) {
                file_end_ = end;
                return {};
            }
        }
        if (::ftruncate(fd_.get(), static_cast<off_t>(end)) != 0)
            return fail_errno(fmt::format("{}: growing the file to {} bytes", describe(), end));
        file_end_ = end;
        return {};
    }

    // A new host cluster with refcount 1, contents as the file has them (zeros).
    Result<uint64_t> allocate_cluster() {
        const uint64_t c = next_free_++;
        KILN_TRY(extend_file((c + 1) * cs_));
        if (!volatile_) KILN_TRY(set_refcount(c, 1));
        return c * cs_;
    }

    // The L2 table for guest cluster `gc`, allocating an empty one if there is none.
    Result<uint64_t> l2_for_write(uint64_t gc) {
        const uint64_t l1i = gc / l2_entries_;
        if (l1i >= l1_.size()) return fail("{}: guest cluster {} is beyond the L1 table", describe(), gc);
        if (const uint64_t l2 = l1_[l1i] & kOffsetMask; l2 != 0) return l2;
        const uint64_t l2 = KILN_TRY(allocate_cluster());
        if (volatile_) { // in memory only; the cluster in the file stays a hole
            AlignedBuffer table(cs_, alignment_);
            if (!table) return fail("{}: out of memory for an L2 table", describe());
            volatile_l2_.emplace(l2, std::move(table));
            l1_[l1i] = l2 | kCopied;
            metadata_.insert(l2);
            return l2;
        }
        std::memset(copy_.data(), 0, cs_);
        KILN_TRY(pwrite_all(fd_.get(), copy_.data(), cs_, l2, describe() + ": new L2 table"));
        l1_[l1i] = l2 | kCopied;
        metadata_.insert(l2);
        KILN_TRY(write_table_entry(l1_, h_.l1_offset, l1i, "L1 entry"));
        return l2;
    }

    // Allocates guest cluster `gc` for a write of [in_cluster, +n): the parts outside
    // it get what the guest read there before (the backing image's bytes, or zeros).
    Result<uint64_t> allocate_data_cluster(uint64_t gc, uint64_t old_entry, uint64_t in_cluster, uint64_t n) {
        const uint64_t l2 = KILN_TRY(l2_for_write(gc));
        const uint64_t guest = gc * cs_;
        const bool compressed = old_entry & kCompressed; // bit 0 is then part of its offset
        const bool from_backing = !compressed && !(old_entry & kZeroFlag) && backing_ && guest < backing_->size();
        // Copy-on-write of a partial cluster: the whole cluster as the guest read it
        // before (this image's compressed cluster, or the backing image's bytes), then
        // written here; the caller's data then overwrites its part. It is gathered before
        // the cluster is allocated, so one that cannot be read (a broken stream, the
        // backing file's error) leaves nothing allocated behind.
        const bool copy = (compressed || from_backing) && (in_cluster > 0 || in_cluster + n < cs_);
        if (copy) KILN_TRY(old_contents(guest, old_entry, scratch_.data()));
        const uint64_t host = KILN_TRY(allocate_cluster());
        if (copy) KILN_TRY(pwrite_all(fd_.get(), scratch_.data(), cs_, host, describe() + ": copy-on-write"));
        // Otherwise the new cluster is a hole in the file, which reads as zeros: right for
        // an unallocated cluster without backing, for a zero cluster, and for a cluster
        // the guest writes whole.
        uint8_t* t = KILN_TRY(l2_table(l2));
        const uint64_t i = gc % l2_entries_;
        put64(t + 8 * i, host | kCopied);
        if (!volatile_) KILN_TRY(write_back(t, l2, l2 + 8 * i, 8, "L2 entry"));
        // Last, so a crash in between leaks the old sectors rather than freeing live ones.
        if (compressed && !volatile_) release_compressed(compressed_place(old_entry));
        return host;
    }

    // What guest cluster `guest` (L2 entry `old_entry`, compressed or unallocated over a
    // backing image) reads as, into `buf` (one cluster).
    Result<void> old_contents(uint64_t guest, uint64_t old_entry, uint8_t* buf) {
        if (old_entry & kCompressed) {
            std::lock_guard lock(inflate_mu_);
            std::memcpy(buf, KILN_TRY(inflated(compressed_place(old_entry))), cs_);
            return {};
        }
        const uint64_t avail = std::min(cs_, backing_->size() - guest);
        std::memset(buf, 0, cs_);
        uint64_t done = 0;
        while (done < avail) {
            Extent ex[8];
            auto b = KILN_TRY(backing_->map_read(guest + done, avail - done, ex));
            uint64_t at = done;
            for (size_t i = 0; i < b.count; ++i) {
                if (ex[i].kind == Extent::Kind::Data)
                    KILN_TRY(pread_all(ex[i].fd, buf + at, ex[i].length, ex[i].file_offset,
                                       describe() + ": copy-on-write from the backing file"));
                if (ex[i].kind == Extent::Kind::Compressed) {
                    const iovec v{buf + at, ex[i].length};
                    KILN_TRY_CTX(ex[i].source->read_compressed(ex[i], {&v, 1}), "{}: copy-on-write", describe());
                }
                at += ex[i].length;
            }
            if (b.covered == 0) return fail("{}: backing image mapped nothing at {:#x}", describe(), guest + done);
            done += b.covered;
        }
        return {};
    }

    Fd fd_;
    std::string name_;
    std::unique_ptr<DiskImage> backing_;
    bool read_only_;
    uint32_t alignment_;
    Header h_;
    uint64_t cs_;
    uint64_t l2_entries_;
    bool volatile_;
    std::mutex mu_;
    std::vector<uint64_t> l1_;
    std::array<TableSlot, kL2CacheSlots> l2_cache_;
    // volatile_metadata: L2 tables made since open, by file offset (never evicted).
    std::unordered_map<uint64_t, AlignedBuffer> volatile_l2_;
    uint64_t clock_ = 0;
    std::vector<uint64_t> refcount_table_;
    std::set<uint64_t> metadata_; // writable images: see note_metadata
    TableSlot refblock_;
    AlignedBuffer scratch_, copy_, meta_;
    // Compressed clusters (read_compressed, copy-on-write out of one): their own lock, as
    // workers inflate while others map; taken after mu_ when both are held.
    std::mutex inflate_mu_;
    InflateScratch own_scratch_; // for what the image inflates itself (read_compressed)
    AlignedBuffer stored_;       // the compressed bytes, aligned for O_DIRECT
    std::array<TableSlot, kInflatedSlots> inflated_;
    uint64_t inflate_clock_ = 0;
    uint64_t file_end_ = 0, next_free_ = 0;
    bool growing_ = false;
};

} // namespace

bool has_magic(std::span<const uint8_t> first_bytes) {
    return first_bytes.size() >= 4 && be32(first_bytes.data()) == kMagic;
}

Result<HeaderInfo> read_header(int fd) { return KILN_TRY(parse_header(fd)).info; }

Result<void> create(int fd, const CreateOptions& o) {
    if (o.cluster_bits < 9 || o.cluster_bits > 21) return fail("cluster_bits {} is out of range (9..21)", o.cluster_bits);
    if (o.size == 0 || o.size % 512) return fail("size {} is not a non-zero multiple of 512", o.size);
    const uint64_t cs = 1ULL << o.cluster_bits;
    const uint64_t l1_size = div_up(div_up(o.size, cs), cs / 8);
    if (l1_size * 8 > kMaxL1Bytes)
        return fail("a {}-byte image needs an L1 table above {} MiB with {}-byte clusters: use larger clusters",
                    o.size, kMaxL1Bytes >> 20, cs);
    if (o.backing_file.size() > 1023) return fail("backing file name is longer than 1023 bytes");
    if (!o.backing_format.empty() && o.backing_format != "raw" && o.backing_format != "qcow2")
        return fail("backing format '{}' (raw or qcow2)", o.backing_format);
    const uint64_t l1_clusters = std::max<uint64_t>(1, div_up(l1_size * 8, cs));
    // Cluster 0: header; 1: refcount table; 2: refcount block; 3...: L1 table.
    const uint64_t clusters = 3 + l1_clusters;
    if (clusters > cs / 2) return fail("the image metadata does not fit one refcount block; use larger clusters");

    AlignedBuffer img(3 * cs, 4096);
    if (!img) return fail("out of memory");
    uint8_t* h = img.data();
    put32(h, kMagic);
    put32(h + 4, 3);
    put32(h + 20, o.cluster_bits);
    put64(h + 24, o.size);
    put32(h + 36, static_cast<uint32_t>(l1_size));
    put64(h + 40, 3 * cs);
    put64(h + 48, cs);
    put32(h + 56, 1);
    put32(h + 96, 4); // refcount_order: 16-bit refcounts
    put32(h + 100, kHeaderV3Length);
    // Byte 104: compression type 0 (zlib); 105..111 padding.
    size_t at = kHeaderV3Length;
    auto ext = [&](uint32_t type, std::string_view data) {
        put32(h + at, type);
        put32(h + at + 4, static_cast<uint32_t>(data.size()));
        std::memcpy(h + at + 8, data.data(), data.size());
        at += 8 + align_up(data.size(), 8);
    };
    if (!o.backing_format.empty()) ext(kExtBackingFormat, o.backing_format);
    // The feature name table QEMU writes too, so `qemu-img info` names the bits; left
    // out when it would not fit in a small (512-byte) first cluster with the name.
    if (kHeaderV3Length + 8 + align_up(o.backing_format.size(), 8) + 8 + 8 * 48 + 8 + o.backing_file.size() <= cs) {
        static constexpr struct {
            uint8_t type, bit;
            const char* name;
        } kNames[] = {{0, 0, "dirty bit"},          {0, 1, "corrupt bit"},        {0, 2, "external data file"},
                      {0, 3, "compression type"},   {0, 4, "extended L2 entries"}, {1, 0, "lazy refcounts"},
                      {2, 0, "bitmaps"},            {2, 1, "raw external data"}};
        std::string table(std::size(kNames) * 48, '\0');
        for (size_t i = 0; i < std::size(kNames); ++i) {
            table[i * 48] = static_cast<char>(kNames[i].type);
            table[i * 48 + 1] = static_cast<char>(kNames[i].bit);
            std::memcpy(table.data() + i * 48 + 2, kNames[i].name, std::strlen(kNames[i].name));
        }
        ext(kExtFeatureNames, table);
    }
    at += 8; // end of extensions (type 0, length 0: already zero)
    if (!o.backing_file.empty()) {
        if (at + o.backing_file.size() > cs) return fail("the header does not fit in one {}-byte cluster", cs);
        put64(h + 8, at);
        put32(h + 16, static_cast<uint32_t>(o.backing_file.size()));
        std::memcpy(h + at, o.backing_file.data(), o.backing_file.size());
    } else if (at > cs) {
        return fail("the header does not fit in one {}-byte cluster", cs);
    }
    put64(h + cs, 2 * cs);                                          // refcount table[0]
    for (uint64_t c = 0; c < clusters; ++c) put16(h + 2 * cs + 2 * c, 1); // refcounts
    // The L1 table is all zeros: a hole reads as zeros, so only the first three
    // clusters are written and the file is extended over the L1 table. Creating an
    // image then costs the same for 1 GiB and 1 TiB.
    KILN_TRY(pwrite_all(fd, img.data(), 3 * cs, 0, "writing the qcow2 image"));
    if (::ftruncate(fd, static_cast<off_t>(clusters * cs)) != 0) return fail_errno("extending the qcow2 image");
    return {};
}

Result<std::unique_ptr<DiskImage>> open(Fd fd, std::string name, std::unique_ptr<DiskImage> backing,
                                        const OpenOptions& options) {
    auto h = parse_header(fd.get());
    if (!h) return std::unexpected(h.error().context(fmt::format("qcow2 '{}'", name)));
    if (!h->info.backing_file.empty() && !backing)
        return fail("qcow2 '{}': its backing file '{}' was not opened", name, h->info.backing_file);
    auto img = std::make_unique<Qcow2Image>(std::move(fd), std::move(name), std::move(backing), options, std::move(*h));
    KILN_TRY(img->init());
    return std::unique_ptr<DiskImage>(std::move(img));
}

} // namespace kiln::block::qcow2
