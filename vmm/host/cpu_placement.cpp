#include "vmm/host/cpu_placement.hpp"

#include <sched.h>

#include <algorithm>
#include <charconv>

#include "vmm/base/file_io.hpp"

namespace kiln::host {

Result<std::vector<VcpuAffinity>> parse_vcpu_affinity(std::string_view spec) {
    auto bad = [&](std::string_view why) {
        return fail("--vcpu-affinity '{}': {} (expected entries VCPU=CPULIST, like 0=2,1=3 or 0=2-3,1=4-5)",
                    spec, why);
    };
    if (spec.empty()) return bad("empty");
    struct Entry {
        uint32_t vcpu;
        std::string cpulist;
    };
    std::vector<Entry> entries;
    size_t pos = 0;
    while (pos <= spec.size()) {
        const size_t comma = std::min(spec.find(',', pos), spec.size());
        const std::string_view piece = spec.substr(pos, comma - pos);
        pos = comma + 1;
        const size_t eq = piece.find('=');
        if (eq == std::string_view::npos) {
            // A CPU list's own comma: this piece continues the previous entry's list.
            if (entries.empty()) return bad(fmt::format("'{}' does not start with a vCPU number and '='", piece));
            entries.back().cpulist += ',';
            entries.back().cpulist += piece;
            continue;
        }
        const std::string_view number = piece.substr(0, eq);
        uint32_t vcpu = 0;
        auto [p, ec] = std::from_chars(number.data(), number.data() + number.size(), vcpu);
        if (number.empty() || ec != std::errc() || p != number.data() + number.size())
            return bad(fmt::format("'{}' is not a vCPU number", number));
        entries.push_back({vcpu, std::string(piece.substr(eq + 1))});
    }
    std::vector<VcpuAffinity> out;
    for (const auto& e : entries) {
        if (e.cpulist.empty()) return bad(fmt::format("vCPU {} has no CPUs after '='", e.vcpu));
        auto cpus = parse_cpulist(e.cpulist);
        if (!cpus) return bad(fmt::format("vCPU {}: {}", e.vcpu, cpus.error().message()));
        out.push_back({e.vcpu, std::move(*cpus)});
    }
    return out;
}

Result<Placement> plan_vcpu_placement(const NumaTopology& topology, const CpuSet& allowed, uint32_t vcpus,
                                      std::optional<uint32_t> numa_node,
                                      const std::vector<VcpuAffinity>& explicit_affinity) {
    if (vcpus == 0) return fail("placing vCPUs: the VM has no vCPUs");
    if (allowed.empty()) return fail("placing vCPUs: kiln may run on no CPU at all (empty affinity)");

    // The pool every vCPU without an explicit entry, and every I/O thread, draws from.
    CpuSet pool = allowed;
    std::string source = fmt::format("CPUs kiln may use {}", allowed.to_string());
    if (numa_node) {
        const uint32_t k = *numa_node;
        const NumaNode* node = topology.node(k);
        if (!node) return fail("--numa-node {}: the host has no NUMA node {} (its nodes: {})", k, k, topology.node_ids());
        if (node->cpus.empty()) return fail("--numa-node {}: node {} has memory but no CPUs to run vCPUs on", k, k);
        pool = node->cpus & allowed;
        if (pool.empty())
            return fail("--numa-node {}: none of node {}'s CPUs ({}) are among the CPUs kiln may use ({})", k, k,
                        node->cpus.to_string(), allowed.to_string());
        source += fmt::format(", --numa-node {} (CPUs {})", k, pool.to_string());
    }

    Placement plan;
    plan.vcpu_cpus.resize(vcpus);
    std::vector<bool> pinned(vcpus, false);
    CpuSet taken; // CPUs some explicit entry uses
    for (const auto& a : explicit_affinity) {
        if (a.vcpu >= vcpus)
            return fail("--vcpu-affinity: vCPU {} does not exist (the VM has {})", a.vcpu,
                        vcpus == 1 ? std::string("1 vCPU: 0") : fmt::format("{} vCPUs: 0-{}", vcpus, vcpus - 1));
        if (pinned[a.vcpu]) return fail("--vcpu-affinity: vCPU {} is listed twice", a.vcpu);
        if (a.cpus.empty()) return fail("--vcpu-affinity: vCPU {} has no CPUs", a.vcpu);
        for (const uint32_t cpu : a.cpus.cpus()) {
            if (!allowed.contains(cpu))
                return fail("--vcpu-affinity: vCPU {} -> CPU {} is outside the CPUs kiln may use ({})", a.vcpu, cpu,
                            allowed.to_string());
            if (!pool.contains(cpu))
                return fail("--vcpu-affinity: vCPU {} -> CPU {} is outside node {}'s CPUs that kiln may use ({})",
                            a.vcpu, cpu, *numa_node, pool.to_string());
        }
        pinned[a.vcpu] = true;
        plan.vcpu_cpus[a.vcpu] = a.cpus;
        taken = taken | a.cpus;
    }
    if (!explicit_affinity.empty()) source += ", --vcpu-affinity";

    uint32_t unpinned = 0;
    for (const bool p : pinned) unpinned += p ? 0 : 1;
    const std::vector<uint32_t> free_cpus = (pool - taken).cpus();
    // Without any placement flag nothing is pinned 1:1 (see the header: VMs sharing a
    // host or cpuset would all pin vCPU 0 to the same CPU); the vCPUs stay inside the
    // allowed CPUs and the kernel spreads them.
    const bool asked = numa_node.has_value() || !explicit_affinity.empty();
    const bool one_each = asked && unpinned <= free_cpus.size();
    size_t next = 0;
    for (uint32_t v = 0; v < vcpus; ++v) {
        if (pinned[v]) continue;
        plan.vcpu_cpus[v] = one_each ? CpuSet{free_cpus[next++]} : pool;
    }
    plan.io_cpus = pool;
    plan.memory_node = numa_node;

    std::string vcpu_list;
    for (uint32_t v = 0; v < vcpus; ++v)
        vcpu_list += fmt::format("{}vcpu{}={}", v ? " " : "", v, plan.vcpu_cpus[v].to_string());
    std::string sharing;
    if (unpinned > 0 && !asked)
        sharing = fmt::format(" (no placement flags: spread over {} by the kernel)", pool.to_string());
    else if (unpinned > 0 && !one_each)
        sharing = fmt::format(" ({} vCPUs share {} CPUs, balanced by the kernel)", unpinned, pool.count());
    plan.description =
        fmt::format("placement ({}): {}{}; I/O threads on {}; guest memory {}", source, vcpu_list, sharing,
                    plan.io_cpus.to_string(),
                    numa_node ? fmt::format("bound to node {}", *numa_node) : std::string("not bound"));
    return plan;
}

Result<void> pin_thread(pthread_t thread, const CpuSet& cpus) {
    const cpu_set_t set = cpus.to_cpu_set();
    if (const int e = ::pthread_setaffinity_np(thread, sizeof(set), &set); e != 0)
        return fail_errno(fmt::format("pinning a thread to CPUs {}", cpus.to_string()), e);
    return {};
}

Result<void> pin_task(pid_t tid, const CpuSet& cpus) {
    const cpu_set_t set = cpus.to_cpu_set();
    if (::sched_setaffinity(tid, sizeof(set), &set) != 0)
        return fail_errno(fmt::format("pinning thread {} to CPUs {}", tid, cpus.to_string()));
    return {};
}

Result<CpuSet> parse_cpus_allowed_list(std::string_view status) {
    constexpr std::string_view key = "Cpus_allowed_list:";
    for (const std::string_view line : split_lines(status)) {
        if (!line.starts_with(key)) continue;
        return KILN_TRY_CTX(parse_cpulist(line.substr(key.size())), "Cpus_allowed_list");
    }
    return fail("no Cpus_allowed_list line in the status text");
}

Result<CpuSet> read_cpus_allowed(pid_t pid, pid_t tid) {
    const std::string path = pid == 0 ? fmt::format("/proc/self/task/{}/status", tid)
                                      : fmt::format("/proc/{}/task/{}/status", pid, tid);
    const std::string text = KILN_TRY(read_text_file(path));
    return KILN_TRY_CTX(parse_cpus_allowed_list(text), "'{}'", path);
}

} // namespace kiln::host
