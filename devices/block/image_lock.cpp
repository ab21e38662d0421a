#include "devices/block/image_lock.hpp"

#include <fcntl.h>

#include <cerrno>

namespace kiln::block {
namespace {

constexpr off_t kPermBase = 100, kSharedBase = 200;
enum Perm : unsigned { ConsistentRead = 0, Write = 1, WriteUnchanged = 2, Resize = 3, kPerms = 4 };
constexpr unsigned bit(Perm p) { return 1u << p; }

struct Bytes {
    unsigned held = 0;     // bytes 100+i
    unsigned unshared = 0; // bytes 200+i
};

// QEMU's rules (block.c: bdrv_default_perms_for_storage / _for_cow, and
// blkconf_apply_backend_options for the virtio-blk device), for the cases Kiln has.
Bytes bytes_for(LockRole role, bool writable) {
    Bytes b{bit(ConsistentRead), bit(Write)}; // every user reads and lets nobody write
    if (writable && role != LockRole::Backing) b.held |= bit(Write);
    // A format driver's own file, and a backing file, must not change size under it.
    if (role != LockRole::RawDisk) b.unshared |= bit(Resize);
    // qcow2 grows its file as it allocates clusters.
    if (writable && role == LockRole::Qcow2Disk) b.held |= bit(Resize);
    return b;
}

// -1: the file system has no OFD locks; 0: done; else errno.
int ofd(int fd, int cmd, short type, off_t byte, short* found = nullptr) {
    struct flock fl{};
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = byte;
    fl.l_len = 1;
    if (::fcntl(fd, cmd, &fl) != 0) return errno == EINVAL || errno == ENOLCK || errno == ENOTSUP ? -1 : errno;
    if (found) *found = fl.l_type;
    return 0;
}

// Is another open file description holding `byte`? (Our own locks never conflict.)
bool taken_by_other(int fd, off_t byte) {
    short t = F_UNLCK;
    return ofd(fd, F_OFD_GETLK, F_WRLCK, byte, &t) == 0 && t != F_UNLCK;
}

const char* perm_name(unsigned p) {
    switch (p) {
    case ConsistentRead: return "consistent read";
    case Write: return "write";
    case WriteUnchanged: return "write unchanged";
    default: return "resize";
    }
}

} // namespace

Result<void> lock_image(int fd, LockRole role, bool writable, const std::string& name) {
    const Bytes b = bytes_for(role, writable);
    // Apply, then check (QEMU's order): two processes racing both see each other.
    for (unsigned p = 0; p < kPerms; ++p)
        if (b.held & (1u << p))
            if (int e = ofd(fd, F_OFD_SETLK, F_RDLCK, kPermBase + p); e != 0) {
                if (e < 0) return {}; // no OFD locks on this file system
                return fail_errno(fmt::format("disk '{}': locking byte {}", name, kPermBase + p), e);
            }
    for (unsigned p = 0; p < kPerms; ++p)
        if (b.unshared & (1u << p))
            if (int e = ofd(fd, F_OFD_SETLK, F_RDLCK, kSharedBase + p); e > 0)
                return fail_errno(fmt::format("disk '{}': locking byte {}", name, kSharedBase + p), e);
    const char* what = writable ? "writing" : "reading";
    for (unsigned p = 0; p < kPerms; ++p) {
        // Someone refuses to share a permission we hold?
        if ((b.held & (1u << p)) && taken_by_other(fd, kSharedBase + p))
            return fail("disk '{}' is locked by another process that does not share \"{}\" access (a VM is using "
                        "it): refusing to open it for {}",
                        name, perm_name(p), what);
        // Someone holds a permission we refuse to share?
        if ((b.unshared & (1u << p)) && taken_by_other(fd, kPermBase + p))
            return fail("disk '{}' is locked by another process that has \"{}\" access (a VM is using it): "
                        "refusing to open it for {}",
                        name, perm_name(p), what);
    }
    return {};
}

} // namespace kiln::block
