#include "vmm/memory/guest_memory.hpp"

#include <sys/mman.h>

#include <algorithm>

#include "vmm/memory/layout.hpp"

namespace kiln {

Result<MemoryPlan> MemoryPlan::for_ram_size(uint64_t ram_bytes) {
    using namespace layout;
    // The guest gets exactly ram_bytes of usable RAM. The legacy BIOS area between the
    // EBDA and 1 MiB is backed but reserved, so it is added on top of the request.
    constexpr uint64_t kLowReserved = kHighMemory - kLowRamEnd;
    constexpr uint64_t kMin = 4 * MiB;
    constexpr uint64_t kMax = uint64_t(1) << 46; // 64 TiB: beyond any host here
    if (ram_bytes < kMin)
        return fail("guest memory {} bytes is too small (the minimum is 4M)", ram_bytes);
    if (ram_bytes > kMax) return fail("guest memory {} bytes is too large", ram_bytes);
    if (ram_bytes % (4 * KiB) != 0)
        return fail("guest memory {} bytes is not a multiple of 4 KiB", ram_bytes);

    MemoryPlan p;
    uint64_t low_end = std::min(ram_bytes + kLowReserved, kMmioHoleStart);
    uint64_t high = ram_bytes + kLowReserved - low_end;
    p.backed.push_back({0, low_end, MemoryRange::Kind::Ram});
    p.map.push_back({0, kLowRamEnd, MemoryRange::Kind::Ram});
    p.map.push_back({kLowRamEnd, kLowReserved, MemoryRange::Kind::Reserved});
    p.map.push_back({kHighMemory, low_end - kHighMemory, MemoryRange::Kind::Ram});
    if (high > 0) {
        p.backed.push_back({kMmioHoleEnd, high, MemoryRange::Kind::Ram});
        p.map.push_back({kMmioHoleEnd, high, MemoryRange::Kind::Ram});
    }
    return p;
}

uint64_t MemoryPlan::usable_bytes() const {
    uint64_t n = 0;
    for (const auto& r : map)
        if (r.kind == MemoryRange::Kind::Ram) n += r.size;
    return n;
}

namespace {
constexpr uint64_t kSmallPageLimit = 2 * layout::MiB; // see GuestMemory::create
} // namespace

Result<GuestMemory> GuestMemory::create(const MemoryPlan& plan, int mmap_flags) {
    GuestMemory m;
    for (const auto& b : plan.backed) {
        auto mapping = MmapRegion::anonymous(b.size, mmap_flags);
        if (!mapping)
            return std::unexpected(mapping.error().context(
                fmt::format("allocating {} MiB of guest memory at {:#x}", b.size >> 20, b.start)));
        // Not inherited by fork(): a helper process (deferred_teardown.cpp) must not
        // copy the guest's page tables, nor share its pages copy-on-write.
        if (::madvise(mapping->data(), b.size, MADV_DONTFORK) != 0)
            return fail_errno(fmt::format("madvise(MADV_DONTFORK) on guest memory at {:#x}", b.start));
        // Transparent huge pages for guest RAM, as QEMU asks for them: a guest buffer is
        // then physically contiguous in 2 MiB pieces, so O_DIRECT I/O into it needs a
        // fraction of the segments (1 MiB sequential reads here: 1.1 -> 1.7 GB/s), and
        // EPT/NPT walks are shorter. The first 2 MiB stay in small pages: boot
        // structures and a small guest's working set live there, and one huge page
        // would double the resident size of a VM that touches little. Advice only: a
        // host with THP off or "never" simply ignores it.
        if ((mmap_flags & MAP_HUGETLB) == 0) {
            const uint64_t skip = b.start < kSmallPageLimit ? std::min(b.size, kSmallPageLimit - b.start) : 0;
            if (b.size > skip) (void)::madvise(mapping->data() + skip, b.size - skip, MADV_HUGEPAGE);
        }
        m.regions_.push_back(Region{GuestAddress(b.start), b.size, std::move(*mapping)});
    }
    m.map_ = plan.map;
    m.droppable_pages_ = (mmap_flags & MAP_HUGETLB) == 0;
    return m;
}

bool GuestMemory::contains(GuestAddress addr, uint64_t len) const {
    uint64_t end;
    if (__builtin_add_overflow(addr.value, len, &end)) return false;
    for (const auto& r : regions_)
        if (addr.value >= r.base.value && end <= r.end()) return true;
    return false;
}

Result<std::span<uint8_t>> GuestMemory::slice(GuestAddress addr, uint64_t len) const {
    uint64_t end;
    if (__builtin_add_overflow(addr.value, len, &end))
        return fail("guest range {:#x}+{:#x} overflows", addr.value, len);
    for (const auto& r : regions_) {
        if (addr.value >= r.base.value && end <= r.end())
            return std::span<uint8_t>(r.mapping.data() + (addr.value - r.base.value), len);
    }
    return fail("guest range [{:#x}, {:#x}) is not in guest RAM", addr.value, end);
}

Result<void> GuestMemory::write(GuestAddress addr, std::span<const uint8_t> data) const {
    auto s = KILN_TRY(slice(addr, data.size()));
    if (!data.empty()) std::memcpy(s.data(), data.data(), data.size());
    return {};
}

Result<void> GuestMemory::read(GuestAddress addr, std::span<uint8_t> out) const {
    auto s = KILN_TRY(slice(addr, out.size()));
    if (!out.empty()) std::memcpy(out.data(), s.data(), out.size());
    return {};
}

Result<void> GuestMemory::fill(GuestAddress addr, uint8_t byte, uint64_t len) const {
    auto s = KILN_TRY(slice(addr, len));
    std::memset(s.data(), byte, len);
    return {};
}

Result<void> GuestMemory::zero(GuestAddress addr, uint64_t len) const {
    auto s = KILN_TRY(slice(addr, len));
    if (len == 0) return {};
    constexpr uintptr_t kPage = 4096;
    auto* begin = s.data();
    auto* end = s.data() + len;
    auto* page_begin = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(begin) + kPage - 1) & ~(kPage - 1));
    auto* page_end = reinterpret_cast<uint8_t*>(reinterpret_cast<uintptr_t>(end) & ~(kPage - 1));
    if (!droppable_pages_ || page_begin >= page_end) {
        std::memset(begin, 0, len);
        return {};
    }
    std::memset(begin, 0, static_cast<size_t>(page_begin - begin));
    if (::madvise(page_begin, static_cast<size_t>(page_end - page_begin), MADV_DONTNEED) != 0)
        std::memset(page_begin, 0, static_cast<size_t>(page_end - page_begin)); // still correct, only costlier
    std::memset(page_end, 0, static_cast<size_t>(end - page_end));
    return {};
}

uint64_t GuestMemory::ram_bytes() const {
    uint64_t n = 0;
    for (const auto& r : map_)
        if (r.kind == MemoryRange::Kind::Ram) n += r.size;
    return n;
}

} // namespace kiln
