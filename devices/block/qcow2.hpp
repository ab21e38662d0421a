// qcow2 version 3 (and version 2 for reading), as QEMU writes it: docs/interop/qcow2.txt
// in QEMU's tree.
//
// What is supported: reading and writing data clusters, backing files (any DiskImage:
// raw or qcow2, any depth), copy-on-write of a partial cluster from the backing image,
// zero clusters (read as zeros), compressed clusters (zlib or zstd; read, and rewritten
// uncompressed when written: what `qemu-img convert -c` and distro cloud images hold),
// refcount tables that grow, refcount_order 4 (16-bit, QEMU's default) and the other
// widths for reading, the backing-format and feature-name header extensions, the dirty
// and corrupt bits. What is refused with a clear error: encryption, extended L2 entries,
// external data files, unknown incompatible feature bits, unknown compression types;
// internal snapshots are kept untouched (reads and writes use the active L1 table only).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "devices/block/disk_image.hpp"
#include "vmm/base/fd.hpp"

namespace kiln::block::qcow2 {

inline constexpr uint32_t kDefaultClusterBits = 16; // 64 KiB, QEMU's default

// True when the first bytes of a file are qcow2's magic ("QFI\xfb").
[[nodiscard]] bool has_magic(std::span<const uint8_t> first_bytes);

// The header fields a caller needs before opening: to open the backing file and to
// check the image before touching it.
struct HeaderInfo {
    uint32_t version = 0;
    uint64_t size = 0;            // virtual size in bytes
    uint32_t cluster_bits = 0;
    std::string backing_file;     // as written in the header; empty: none
    std::string backing_format;   // from the backing-format extension; empty: not given
    bool dirty = false;           // incompatible bit 0: refcounts may be stale
};
// Reads and validates the header (magic, version 2 or 3, cluster_bits 9..21, sizes and
// offsets inside sane bounds, no encryption, no unknown incompatible features, no
// corrupt bit): every rejection is one clear sentence naming the field.
[[nodiscard]] Result<HeaderInfo> read_header(int fd);

struct CreateOptions {
    uint64_t size = 0;              // virtual size in bytes, a multiple of 512
    std::string backing_file;       // written into the header as given; empty: none
    std::string backing_format;     // "raw" or "qcow2": a backing-format extension; empty: none
    uint32_t cluster_bits = kDefaultClusterBits;
};
// Writes a new, empty qcow2 v3 image into `fd` (an empty file opened O_RDWR): header
// (refcount_order 4), header extensions, refcount table and block, L1 table. Its cost
// does not grow with the virtual size beyond the L1 table (8 bytes per 512 MiB with
// 64 KiB clusters: 16 KiB for 1 TiB). `qemu-img check` finds it clean.
[[nodiscard]] Result<void> create(int fd, const CreateOptions& options);

struct OpenOptions {
    bool read_only = true;
    uint32_t alignment = 512;      // O_DIRECT: metadata buffers and I/O aligned to this
    // For a throw-away image nobody will ever open again (snapshot=on overlays): new
    // metadata (L2 tables, L1 entries, refcounts) lives in memory only and is never
    // written, so an allocating write costs what an in-place one does. The file is not
    // a valid qcow2 image afterwards.
    bool volatile_metadata = false;
};
// Opens the image on `fd` (its owner from now on). `backing` is the already-opened
// backing image when the header names one (the caller resolves the name and format and
// opens it read-only), else null; it may be smaller or larger than this image: bytes
// beyond its end read as zeros. A writable image whose header has the dirty bit is
// refused (run `qemu-img check -r all`); opening for writing sets nothing on disk that
// QEMU would not understand.
[[nodiscard]] Result<std::unique_ptr<DiskImage>> open(Fd fd, std::string name, std::unique_ptr<DiskImage> backing,
                                                      const OpenOptions& options);

} // namespace kiln::block::qcow2
