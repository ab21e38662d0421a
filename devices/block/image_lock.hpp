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
//
// Kiln takes the bytes a QEMU 7.2 VM takes for the same disk (measured in /proc/locks
// with a virtio-blk drive, and checked by tests/unit/test_disk.cpp):
//   raw disk        read-only {100} + {201}       writable {100 101} + {201}
//   qcow2 disk      read-only {100} + {201 203}   writable {100 101 103} + {201 203}
//   backing file    {100} + {201 203}             (snapshot=on's base is one too)
// So one writer per image, any number of readers alongside each other, no writer
// beside a reader, and a raw image stays resizable by others, as under QEMU.
#pragma once

#include <cstdint>
#include <string>

#include "vmm/base/result.hpp"

namespace kiln::block {

// What a file is to this VM; QEMU derives its permissions from the same facts.
enum class LockRole : uint8_t {
    RawDisk,    // the guest's disk is the file's bytes (a raw top image)
    Qcow2Disk,  // a qcow2 top image: its metadata is ours to update (and grow the file)
    Backing,    // read for copy-on-write under another image: it must not change
};

// Locks `fd` (its open file description) for `role`; `writable` only for a top image.
// `name` is for the message. Fails with "... is locked by another process ..." on a
// conflict. Files that do not support OFD locks (some network file systems) are used
// without a lock, as QEMU does.
[[nodiscard]] Result<void> lock_image(int fd, LockRole role, bool writable, const std::string& name);

} // namespace kiln::block
