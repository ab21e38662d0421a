// How guest RAM is backed on the host (issue 5, item 2): `--memory SIZE[,hugepages=on]
// [,hugetlbfs=DIR][,thp=on|off][,merge=on|off]`.
//
//   hugepages=on   2 MiB hugetlb pages (MAP_HUGETLB), or from a hugetlbfs mount with
//                  hugetlbfs=DIR. Reserved by the host administrator in advance
//                  (vm.nr_hugepages); never swapped, never merged, one TLB entry per
//                  2 MiB. Checked before mapping: too few free pages is one line naming
//                  the sysctl to run, not a SIGBUS in the middle of the run.
//   thp=on|off     transparent huge pages (MADV_HUGEPAGE). On by default, as QEMU does:
//                  besides shorter page walks, a guest buffer is then physically
//                  contiguous in 2 MiB pieces, which O_DIRECT disk I/O needs.
//   merge=on       MADV_MERGEABLE: KSM may merge identical pages of this and other VMs.
//                  THP then defaults to off: KSM merges only small pages and would split
//                  every huge page first, so huge pages would be wasted work.
//                  merge with hugepages is refused: KSM does not merge hugetlb pages.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "vmm/base/result.hpp"

namespace kiln {

struct MemoryBacking {
    bool hugepages = false;
    std::string hugetlbfs;   // a hugetlbfs mount to take the pages from; empty: MAP_HUGETLB
    std::optional<bool> thp; // unset: on, unless merge or hugepages
    bool merge = false;

    [[nodiscard]] bool use_thp() const { return thp.value_or(!merge && !hugepages); }
    [[nodiscard]] Result<void> validate() const;
    // "hugetlb 2M pages", "hugetlbfs /dev/hugepages", "THP", "4K pages, KSM merge", ...
    [[nodiscard]] std::string describe() const;
    bool operator==(const MemoryBacking&) const = default;
};

struct MemorySpec {
    uint64_t bytes = 0;
    MemoryBacking backing;
};

// "512M", "2G,hugepages=on", "1G,merge=on,thp=off", "1G,hugetlbfs=/dev/hugepages".
[[nodiscard]] Result<MemorySpec> parse_memory_spec(std::string_view text);

// The host's 2 MiB huge page pool, globally or on one NUMA node.
struct HugePagePool {
    uint64_t total = 0; // reserved (nr_hugepages)
    uint64_t free = 0;
};
inline constexpr uint64_t kHugePageSize = uint64_t(2) << 20;

// Reads the pool from sysfs (`sysfs_root` for tests); node = nullopt for the whole host.
[[nodiscard]] Result<HugePagePool> read_huge_page_pool(std::optional<uint32_t> node,
                                                       std::string_view sysfs_root = "/sys");

// Fails, naming the command that reserves enough pages, when `pool` cannot hold `bytes`.
[[nodiscard]] Result<void> check_huge_page_pool(uint64_t bytes, const HugePagePool& pool,
                                                std::optional<uint32_t> node);

} // namespace kiln
