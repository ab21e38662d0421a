// MachineConfig: everything that describes one VM, as plain validated data. The CLI,
// and later the control socket and embedders, all build one of these.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "devices/block/disk.hpp"
#include "devices/net/net_spec.hpp"
#include "vmm/base/result.hpp"
#include "vmm/base/size.hpp"
#include "vmm/host/cpu_placement.hpp"
#include "vmm/memory/layout.hpp"
#include "vmm/memory/memory_backing.hpp"

namespace kiln {

struct ConsoleConfig {
    enum class Kind : uint8_t { Stdout, File, None };
    Kind kind = Kind::Stdout;
    std::string path; // for File
};

// Panic and Oops lines of a Linux kernel: what a kernel-boot test fails on by default.
inline constexpr const char* kDefaultFailOn = R"(Kernel panic - not syncing|\bOops\b|BUG: kernel NULL pointer)";

struct MachineConfig {
    // --name: for logs, and the seed of generated MAC addresses (stable per name).
    // Empty: "kiln-PID".
    std::string name;
    std::string kernel_path;
    std::string initrd_path;    // empty: none
    std::string cmdline;
    uint64_t memory_bytes = 512 * layout::MiB;
    MemoryBacking memory_backing; // --memory SIZE,hugepages=on,thp=off,merge=on
    uint32_t cpus = 1;
    // Placement (vmm/host/cpu_placement.hpp): --numa-node K and --vcpu-affinity V=CPUS.
    // Neither: every vCPU may run on any CPU kiln may use (its cpuset).
    std::optional<uint32_t> numa_node;
    std::vector<host::VcpuAffinity> vcpu_affinity;
    ConsoleConfig console;
    std::optional<double> timeout_seconds;
    std::optional<std::string> expect;                   // ECMAScript regex
    std::optional<std::string> fail_on = kDefaultFailOn; // nullopt: never fail on output
    bool forward_stdin = false;  // feed the terminal's input to the serial port
    std::string kvm_path = "/dev/kvm";

    // virtio-blk disks, in order: virtio-mmio slots 0, 1, ... (layout.hpp).
    std::vector<block::DiskSpec> disks;
    // virtio-net NICs on TAPs, in order, in the virtio-mmio slots after the disks.
    std::vector<net::NetSpec> nets;
    // How the guest finds its devices. The `virtio_mmio.device=` words are always added
    // to the command line when there are virtio devices; ACPI tables (for stock distro
    // kernels) unless `acpi` is off; a device tree as SETUP_DTB with `dtb` (bzImage only).
    bool acpi = true;
    bool dtb = false;
    std::string dump_acpi_dir; // --dump-acpi DIR: each table to DIR/<SIG>.aml
    std::string dump_dtb_path; // --dump-dtb FILE
    // --paging ept|shadow|any: refuse to start on a host whose second-level paging is
    // not the one asked for ("ept" means two-dimensional: EPT or NPT).
    enum class Paging : uint8_t { Any, TwoDimensional, Shadow };
    Paging paging = Paging::Any;
    // --stats-json FILE: the run's statistics (run_stats.hpp) written there at the end.
    std::string stats_json_path;

    // The name logs, MACs and the control API use: `name`, or "kiln-PID".
    [[nodiscard]] std::string vm_name() const;

    // Checks what can be checked without the host: sizes, counts, regex syntax.
    [[nodiscard]] Result<void> validate() const;
};


} // namespace kiln
