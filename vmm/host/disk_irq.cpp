#include "vmm/host/disk_irq.hpp"

#include <sys/sysmacros.h>

#include <charconv>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "vmm/base/file_io.hpp"
#include "vmm/host/host_files.hpp"

namespace kiln::host {
namespace {

namespace fs = std::filesystem;

constexpr int kMaxDepth = 4; // dm over md over a partition: stacks are shallow

// The interrupt vectors of the device at `dir` (a canonical /sys/devices/... path) or
// of its nearest ancestor that has some, below `devices_root`.
std::vector<unsigned> device_vectors(fs::path dir, const fs::path& devices_root) {
    std::error_code ec;
    for (; dir.string().starts_with(devices_root.string()) && dir != devices_root; dir = dir.parent_path()) {
        if (fs::is_directory(dir / "msi_irqs", ec)) return numbered_entries((dir / "msi_irqs").string(), "");
        // A PCI function without MSI: its legacy line (0 means none).
        if (const auto irq = read_u64((dir / "irq").string()); irq && *irq > 0 && fs::exists(dir / "vendor", ec))
            return {static_cast<unsigned>(*irq)};
    }
    return {};
}

// Interrupts vector `irq` has taken, summed over the CPUs ("0,8290812").
std::optional<uint64_t> vector_count(const HostRoots& roots, unsigned irq) {
    const auto line = read_line(fmt::format("{}/kernel/irq/{}/per_cpu_count", roots.sys, irq));
    if (!line) return std::nullopt;
    uint64_t sum = 0;
    std::string_view rest = *line;
    while (!rest.empty()) {
        uint64_t n = 0;
        const auto [p, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), n);
        if (ec != std::errc()) return std::nullopt;
        sum += n;
        rest.remove_prefix(static_cast<size_t>(p - rest.data()));
        if (!rest.empty() && rest.front() == ',') rest.remove_prefix(1);
        else break;
    }
    return sum;
}

std::optional<CpuSet> vector_affinity(const HostRoots& roots, unsigned irq) {
    for (const char* file : {"effective_affinity_list", "smp_affinity_list"}) {
        const auto line = read_line(fmt::format("{}/irq/{}/{}", roots.proc, irq, file));
        if (!line) continue;
        if (auto cpus = parse_cpulist(*line); cpus && !cpus->empty()) return *cpus;
    }
    return std::nullopt;
}

std::optional<CpuSet> irq_cpus(const HostRoots& roots, unsigned major_no, unsigned minor_no, int depth) {
    if (depth > kMaxDepth) return std::nullopt;
    std::error_code ec;
    const fs::path link = fmt::format("{}/dev/block/{}:{}", roots.sys, major_no, minor_no);
    const fs::path dir = fs::canonical(link, ec);
    if (ec) return std::nullopt;

    // Device-mapper and md devices are virtual: their slaves take the interrupts.
    if (fs::is_directory(dir / "slaves", ec)) {
        std::optional<CpuSet> all;
        for (const auto& slave : fs::directory_iterator(dir / "slaves", ec)) {
            const auto dev = read_line((slave.path() / "dev").string()); // "254:1"
            if (!dev) continue;
            unsigned ma = 0, mi = 0;
            const auto colon = dev->find(':');
            if (colon == std::string::npos ||
                std::from_chars(dev->data(), dev->data() + colon, ma).ec != std::errc() ||
                std::from_chars(dev->data() + colon + 1, dev->data() + dev->size(), mi).ec != std::errc())
                continue;
            if (auto cpus = irq_cpus(roots, ma, mi, depth + 1)) all = all ? *all | *cpus : *cpus;
        }
        if (all) return all;
    }

    const fs::path devices_root = fs::canonical(fs::path(roots.sys) / "devices", ec);
    if (ec) return std::nullopt;
    std::vector<std::pair<unsigned, uint64_t>> counted;
    uint64_t total = 0;
    for (const unsigned irq : device_vectors(dir, devices_root)) {
        const uint64_t n = vector_count(roots, irq).value_or(0);
        counted.emplace_back(irq, n);
        total += n;
    }
    if (total == 0) return std::nullopt; // no interrupt yet: the request vectors are unknown
    std::optional<CpuSet> cpus;
    for (const auto& [irq, n] : counted) {
        if (n * 100 < total) continue; // a config or admin vector
        if (auto a = vector_affinity(roots, irq)) cpus = cpus ? *cpus | *a : *a;
    }
    return cpus;
}

} // namespace

std::optional<CpuSet> disk_irq_cpus(dev_t dev, const HostRoots& roots) {
    if (major(dev) == 0) return std::nullopt; // tmpfs, overlayfs, ...: no block device
    return irq_cpus(roots, major(dev), minor(dev), 0);
}

CpuSet disk_worker_cpus(const CpuSet& io_cpus, const std::optional<CpuSet>& irq_cpus, const CpuSet& vcpu_only) {
    if (!irq_cpus) return io_cpus;
    const CpuSet there = (*irq_cpus & io_cpus) - vcpu_only;
    return there.empty() ? io_cpus : there;
}

} // namespace kiln::host
