// QEMU-compatible image locks (block/file-posix.c: raw_apply_lock_bytes and
// raw_check_lock_bytes), so Kiln and QEMU keep each other from writing an image the
// other uses.
//
// QEMU takes shared OFD locks on single bytes: byte 100+i for each permission i it
// holds, byte 200+i for each permission it does not share with others. Permission bits:
// 0 consistent read, 1 write, 2 write-unchanged, 3 resize. A process may take a
// permission only if nobody has locked its "not shared" byte, and may refuse to share
// one only if nobody holds it. OFD locks belong to the open file description: they go
// away when the last fd for it closes, also when the process is killed.
#pragma once

#include "vmm/base/result.hpp"

namespace kiln::block {

enum class LockMode : uint8_t {
    // A VM's read-only disk or a backing file: holds consistent-read, does not share
    // write or resize. Any number of readers coexist; a writer is refused, as in QEMU.
    Read,
    // A VM's writable disk: holds read, write and write-unchanged, does not share write
    // or resize. A second writer, or a reader, is refused.
    Write,
};

// Locks `fd` (its open file description) for `mode`; `name` is for the message. Fails
// with "... is locked by another process ..." on a conflict. Files that do not support
// OFD locks (some network file systems) are used without a lock, as QEMU does.
[[nodiscard]] Result<void> lock_image(int fd, LockMode mode, const std::string& name);

} // namespace kiln::block
