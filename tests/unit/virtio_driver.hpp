// The driver's side of a split virtqueue, as unit tests write it into guest memory.
#pragma once

#include <cstdint>
#include <cstring>

#include "vmm/memory/guest_memory.hpp"

namespace kiln::test {

// Descriptor `i` of the table at `table`: {addr, len, flags, next}, little-endian.
inline void write_desc(const GuestMemory& mem, uint64_t table, uint16_t i, uint64_t addr, uint32_t len,
                       uint16_t flags, uint16_t next) {
    uint8_t d[16];
    std::memcpy(d, &addr, 8);
    std::memcpy(d + 8, &len, 4);
    std::memcpy(d + 12, &flags, 2);
    std::memcpy(d + 14, &next, 2);
    (void)mem.write(GuestAddress(table + 16 * uint64_t(i)), d);
}

} // namespace kiln::test
