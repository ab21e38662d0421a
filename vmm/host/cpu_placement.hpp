// Where a VM's threads run (issue 5, item 1): the pure plan from --numa-node,
// --vcpu-affinity, the host's NUMA topology and the CPUs kiln may use, and the two
// calls that apply it (thread affinity here, memory binding in numa.hpp).
//
// The plan is a pure function so every rule is tested against fake 2- and 4-node
// topologies; these machines have one node.
#pragma once

#include <pthread.h>
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "vmm/base/result.hpp"
#include "vmm/host/cpu_set.hpp"
#include "vmm/host/numa.hpp"

namespace kiln::host {

// One --vcpu-affinity entry: vCPU `vcpu` runs only on `cpus`.
struct VcpuAffinity {
    uint32_t vcpu = 0;
    CpuSet cpus;
    friend bool operator==(const VcpuAffinity&, const VcpuAffinity&) = default;
};

// --vcpu-affinity SPEC. Entries are separated by ',' and each starts with `V=`: vCPU V
// followed by a CPU list in the kernel's format. A ',' piece without '=' continues the
// previous entry's CPU list, so a list may hold commas without any other separator:
//   "0=2,1=3"        vCPU 0 on CPU 2, vCPU 1 on CPU 3
//   "0=2-3,1=4-5"    vCPU 0 on CPUs 2 and 3, vCPU 1 on 4 and 5
//   "0=2-3,8,1=4"    vCPU 0 on CPUs 2, 3 and 8, vCPU 1 on CPU 4
// The flag may be repeated; the entries are simply concatenated (a vCPU named twice,
// in one flag or two, is refused by plan_vcpu_placement).
[[nodiscard]] Result<std::vector<VcpuAffinity>> parse_vcpu_affinity(std::string_view spec);

struct Placement {
    std::vector<CpuSet> vcpu_cpus;       // index = vCPU: the CPUs its thread is pinned to
    CpuSet io_cpus;                      // the VMM's other threads (disk workers, event loop)
    std::optional<uint32_t> memory_node; // bind guest RAM here (bind_memory), or leave it
    std::string description;             // one line for the log
};

// The rules (issue 5, item 1):
// - The pool is `allowed` (the CPUs kiln may use: its cpuset or batch allocation), or
//   with --numa-node K, node K's CPUs within `allowed`. K must exist and have CPUs in
//   `allowed`.
// - --vcpu-affinity entries pin their vCPUs exactly as given. Every CPU named must be in
//   `allowed` (and in node K's CPUs when --numa-node is given too); the vCPU must exist
//   and be named once.
// - With --numa-node or --vcpu-affinity, every other vCPU gets one CPU of its own, in
//   CPU order, from the pool's CPUs that no explicit entry uses, while there are enough.
//   So a small VM packs onto the lowest CPUs of its node, and no two vCPUs fight over a
//   CPU while another sits idle.
// - With no placement flag at all, every vCPU may run on the whole pool (the allowed
//   CPUs): the kernel spreads them, and they never leave the cpuset. Pinning 1:1 here
//   would put vCPU 0 of every VM started without flags on the same first CPU.
// - Oversubscribed (more such vCPUs than free CPUs): each gets the whole pool. Pinning
//   two vCPUs to one CPU while the pool has others would be worse; within the pool the
//   kernel's scheduler balances the vCPUs, and they stay inside the cpuset (and node).
// - I/O threads run on the pool; guest memory is bound to K when --numa-node is given,
//   and left to the kernel (first touch) otherwise.
[[nodiscard]] Result<Placement> plan_vcpu_placement(const NumaTopology& topology, const CpuSet& allowed,
                                                    uint32_t vcpus, std::optional<uint32_t> numa_node,
                                                    const std::vector<VcpuAffinity>& explicit_affinity);

// Set a thread's CPU affinity: a std::thread's native_handle() or pthread_self()...
[[nodiscard]] Result<void> pin_thread(pthread_t thread, const CpuSet& cpus);
// ... or a thread by its kernel id (gettid(); 0 is the calling thread).
[[nodiscard]] Result<void> pin_task(pid_t tid, const CpuSet& cpus);

// The "Cpus_allowed_list:" line of a /proc/PID/task/TID/status text.
[[nodiscard]] Result<CpuSet> parse_cpus_allowed_list(std::string_view status);
// A thread's affinity as the kernel reports it in /proc/PID/task/TID/status (pid 0:
// this process), to report and to test pinning from outside the thread.
[[nodiscard]] Result<CpuSet> read_cpus_allowed(pid_t pid, pid_t tid);

} // namespace kiln::host
