// MmapRegion: a move-only owner of one mmap(2) mapping.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

#include <sys/mman.h>

#include "vmm/base/result.hpp"

namespace kiln {

class MmapRegion {
public:
    MmapRegion() = default;
    ~MmapRegion() { reset(); }
    MmapRegion(const MmapRegion&) = delete;
    MmapRegion& operator=(const MmapRegion&) = delete;
    MmapRegion(MmapRegion&& o) noexcept
        : addr_(std::exchange(o.addr_, nullptr)), size_(std::exchange(o.size_, 0)) {}
    MmapRegion& operator=(MmapRegion&& o) noexcept {
        if (this != &o) {
            reset();
            addr_ = std::exchange(o.addr_, nullptr);
            size_ = std::exchange(o.size_, 0);
        }
        return *this;
    }

    // Anonymous private memory, zero-filled and populated lazily by the kernel, so an
    // untouched 4 GiB guest costs no resident memory. Not MAP_NORESERVE: the kernel's
    // overcommit check then refuses a size the host cannot possibly give.
    [[nodiscard]] static Result<MmapRegion> anonymous(size_t size, int extra_flags = 0) {
        void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | extra_flags, -1, 0);
        if (p == MAP_FAILED) return fail_errno(fmt::format("mapping {} bytes", size));
        return MmapRegion(p, size);
    }

    // The same, starting at a multiple of `align` (a power of two): over-maps by
    // `align` and trims both ends. Guest RAM needs it: KVM maps a guest 2 MiB page with
    // one host huge page only when guest-physical and host-virtual addresses agree
    // modulo 2 MiB, and the kernel aligns anonymous mappings only when it feels like it.
    [[nodiscard]] static Result<MmapRegion> anonymous_aligned(size_t size, size_t align, int extra_flags = 0) {
        auto wide = anonymous(size + align, extra_flags);
        if (!wide) return wide;
        auto* raw = wide->data();
        auto* start = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(raw) + align - 1) & ~(align - 1));
        const size_t head = static_cast<size_t>(start - raw);
        const size_t tail = align - head;
        wide->addr_ = nullptr; // ownership moves to the trimmed region below
        wide->size_ = 0;
        if (head) ::munmap(raw, head);
        if (tail) ::munmap(start + size, tail);
        return MmapRegion(start, size);
    }

    // A shared mapping of a file or device fd (e.g. the vCPU's kvm_run area).
    [[nodiscard]] static Result<MmapRegion> shared(int fd, size_t size, off_t offset = 0) {
        void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, offset);
        if (p == MAP_FAILED) return fail_errno(fmt::format("mapping {} bytes of fd", size));
        return MmapRegion(p, size);
    }

    [[nodiscard]] uint8_t* data() const noexcept { return static_cast<uint8_t*>(addr_); }
    [[nodiscard]] size_t size() const noexcept { return size_; }
    [[nodiscard]] bool valid() const noexcept { return addr_ != nullptr; }

    void reset() noexcept {
        if (addr_) ::munmap(addr_, size_);
        addr_ = nullptr;
        size_ = 0;
    }

private:
    MmapRegion(void* a, size_t s) : addr_(a), size_(s) {}
    void* addr_ = nullptr;
    size_t size_ = 0;
};

} // namespace kiln
