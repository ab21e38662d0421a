// RawImage: guest byte N is file byte N, so mapping is one extent and the kernel does
// the rest.
#include "devices/block/raw.hpp"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include <cerrno>

namespace kiln::block {
namespace {

// File systems whose fallocate() punches holes and zeroes ranges (ext4, xfs, btrfs,
// tmpfs). Probed by f_type rather than by trying, so opening never modifies a file.
bool fallocate_capable(int fd) {
    struct statfs fs{};
    if (::fstatfs(fd, &fs) != 0) return false;
    switch (static_cast<unsigned long>(fs.f_type)) {
    case EXT4_SUPER_MAGIC:  // also ext2/ext3: same magic
    case XFS_SUPER_MAGIC:
    case BTRFS_SUPER_MAGIC:
    case TMPFS_MAGIC: return true;
    default: return false;
    }
}

class RawImage final : public DiskImage {
public:
    RawImage(Fd fd, std::string name, uint64_t size, bool read_only, bool block_device, uint32_t alignment)
        : fd_(std::move(fd)), name_(std::move(name)), size_(size), read_only_(read_only), alignment_(alignment),
          block_device_(block_device), can_fallocate_(!read_only && !block_device && fallocate_capable(fd_.get())) {}

    uint64_t size() const override { return size_; }
    bool read_only() const override { return read_only_; }
    int top_fd() const override { return fd_.get(); }
    uint32_t alignment() const override { return alignment_; }
    const char* format() const override { return "raw"; }
    std::string describe() const override { return fmt::format("raw '{}'", name_); }

    Result<Mapped> map_read(uint64_t offset, uint64_t len, std::span<Extent> out) override {
        if (out.empty()) return fail("{}: no room for an extent", describe());
        out[0] = Extent{Extent::Kind::Data, fd_.get(), offset, len};
        return Mapped{1, len};
    }
    Result<Mapped> map_write(uint64_t offset, uint64_t len, std::span<Extent> out) override {
        if (read_only_) return fail("{} is read-only", describe());
        return map_read(offset, len, out);
    }
    Result<void> flush_metadata() override { return {}; }

    bool supports_discard() const override { return can_fallocate_ || (block_device_ && !read_only_); }
    bool supports_write_zeroes() const override { return can_fallocate_ || (block_device_ && !read_only_); }

    Result<void> discard(uint64_t offset, uint64_t len) override {
        if (read_only_) return fail("{} is read-only", describe());
        if (block_device_) return blkdev_range(BLKDISCARD, offset, len);
        return falloc(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, len);
    }
    Result<void> write_zeroes(uint64_t offset, uint64_t len, bool may_unmap) override {
        if (read_only_) return fail("{} is read-only", describe());
        if (block_device_) return blkdev_range(BLKZEROOUT, offset, len);
        // Punching a hole reads back as zeros too, and frees the space when allowed.
        if (may_unmap) return falloc(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, len);
        return falloc(FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, offset, len);
    }

private:
    Result<void> falloc(int mode, uint64_t offset, uint64_t len) {
        if (::fallocate(fd_.get(), mode, static_cast<off_t>(offset), static_cast<off_t>(len)) != 0)
            return fail_errno(fmt::format("{}: fallocate at {:#x}+{:#x}", describe(), offset, len));
        return {};
    }
    Result<void> blkdev_range(unsigned long req, uint64_t offset, uint64_t len) {
        uint64_t range[2] = {offset, len};
        if (::ioctl(fd_.get(), req, range) != 0)
            return fail_errno(fmt::format("{}: {} at {:#x}+{:#x}", describe(),
                                          req == BLKDISCARD ? "BLKDISCARD" : "BLKZEROOUT", offset, len));
        return {};
    }

    Fd fd_;
    std::string name_;
    uint64_t size_;
    bool read_only_;
    uint32_t alignment_;
    bool block_device_;
    bool can_fallocate_;
};

} // namespace

Result<std::unique_ptr<DiskImage>> open_raw(Fd fd, std::string name, bool read_only, uint32_t alignment) {
    struct stat st{};
    if (::fstat(fd.get(), &st) != 0) return fail_errno(fmt::format("disk '{}': stat", name));
    uint64_t bytes = 0;
    const bool blk = S_ISBLK(st.st_mode);
    if (blk) {
        if (::ioctl(fd.get(), BLKGETSIZE64, &bytes) != 0)
            return fail_errno(fmt::format("disk '{}': BLKGETSIZE64", name));
    } else if (S_ISREG(st.st_mode)) {
        bytes = static_cast<uint64_t>(st.st_size);
    } else {
        return fail("disk '{}' is neither a regular file nor a block device", name);
    }
    if (bytes == 0) return fail("disk '{}': the file is empty", name);
    if (bytes < 512) return fail("disk '{}' is {} bytes, smaller than one 512-byte sector", name, bytes);
    // A trailing partial sector is invisible to the guest (QEMU rounds the same way).
    return std::unique_ptr<DiskImage>(
        new RawImage(std::move(fd), std::move(name), bytes & ~uint64_t{511}, read_only, blk, alignment));
}

} // namespace kiln::block
