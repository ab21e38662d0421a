#include "vmm/memory/guest_memory.hpp"

#include <fcntl.h>
#include <linux/magic.h>
#include <linux/mman.h>
#include <sys/mman.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>

#include "vmm/base/fd.hpp"
#include "vmm/host/numa.hpp"
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

constexpr uint64_t kSmallPageLimit = 2 * layout::MiB; // see map_range

// A file of `size` bytes in the hugetlbfs mount `dir`, unlinked at once so nothing is
// left behind however Kiln ends. (O_TMPFILE is not offered by every hugetlbfs.)
Result<Fd> hugetlbfs_file(const std::string& dir, uint64_t size) {
    std::string path = dir + "/kiln-guest-XXXXXX";
    int raw = ::mkostemp(path.data(), O_CLOEXEC);
    if (raw < 0) return fail_errno(fmt::format("hugetlbfs={}: creating a file there", dir));
    Fd fd(raw);
    ::unlink(path.c_str());
    struct statfs sfs{};
    if (::fstatfs(fd.get(), &sfs) != 0 || sfs.f_type != HUGETLBFS_MAGIC)
        return fail("hugetlbfs={} is not a hugetlbfs mount (mount -t hugetlbfs none {})", dir, dir);
    if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0)
        return fail_errno(fmt::format("hugetlbfs={}: sizing the guest memory file to {} MiB", dir, size >> 20));
    return fd;
}

// One backed range as `backing` asks. The caller has checked the huge page pool.
Result<MmapRegion> map_range(const MemoryRange& b, uint64_t size, const MemoryBacking& backing) {
    const auto what = [&] { return fmt::format("allocating {} MiB of guest memory at {:#x}", size >> 20, b.start); };
    Result<MmapRegion> mapping = [&]() -> Result<MmapRegion> {
        if (!backing.hugepages) return MmapRegion::anonymous_aligned(size, kHugePageSize);
        if (backing.hugetlbfs.empty()) return MmapRegion::anonymous(size, MAP_HUGETLB | MAP_HUGE_2MB);
        // Shared: private mappings of a hugetlbfs file reserve pages twice over.
        auto fd = KILN_TRY(hugetlbfs_file(backing.hugetlbfs, size));
        return MmapRegion::shared(fd.get(), size);
    }();
    if (!mapping) {
        if (backing.hugepages && mapping.error().sys_errno() == ENOMEM)
            return fail("{}: the host has too few free 2 MiB huge pages (see /proc/meminfo HugePages_Free; "
                        "reserve more with 'sysctl vm.nr_hugepages=N')", what());
        return std::unexpected(mapping.error().context(what()));
    }
    uint8_t* p = mapping->data();
    // Not inherited by fork(): a helper process (deferred_teardown.cpp) must not copy the
    // guest's page tables, nor share its pages copy-on-write.
    if (::madvise(p, size, MADV_DONTFORK) != 0)
        return fail_errno(fmt::format("madvise(MADV_DONTFORK) on guest memory at {:#x}", b.start));
    if (backing.use_thp()) {
        // THP (memory_backing.hpp says why it is the default). The first 2 MiB stay in
        // small pages: boot structures and a small guest's working set live there, and
        // one huge page would double the resident size of a VM that touches little.
        // Advice only: a host with THP "never" ignores it (kiln host check tells).
        const uint64_t skip = b.start < kSmallPageLimit ? std::min(size, kSmallPageLimit - b.start) : 0;
        if (size > skip) (void)::madvise(p + skip, size - skip, MADV_HUGEPAGE);
    } else if (!backing.hugepages) {
        // Explicitly off, so a host whose THP mode is "always" does not use them either.
        (void)::madvise(p, size, MADV_NOHUGEPAGE);
    }
    if (backing.merge && ::madvise(p, size, MADV_MERGEABLE) != 0)
        return fail_errno("merge=on: madvise(MADV_MERGEABLE) (is this kernel built with CONFIG_KSM?)");
    return mapping;
}

} // namespace

Result<GuestMemory> GuestMemory::create(const MemoryPlan& plan, const MemoryBacking& backing,
                                        std::optional<uint32_t> numa_node) {
    KILN_TRY(backing.validate());
    // hugetlb mappings come in whole huge pages; the guest's memory map stays the plan's.
    const auto mapped_size = [&](const MemoryRange& b) {
        return backing.hugepages ? (b.size + kHugePageSize - 1) / kHugePageSize * kHugePageSize : b.size;
    };
    if (backing.hugepages) {
        uint64_t total = 0;
        for (const auto& b : plan.backed) total += mapped_size(b);
        // Bound to a node, the pages come from that node's pool: too few there would be
        // a SIGBUS in the middle of the run, not a failed mmap.
        KILN_TRY(check_huge_page_pool(total, KILN_TRY(read_huge_page_pool(numa_node)), numa_node));
    }
    GuestMemory m;
    for (const auto& b : plan.backed) {
        const uint64_t size = mapped_size(b);
        auto mapping = KILN_TRY(map_range(b, size, backing));
        if (numa_node)
            KILN_TRY_CTX(host::bind_memory(mapping.data(), size, *numa_node), "binding guest memory to NUMA node {}",
                         *numa_node);
        m.regions_.push_back(Region{GuestAddress(b.start), size, std::move(mapping)});
    }
    m.map_ = plan.map;
    m.backing_ = backing;
    m.droppable_pages_ = !backing.hugepages;
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
