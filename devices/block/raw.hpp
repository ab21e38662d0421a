// A raw image: guest byte N is file byte N.
#pragma once

#include <memory>
#include <string>

#include "devices/block/disk_image.hpp"
#include "vmm/base/fd.hpp"

namespace kiln::block {

// `fd` is already open (O_RDONLY or O_RDWR, O_DIRECT or not); `name` is for messages.
// The guest-visible size is the file's size rounded down to 512 bytes (an empty or
// sub-sector file is an error). Discard punches holes, write-zeroes uses
// FALLOC_FL_ZERO_RANGE (or PUNCH_HOLE when the guest allows unmapping), each offered
// only when the file system supports it.
[[nodiscard]] Result<std::unique_ptr<DiskImage>> open_raw(Fd fd, std::string name, bool read_only,
                                                           uint32_t alignment);

} // namespace kiln::block
