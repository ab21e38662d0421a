#include "vmm/memory/memory_backing.hpp"

#include <charconv>

#include "vmm/base/size.hpp"
#include "vmm/host/host_files.hpp"

namespace kiln {

namespace {

Result<bool> parse_on_off(std::string_view key, std::string_view v) {
    if (v == "on") return true;
    if (v == "off") return false;
    return fail("--memory: {}='{}' is not on or off", key, v);
}

Result<uint64_t> read_count(const std::string& path) {
    if (auto n = host::read_u64(path)) return *n;
    return fail("cannot read '{}'", path);
}

} // namespace

Result<void> MemoryBacking::validate() const {
    if (merge && hugepages)
        return fail("--memory: merge=on and hugepages=on cannot be combined: KSM does not merge hugetlb pages");
    if (hugepages && thp.value_or(false))
        return fail("--memory: thp=on and hugepages=on cannot be combined: hugetlb pages are huge already");
    if (!hugetlbfs.empty() && !hugepages) return fail("--memory: hugetlbfs= needs hugepages=on");
    return {};
}

std::string MemoryBacking::describe() const {
    std::string s;
    if (hugepages) s = hugetlbfs.empty() ? "hugetlb 2M pages" : "hugetlbfs " + hugetlbfs;
    else s = use_thp() ? "THP" : "4K pages";
    if (merge) s += ", KSM merge";
    return s;
}

Result<MemorySpec> parse_memory_spec(std::string_view text) {
    MemorySpec spec;
    const auto comma = text.find(',');
    spec.bytes = KILN_TRY_CTX(parse_size(text.substr(0, comma)), "--memory");
    std::optional<bool> hugepages_word;
    std::string_view rest = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
    if (comma != std::string_view::npos && rest.empty()) return fail("--memory: empty option after ','");
    while (!rest.empty()) {
        const auto next = rest.find(',');
        const std::string_view item = rest.substr(0, next);
        rest = next == std::string_view::npos ? std::string_view{} : rest.substr(next + 1);
        if (next != std::string_view::npos && rest.empty()) return fail("--memory: empty option after ','");
        const auto eq = item.find('=');
        if (eq == std::string_view::npos) return fail("--memory: '{}' is not KEY=VALUE", item);
        const std::string_view key = item.substr(0, eq), value = item.substr(eq + 1);
        if (key == "hugepages") {
            if (hugepages_word) return fail("--memory: hugepages given twice");
            hugepages_word = KILN_TRY(parse_on_off(key, value));
        } else if (key == "hugetlbfs") {
            if (value.empty()) return fail("--memory: hugetlbfs= needs the directory of a hugetlbfs mount");
            if (!spec.backing.hugetlbfs.empty()) return fail("--memory: hugetlbfs given twice");
            spec.backing.hugetlbfs = std::string(value);
        } else if (key == "thp") {
            if (spec.backing.thp) return fail("--memory: thp given twice");
            spec.backing.thp = KILN_TRY(parse_on_off(key, value));
        } else if (key == "merge") {
            spec.backing.merge = KILN_TRY(parse_on_off(key, value));
        } else {
            return fail("--memory: unknown option '{}' (hugepages, hugetlbfs, thp, merge)", key);
        }
    }
    spec.backing.hugepages = hugepages_word.value_or(false);
    KILN_TRY(spec.backing.validate());
    return spec;
}

Result<HugePagePool> read_huge_page_pool(std::optional<uint32_t> node, std::string_view sysfs_root) {
    const std::string dir = node ? fmt::format("{}/devices/system/node/node{}/hugepages/hugepages-2048kB",
                                               sysfs_root, *node)
                                 : fmt::format("{}/kernel/mm/hugepages/hugepages-2048kB", sysfs_root);
    HugePagePool pool;
    pool.total = KILN_TRY_CTX(read_count(dir + "/nr_hugepages"), "2 MiB huge pages");
    pool.free = KILN_TRY_CTX(read_count(dir + "/free_hugepages"), "2 MiB huge pages");
    return pool;
}

Result<void> check_huge_page_pool(uint64_t bytes, const HugePagePool& pool, std::optional<uint32_t> node) {
    const uint64_t need = (bytes + kHugePageSize - 1) / kHugePageSize;
    if (pool.free >= need) return {};
    const uint64_t want = pool.total + (need - pool.free);
    const std::string where = node ? fmt::format(" on NUMA node {}", *node) : "";
    const std::string how =
        node ? fmt::format("echo {} > /sys/devices/system/node/node{}/hugepages/hugepages-2048kB/nr_hugepages", want,
                           *node)
             : fmt::format("sysctl vm.nr_hugepages={}", want);
    return fail("hugepages=on: {} MiB of guest memory needs {} huge pages of 2 MiB{}, {} of {} reserved are free: "
                "reserve more with '{}'",
                bytes >> 20, need, where, pool.free, pool.total, how);
}

} // namespace kiln
