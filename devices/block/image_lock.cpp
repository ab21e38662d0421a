#include "devices/block/image_lock.hpp"

#include <fcntl.h>

#include <cerrno>
#include <span>

namespace kiln::block {
namespace {

constexpr off_t kPermBase = 100, kSharedBase = 200;
enum Perm : int { ConsistentRead = 0, Write = 1, WriteUnchanged = 2, Resize = 3 };

struct Held {
    std::span<const int> perms;    // bytes 100+i locked
    std::span<const int> unshared; // bytes 200+i locked
};

Held held_for(LockMode mode) {
    static constexpr int kWriterPerms[] = {ConsistentRead, Write, WriteUnchanged};
    static constexpr int kReaderPerms[] = {ConsistentRead};
    static constexpr int kUnshared[] = {Write, Resize}; // both: nobody else writes or resizes
    if (mode == LockMode::Write) return {kWriterPerms, kUnshared};
    return {kReaderPerms, kUnshared};
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

const char* perm_name(int p) {
    switch (p) {
    case ConsistentRead: return "consistent read";
    case Write: return "write";
    case WriteUnchanged: return "write unchanged";
    default: return "resize";
    }
}

} // namespace

Result<void> lock_image(int fd, LockMode mode, const std::string& name) {
    const Held h = held_for(mode);
    // Apply, then check (QEMU's order): two processes racing both see each other.
    for (int p : h.perms)
        if (int e = ofd(fd, F_OFD_SETLK, F_RDLCK, kPermBase + p); e != 0) {
            if (e < 0) return {}; // no OFD locks on this file system
            return fail_errno(fmt::format("disk '{}': locking byte {}", name, kPermBase + p), e);
        }
    for (int p : h.unshared)
        if (int e = ofd(fd, F_OFD_SETLK, F_RDLCK, kSharedBase + p); e > 0)
            return fail_errno(fmt::format("disk '{}': locking byte {}", name, kSharedBase + p), e);
    const char* what = mode == LockMode::Write ? "writing" : "reading";
    // Someone refuses to share a permission we hold?
    for (int p : h.perms) {
        short t = F_UNLCK;
        if (ofd(fd, F_OFD_GETLK, F_WRLCK, kSharedBase + p, &t) == 0 && t != F_UNLCK)
            return fail("disk '{}' is locked by another process that does not share \"{}\" access (a VM is using "
                        "it): refusing to open it for {}",
                        name, perm_name(p), what);
    }
    // Someone holds a permission we refuse to share?
    for (int p : h.unshared) {
        short t = F_UNLCK;
        if (ofd(fd, F_OFD_GETLK, F_WRLCK, kPermBase + p, &t) == 0 && t != F_UNLCK)
            return fail("disk '{}' is locked by another process that has \"{}\" access (a VM is using it): "
                        "refusing to open it for {}",
                        name, perm_name(p), what);
    }
    return {};
}

} // namespace kiln::block
