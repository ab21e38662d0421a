// A VM's statistics (issue 5, item 5: "measure CPU congestion"): per vCPU thread the
// scheduler's view (time on a CPU, time waiting on a run queue, timeslices, from
// /proc/.../schedstat) and KVM's own counters (exits, halt polling; KVM_GET_STATS_FD);
// how memory is backed and what it costs. Machine::stats() samples it at any time, so a
// control socket can serve it live; `kiln run --stats-json FILE` writes the last sample.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "vmm/base/result.hpp"
#include "vmm/kvm/kvm_stats.hpp"

namespace kiln {

// One line of /proc/PID/task/TID/schedstat: "run_ns wait_ns timeslices".
struct SchedStat {
    uint64_t run_ns = 0;
    uint64_t wait_ns = 0; // runnable but waiting for a CPU: congestion
    uint64_t timeslices = 0;
};
[[nodiscard]] Result<SchedStat> parse_schedstat(std::string_view text);
[[nodiscard]] Result<SchedStat> read_schedstat(const std::string& path);

struct VcpuStats {
    uint32_t id = 0;
    pid_t tid = 0;              // 0: the thread never started
    std::string cpus_allowed;   // Cpus_allowed_list of the thread, e.g. "0-1"
    SchedStat sched;
    std::vector<KvmCounter> kvm; // empty when the kernel has no binary stats
};

// The process's memory, from /proc/self/smaps_rollup and /proc/self/ksm_stat.
struct MemoryStats {
    uint64_t guest_bytes = 0;
    std::string backing;            // MemoryBacking::describe()
    uint64_t rss_bytes = 0;
    uint64_t anon_huge_bytes = 0;   // THP
    uint64_t hugetlb_bytes = 0;     // hugetlb pages mapped
    std::optional<uint64_t> ksm_merging_pages; // pages of this process KSM merged
};
[[nodiscard]] MemoryStats read_memory_stats(std::string_view smaps_rollup, std::string_view ksm_stat);

// One virtio-net NIC's counters (devices/virtio/net.hpp: NetCounters).
struct NicStats {
    std::string name, tap, mac;
    uint64_t rx_packets = 0, rx_bytes = 0, rx_dropped = 0;
    uint64_t tx_packets = 0, tx_bytes = 0, tx_errors = 0;
};

// One virtio-blk disk's counters (devices/virtio/blk.hpp: BlkCounters).
struct DiskStats {
    std::string name, image; // "virtio-blk0"; DiskImage::describe()
    uint64_t read_requests = 0, read_bytes = 0, write_requests = 0, write_bytes = 0;
    uint64_t flush_requests = 0, discard_requests = 0, errors = 0;
    std::string worker_cpus; // the CPUs its queue workers may run on ("1", "0-7")
};

struct MachineStats {
    double uptime_seconds = 0;
    std::string paging;      // "shadow (kvm_pvm: ...)", as detected at start
    MemoryStats memory;
    std::vector<VcpuStats> vcpus;
    std::vector<DiskStats> disks;
    std::vector<NicStats> nics;
};

void to_json(nlohmann::json& j, const MachineStats& s);

} // namespace kiln
