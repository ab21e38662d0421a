// The host's NUMA topology and guest-memory binding (issue 5, item 1).
//
// Read from sysfs (devices/system/node: online, nodeN/cpulist, nodeN/meminfo);
// `sysfs_root` is a parameter so tests can hand in fake trees with 2 or 4 nodes (these
// machines have one). Binding uses mbind(2) through syscall(2), not libnuma: the kiln
// binary is linked -static and needs exactly this one call (plus sched_setaffinity,
// in libc), so a library and its shared-object assumptions buy nothing.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "vmm/base/result.hpp"
#include "vmm/host/cpu_set.hpp"

namespace kiln::host {

struct NumaNode {
    uint32_t id = 0;
    CpuSet cpus;               // empty for a memory-only node (CXL memory, some NVDIMM setups)
    uint64_t memory_bytes = 0; // MemTotal; 0 when unknown (see NumaTopology::synthesized)
};

class NumaTopology {
public:
    // Node ids are below this (the kernel's MAX_NUMNODES is at most 1024).
    static constexpr uint32_t kMaxNodes = 1024;

    // Nodes from <root>/devices/system/node/online (or the nodeN directories when that
    // file is missing), each with its cpulist and meminfo MemTotal. A kernel without
    // NUMA (no devices/system/node) is one node 0 holding every online CPU
    // (<root>/devices/system/cpu/online), memory unknown. Any unreadable or malformed
    // file is an error naming it.
    [[nodiscard]] static Result<NumaTopology> read(std::string_view sysfs_root = "/sys");

    NumaTopology() = default;
    // For callers that already know the nodes (tests of the placement logic). Nodes are
    // kept sorted by id.
    explicit NumaTopology(std::vector<NumaNode> nodes, bool synthesized = false);

    [[nodiscard]] const std::vector<NumaNode>& nodes() const { return nodes_; }
    [[nodiscard]] const NumaNode* node(uint32_t id) const; // nullptr if there is none
    [[nodiscard]] std::string node_ids() const;            // "0-1", as a list
    // True when the kernel showed no NUMA nodes and node 0 was made up from the CPUs.
    [[nodiscard]] bool synthesized() const { return synthesized_; }
    // "2 nodes: node0 CPUs 0-3 8192 MiB, node1 CPUs 4-7 8192 MiB" (logs, host check).
    [[nodiscard]] std::string describe() const;

private:
    std::vector<NumaNode> nodes_;
    bool synthesized_ = false;
};

// Bind [addr, addr+len) to `node` with mbind(MPOL_BIND): pages come only from that node
// (an allocation fails rather than spilling to another). MPOL_MF_MOVE also migrates pages
// already touched, so binding after the kernel image was loaded still places them;
// binding before anything touches the memory is cheaper. `addr` must be page aligned.
// Errors: a node the kernel does not have or the cpuset's mems exclude (EINVAL), a
// kernel without CONFIG_NUMA (ENOSYS).
[[nodiscard]] Result<void> bind_memory(void* addr, size_t len, uint32_t node);

// One line of /proc/PID/numa_maps: "7f3c00000000 bind:0 anon=512 dirty=512 N0=512
// kernelpagesize_kB=4". What the kernel did with a mapping: to report it and to check
// bind_memory in tests.
struct NumaMapsEntry {
    uint64_t start = 0;                      // the VMA's start address
    std::string policy;                      // "default", "bind:0", "interleave:0-1", "prefer:1", ...
    std::map<uint32_t, uint64_t> node_pages; // N0=512 -> {0, 512}: resident pages per node
    uint64_t page_size_kib = 0;              // kernelpagesize_kB (4, or 2048 for hugetlb)
};

[[nodiscard]] Result<NumaMapsEntry> parse_numa_maps_line(std::string_view line);
[[nodiscard]] Result<std::vector<NumaMapsEntry>> parse_numa_maps(std::string_view text);
// /proc/PID/numa_maps; pid 0 is this process.
[[nodiscard]] Result<std::vector<NumaMapsEntry>> read_numa_maps(pid_t pid = 0);

// Node `node`'s memory in bytes from the text of its nodeN/meminfo ("Node 1 MemTotal:
// 8388608 kB"); a missing or malformed line is an error.
[[nodiscard]] Result<uint64_t> node_mem_total(std::string_view meminfo, uint32_t node);

} // namespace kiln::host
