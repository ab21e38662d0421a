// A disk as the user describes it (`--disk ...`) and as the VM gets it: parsing the
// spec, opening the image with its backing chain, the copy-on-write modes (snapshot=on,
// scratch) and the locks that keep two VMs from writing one image.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "devices/block/disk_image.hpp"

namespace kiln::block {

enum class Format : uint8_t { Auto, Raw, Qcow2 };
enum class Cache : uint8_t { Writeback, None }; // None: O_DIRECT

// `--disk path=FILE[,format=raw|qcow2][,readonly=on|off][,snapshot=on|off]
//         [,cache=none|writeback][,queues=N][,serial=ID]`  or  `--disk scratch=SIZE[,...]`
struct DiskSpec {
    std::string path;               // empty for scratch
    uint64_t scratch_size = 0;      // > 0: a scratch disk of this size, no path
    Format format = Format::Auto;   // Auto: probed from the file's first bytes
    bool read_only = false;
    bool snapshot = false;
    Cache cache = Cache::Writeback;
    uint16_t queues = 1;            // 1..16
    std::string serial;             // at most 20 bytes (VIRTIO_BLK_ID_BYTES)
};

// Every error names the offending key or value: "disk spec 'path=a,cache=maybe': cache
// must be none or writeback".
[[nodiscard]] Result<DiskSpec> parse_disk_spec(std::string_view text);

// Opens what the spec describes, ready for a virtio-blk device:
//  - the image, its format probed or checked, its backing chain opened read-only
//    (backing names relative to the image's directory, formats from the header's
//    backing-format extension or probed);
//  - snapshot=on: the image opened read-only, a qcow2 overlay in an unlinked
//    O_TMPFILE file ($TMPDIR, else /var/tmp) on top: gone when the process ends,
//    however it ends;
//  - scratch=SIZE: a sparse raw file, unlinked at creation, of that size;
//  - locks as QEMU takes them (OFD locks on the permission bytes), so Kiln and QEMU
//    refuse to write an image another process writes, while any number may read one.
// Nothing is written to any file before every check has passed.
[[nodiscard]] Result<std::unique_ptr<DiskImage>> open_disk(const DiskSpec& spec);

// `kiln disk create [--backing BASE [--backing-format raw|qcow2]] [--size SIZE] CHILD`:
// a qcow2 v3 image; with a backing file its size defaults to the backing's. The child
// must not exist yet. The backing path is written as given (relative to the child's
// directory, as QEMU resolves it).
struct CreateSpec {
    std::string path;
    std::string backing;
    Format backing_format = Format::Auto;
    std::optional<uint64_t> size;
    uint32_t cluster_bits = 16;
};
[[nodiscard]] Result<void> create_image(const CreateSpec& spec);

} // namespace kiln::block
