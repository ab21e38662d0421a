// GuestAddress: a guest-physical address as its own type, so it cannot be mixed up with
// host pointers, sizes or offsets by accident.
#pragma once

#include <compare>
#include <cstdint>

namespace kiln {

struct GuestAddress {
    uint64_t value = 0;

    constexpr GuestAddress() = default;
    constexpr explicit GuestAddress(uint64_t v) : value(v) {}
    constexpr auto operator<=>(const GuestAddress&) const = default;

    // Offsetting; callers that take a guest-controlled length use checked_add instead.
    [[nodiscard]] constexpr GuestAddress operator+(uint64_t off) const { return GuestAddress(value + off); }
    [[nodiscard]] constexpr bool checked_add(uint64_t off, GuestAddress& out) const {
        uint64_t r;
        if (__builtin_add_overflow(value, off, &r)) return false;
        out = GuestAddress(r);
        return true;
    }
};

} // namespace kiln
