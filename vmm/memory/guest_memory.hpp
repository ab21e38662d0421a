// GuestMemory: the guest's RAM as host mappings, with bounds-checked accessors.
//
// Every access by guest-physical address goes through slice(), which refuses ranges
// that overflow or straddle a region boundary, so guest-controlled addresses can never
// reach host memory outside the mappings.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <type_traits>
#include <vector>

#include "vmm/base/mmap_region.hpp"
#include "vmm/base/result.hpp"
#include "vmm/memory/guest_address.hpp"
#include "vmm/memory/memory_backing.hpp"

namespace kiln {

// One entry of the machine's physical memory map (what e820 and PVH memmap describe).
struct MemoryRange {
    enum class Kind : uint8_t { Ram, Reserved };
    uint64_t start = 0;
    uint64_t size = 0;
    Kind kind = Kind::Ram;
    [[nodiscard]] uint64_t end() const { return start + size; }
    bool operator==(const MemoryRange&) const = default;
};

// The plan for a guest of `ram_bytes` usable RAM: which guest-physical ranges are
// backed (memslots) and how they appear in the memory map. Pure arithmetic, so it is
// unit-tested without mapping anything.
struct MemoryPlan {
    std::vector<MemoryRange> backed;   // what gets a host mapping and a memslot
    std::vector<MemoryRange> map;      // e820 view: RAM and reserved ranges, sorted
    [[nodiscard]] static Result<MemoryPlan> for_ram_size(uint64_t ram_bytes);
    [[nodiscard]] uint64_t usable_bytes() const;
};

class GuestMemory {
public:
    struct Region {
        GuestAddress base;
        uint64_t size = 0;
        MmapRegion mapping;
        [[nodiscard]] uint64_t end() const { return base.value + size; }
    };

    // Maps every backed range of the plan as `backing` says (memory_backing.hpp). With
    // hugetlb pages each mapping is rounded up to whole 2 MiB pages, and the pool they
    // come from (NUMA node `numa_node`'s, or the host's) is checked first; the memory
    // map the guest gets is the plan's either way. With `numa_node` every mapping is
    // bound there (mbind) before anything touches it.
    [[nodiscard]] static Result<GuestMemory> create(const MemoryPlan& plan, const MemoryBacking& backing = {},
                                                    std::optional<uint32_t> numa_node = std::nullopt);

    GuestMemory() = default;
    GuestMemory(GuestMemory&&) noexcept = default;
    GuestMemory& operator=(GuestMemory&&) noexcept = default;

    // A host view of [addr, addr+len). Fails if any byte is outside one region.
    [[nodiscard]] Result<std::span<uint8_t>> slice(GuestAddress addr, uint64_t len) const;
    [[nodiscard]] bool contains(GuestAddress addr, uint64_t len) const;

    [[nodiscard]] Result<void> write(GuestAddress addr, std::span<const uint8_t> data) const;
    [[nodiscard]] Result<void> read(GuestAddress addr, std::span<uint8_t> out) const;
    [[nodiscard]] Result<void> fill(GuestAddress addr, uint8_t byte, uint64_t len) const;
    // Makes [addr, addr+len) read as zero. Whole pages of private anonymous memory are
    // dropped (MADV_DONTNEED) rather than written, so zeroing a kernel's .bss costs no
    // resident memory: a fresh guest's untouched pages stay untouched.
    [[nodiscard]] Result<void> zero(GuestAddress addr, uint64_t len) const;

    template <class T>
    [[nodiscard]] Result<void> write_obj(GuestAddress addr, const T& obj) const {
        static_assert(std::is_trivially_copyable_v<T>);
        return write(addr, {reinterpret_cast<const uint8_t*>(&obj), sizeof(T)});
    }
    template <class T>
    [[nodiscard]] Result<T> read_obj(GuestAddress addr) const {
        static_assert(std::is_trivially_copyable_v<T>);
        T obj;
        auto r = read(addr, {reinterpret_cast<uint8_t*>(&obj), sizeof(T)});
        if (!r) return std::unexpected(r.error());
        return obj;
    }

    [[nodiscard]] const std::vector<Region>& regions() const { return regions_; }
    [[nodiscard]] const std::vector<MemoryRange>& memory_map() const { return map_; }
    [[nodiscard]] uint64_t ram_bytes() const; // usable RAM, what the user asked for
    [[nodiscard]] const MemoryBacking& backing() const { return backing_; }

private:
    std::vector<Region> regions_;
    std::vector<MemoryRange> map_;
    MemoryBacking backing_;
    bool droppable_pages_ = false; // private anonymous 4 KiB pages: MADV_DONTNEED zeroes them
};

} // namespace kiln
