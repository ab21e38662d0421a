// DiskImage: what a virtio-blk queue worker needs of a disk, whatever its format.
//
// The data path never copies through the VMM: the worker asks the image to *map* a
// guest byte range onto extents of host files (raw: one extent of the file; qcow2: one
// per run of contiguous clusters, in this image or a backing file, or "zero" for
// clusters nobody has written) and submits one io_uring readv/writev per data extent.
// Metadata work (qcow2 cluster allocation, L2 and refcount updates, copy-on-write of a
// partial cluster from the backing file) happens inside map_write(), synchronously,
// before it returns: after map_write() the returned extents are this image's own
// clusters and a write there is final. The one exception to "no copies" is a compressed
// qcow2 cluster (a distro cloud image is made of them): its extent names the image that
// inflates it, and the worker has it copied into the guest's buffers synchronously.
//
// Thread safety: map_read/map_write/discard/write_zeroes/flush_metadata may be called
// from several queue workers at once; implementations serialise their metadata
// themselves. A guest issuing overlapping requests concurrently gets what real disks
// give it: some order.
#pragma once

#include <sys/uio.h>

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>

#include "vmm/base/result.hpp"

namespace kiln::block {

class CompressedSource;
class InflateScratch; // block/cluster_inflater.hpp

struct Extent {
    enum class Kind : uint8_t {
        Data,       // read/write `length` bytes of `fd` at `file_offset`
        Zero,       // read-only mapping: these bytes read as zeros, no file behind them
        Compressed, // read-only mapping: bytes [in_cluster, +length) of the cluster that
                    // `source` inflates from `stored` bytes of `fd` at `file_offset`
    };
    Kind kind = Kind::Data;
    int fd = -1;
    uint64_t file_offset = 0;
    uint64_t length = 0;
    // Compressed only.
    uint32_t in_cluster = 0;
    uint32_t stored = 0; // compressed bytes on file (an upper bound: whole sectors)
    CompressedSource* source = nullptr;
};

// The read that fetches a compressed cluster's `stored` bytes at `offset` with both ends
// on `align` (O_DIRECT): [from, from + length), the stream starting `skip` bytes in.
struct StoredRead {
    uint64_t from = 0, length = 0, skip = 0;
    // The stream's bytes in `buf`, which holds the `got` bytes that read returned; empty
    // when the file ended before the stream began. Fewer than `stored` bytes where the
    // file ends inside the stream's last sector: that is padding.
    [[nodiscard]] std::span<const uint8_t> stream(const uint8_t* buf, uint64_t got, uint32_t stored) const {
        if (got <= skip) return {};
        return {buf + skip, static_cast<size_t>(std::min<uint64_t>(got - skip, stored))};
    }
};
[[nodiscard]] inline StoredRead stored_read(uint64_t offset, uint32_t stored, uint64_t align) {
    const uint64_t from = offset / align * align;
    return {from, (offset + stored + align - 1) / align * align - from, offset - from};
}

// An image with compressed clusters: fills the guest's buffers for a Compressed extent
// it mapped (`out`'s lengths add up to e.length). Thread-safe. The virtio-blk worker
// reads the compressed bytes itself, through its io_uring, so that reads overlap with
// the inflating of other clusters: copy_inflated, else its read, then inflate_into.
class CompressedSource {
public:
    // All of it, synchronously: a cache hit, or a pread and an inflate.
    [[nodiscard]] virtual Result<void> read_compressed(const Extent& e, std::span<const iovec> out) = 0;
    // A cache hit only: false when the cluster is not inflated at hand.
    [[nodiscard]] virtual bool copy_inflated(const Extent& e, std::span<const iovec> out) = 0;
    // Inflates from `stored`, the bytes at e.file_offset (e.stored of them, or fewer
    // where the file ends), with the caller's own `scratch` (outside the image's lock),
    // keeps the cluster at hand, and copies.
    [[nodiscard]] virtual Result<void> inflate_into(const Extent& e, std::span<const uint8_t> stored,
                                                    std::span<const iovec> out, InflateScratch& scratch) = 0;

protected:
    ~CompressedSource() = default;
};

// How much of a request one map call described: extents [0, count) cover the first
// `covered` bytes of the range (exactly, in order). covered < len means "call again at
// offset + covered" (the extents array was full).
struct Mapped {
    size_t count = 0;
    uint64_t covered = 0;
};

class DiskImage {
public:
    virtual ~DiskImage() = default;

    // The guest-visible size in bytes (a multiple of 512).
    [[nodiscard]] virtual uint64_t size() const = 0;
    [[nodiscard]] virtual bool read_only() const = 0;
    // The file a guest flush fsyncs (after flush_metadata): the top image's.
    [[nodiscard]] virtual int top_fd() const = 0;
    // The alignment data I/O needs: the logical block size under O_DIRECT, else 512.
    [[nodiscard]] virtual uint32_t alignment() const = 0;
    // "raw" or "qcow2": what a child image records as its backing format.
    [[nodiscard]] virtual const char* format() const = 0;
    // One line for logs and errors: "qcow2 'child.qcow2' over raw 'base.img'".
    [[nodiscard]] virtual std::string describe() const = 0;

    // Maps [offset, offset + len) for reading. Extents of kind Zero and Compressed are
    // allowed.
    // Precondition (the caller checks): offset + len <= size(), both multiples of 512.
    [[nodiscard]] virtual Result<Mapped> map_read(uint64_t offset, uint64_t len, std::span<Extent> out) = 0;
    // Maps [offset, offset + len) for writing, allocating (and copying-on-write) what is
    // needed so every returned extent is Data in this image's own file. Fails on a
    // read-only image. Same preconditions as map_read.
    [[nodiscard]] virtual Result<Mapped> map_write(uint64_t offset, uint64_t len, std::span<Extent> out) = 0;

    // Makes metadata written so far durable-ready (writes cached tables out); the
    // caller then fsyncs top_fd(). Raw: nothing to do.
    [[nodiscard]] virtual Result<void> flush_metadata() = 0;

    // virtio-blk DISCARD and WRITE_ZEROES. Offered to the guest only when supported.
    [[nodiscard]] virtual bool supports_discard() const { return false; }
    [[nodiscard]] virtual bool supports_write_zeroes() const { return false; }
    [[nodiscard]] virtual Result<void> discard(uint64_t offset, uint64_t len);
    // After it, [offset, offset + len) reads as zeros. `may_unmap`: the guest allows
    // deallocating (punching holes) rather than writing zeros.
    [[nodiscard]] virtual Result<void> write_zeroes(uint64_t offset, uint64_t len, bool may_unmap);
};

inline Result<void> DiskImage::discard(uint64_t, uint64_t) { return fail("{}: discard is not supported", describe()); }
inline Result<void> DiskImage::write_zeroes(uint64_t, uint64_t, bool) {
    return fail("{}: write-zeroes is not supported", describe());
}

} // namespace kiln::block
