// CpuSet: a set of host CPU numbers (issue 5, item 1: NUMA and pinning), in the kernel's
// list format ("0-3,8,10-11") as sysfs node cpulists and /proc/PID/status
// Cpus_allowed_list print it, and as the cpu_set_t that sched_setaffinity and
// pthread_setaffinity_np take.
//
// Up to 1024 CPUs: glibc's fixed cpu_set_t (CPU_SETSIZE). A host with more would need
// CPU_ALLOC'd masks; allowed_cpus() then fails with a line saying so rather than
// silently dropping CPUs.
#pragma once

#include <sched.h>

#include <bitset>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "vmm/base/result.hpp"

namespace kiln::host {

class CpuSet {
public:
    static constexpr uint32_t kMaxCpus = CPU_SETSIZE;

    CpuSet() = default;
    // Precondition: every cpu < kMaxCpus (std::out_of_range otherwise: a programming
    // error; numbers from outside come through parse_cpulist, which checks).
    CpuSet(std::initializer_list<uint32_t> cpus);
    [[nodiscard]] static CpuSet from_cpu_set(const cpu_set_t& set);

    void add(uint32_t cpu) { bits_.set(cpu); }
    void remove(uint32_t cpu) { bits_.reset(cpu); }
    [[nodiscard]] bool contains(uint32_t cpu) const { return cpu < kMaxCpus && bits_.test(cpu); }
    [[nodiscard]] uint32_t count() const { return static_cast<uint32_t>(bits_.count()); }
    [[nodiscard]] bool empty() const { return bits_.none(); }
    [[nodiscard]] std::vector<uint32_t> cpus() const; // ascending
    [[nodiscard]] bool subset_of(const CpuSet& other) const { return (bits_ & ~other.bits_).none(); }

    // "0-3,8,10-11"; "" for the empty set (as the kernel prints a memory-only node).
    [[nodiscard]] std::string to_string() const;
    [[nodiscard]] cpu_set_t to_cpu_set() const;

    friend CpuSet operator&(const CpuSet& a, const CpuSet& b) { return CpuSet(a.bits_ & b.bits_); }
    friend CpuSet operator|(const CpuSet& a, const CpuSet& b) { return CpuSet(a.bits_ | b.bits_); }
    // The CPUs of `a` that are not in `b`.
    friend CpuSet operator-(const CpuSet& a, const CpuSet& b) { return CpuSet(a.bits_ & ~b.bits_); }
    friend bool operator==(const CpuSet& a, const CpuSet& b) { return a.bits_ == b.bits_; }

private:
    explicit CpuSet(const std::bitset<kMaxCpus>& bits) : bits_(bits) {}
    std::bitset<kMaxCpus> bits_;
};

// The kernel's list format: comma-separated numbers and inclusive ranges A-B, surrounding
// white space (a sysfs file's newline) ignored, "" is the empty set. The kernel's
// A-B:used/group stride form is not accepted (no kernel file prints it). Errors quote
// the list and name the bad piece: "invalid CPU list '0-3,x': 'x' is not a number".
[[nodiscard]] Result<CpuSet> parse_cpulist(std::string_view list);

// The same format for other ids below `limit` (NUMA node lists such as
// /sys/devices/system/node/online); `noun` names them in errors ("node").
[[nodiscard]] Result<std::vector<uint32_t>> parse_id_list(std::string_view list, uint32_t limit, std::string_view noun);

// The CPUs this process may run on: its scheduler cpuset or batch allocation (Slurm,
// taskset, a container's cpuset), from sched_getaffinity. It is the calling thread's
// mask, which new threads inherit: ask on the main thread before pinning anything.
[[nodiscard]] Result<CpuSet> allowed_cpus();

} // namespace kiln::host
