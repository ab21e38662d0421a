// An owned, zero-filled buffer aligned for O_DIRECT I/O (to the logical block size, or
// a page). Empty (false) if the allocation failed.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <utility>

namespace kiln::block {

class AlignedBuffer {
public:
    AlignedBuffer() = default;
    AlignedBuffer(size_t size, size_t align)
        : p_(static_cast<uint8_t*>(std::aligned_alloc(align, (std::max<size_t>(size, 1) + align - 1) / align * align))),
          size_(p_ ? size : 0) { // a failed allocation is an empty buffer
        if (p_) std::memset(p_, 0, size_);
    }
    ~AlignedBuffer() { std::free(p_); }
    AlignedBuffer(AlignedBuffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), size_(std::exchange(o.size_, 0)) {}
    AlignedBuffer& operator=(AlignedBuffer&& o) noexcept {
        std::swap(p_, o.p_);
        std::swap(size_, o.size_);
        return *this;
    }
    [[nodiscard]] uint8_t* data() const { return p_; }
    [[nodiscard]] size_t size() const { return size_; }
    [[nodiscard]] explicit operator bool() const { return p_ != nullptr; }

private:
    uint8_t* p_ = nullptr;
    size_t size_ = 0;
};

} // namespace kiln::block
