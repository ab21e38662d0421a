// Bounds-checked little-endian reads from a kernel file.
//
// Every offset and size in a kernel image comes from an untrusted file, so nothing in
// firmware/ indexes a file span directly: it asks these helpers, which return nullopt
// instead of reading past the end (and never overflow while checking).
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <type_traits>

namespace kiln::firmware {

// True if [offset, offset+len) lies inside a buffer of `size` bytes.
[[nodiscard]] constexpr bool range_in(uint64_t offset, uint64_t len, uint64_t size) {
    return offset <= size && len <= size - offset;
}

// The bytes [offset, offset+len) of `data`, or nullopt if they are not all there.
[[nodiscard]] inline std::optional<std::span<const uint8_t>> sub_span(std::span<const uint8_t> data,
                                                                      uint64_t offset, uint64_t len) {
    if (!range_in(offset, len, data.size())) return std::nullopt;
    return data.subspan(static_cast<size_t>(offset), static_cast<size_t>(len));
}

// An unsigned little-endian integer (x86 is little-endian, so a memcpy is the decode).
template <class T>
[[nodiscard]] std::optional<T> read_le(std::span<const uint8_t> data, uint64_t offset) {
    static_assert(std::is_unsigned_v<T>);
    if (!range_in(offset, sizeof(T), data.size())) return std::nullopt;
    T v;
    std::memcpy(&v, data.data() + offset, sizeof(T));
    return v;
}

// A trivially copyable (packed) struct at `offset`.
template <class T>
[[nodiscard]] std::optional<T> read_struct(std::span<const uint8_t> data, uint64_t offset) {
    static_assert(std::is_trivially_copyable_v<T>);
    if (!range_in(offset, sizeof(T), data.size())) return std::nullopt;
    T v;
    std::memcpy(&v, data.data() + offset, sizeof(T));
    return v;
}

// Rounding for addresses; `align` is a power of two. align_up saturates instead of
// wrapping so a huge value from a file cannot come back small.
[[nodiscard]] constexpr uint64_t align_down(uint64_t v, uint64_t align) { return v & ~(align - 1); }
[[nodiscard]] constexpr uint64_t align_up(uint64_t v, uint64_t align) {
    uint64_t r;
    if (__builtin_add_overflow(v, align - 1, &r)) return align_down(UINT64_MAX, align);
    return r & ~(align - 1);
}

// Sizes for messages: whole MiB, rounded up so a 1-byte overflow never reads as "0 MiB".
[[nodiscard]] constexpr uint64_t mib_ceil(uint64_t bytes) {
    return (bytes >> 20) + ((bytes & 0xfffff) != 0 ? uint64_t{1} : uint64_t{0});
}

} // namespace kiln::firmware
