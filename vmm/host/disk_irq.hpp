// Where a disk's completions arrive: the CPUs that take the interrupts of the host
// block device under an image file, so that the disk's queue workers can run there.
//
// Why it matters: a completion wakes the worker from the CPU its interrupt landed on.
// On another CPU that is a cross-CPU wake-up of a sleeping (halted) CPU; in a VM host,
// or with deep C-states, that costs tens of microseconds. Measured here (a virtio disk
// whose only request vector is on CPU 1; test guest, 4 KiB random reads): worker on
// CPU 1, QD1 12.8k-13.4k IOPS; worker on CPU 0, 8.3k-8.8k; unpinned, either.
//
// A multi-queue NVMe device with a vector per CPU answers "every CPU": nothing to gain,
// and the workers keep the whole pool.
#pragma once

#include <sys/types.h>

#include <optional>

#include "vmm/host/cpu_set.hpp"
#include "vmm/host/host_check.hpp"

namespace kiln::host {

// The CPUs that take block device `dev`'s completion interrupts (`dev`: an image
// file's st_dev, or a block device's st_rdev):
//  - /sys/dev/block/MAJ:MIN is followed to the device, and up from it to the first
//    ancestor with MSI/MSI-X vectors (msi_irqs/), or a legacy `irq`; a partition
//    answers for its disk, a device-mapper or md device for its slaves;
//  - of those vectors, the ones that took at least 1 % of the device's interrupts so
//    far (/sys/kernel/irq/N/per_cpu_count): a config or admin vector does not count;
//  - their effective affinity (/proc/irq/N/effective_affinity_list, else
//    smp_affinity_list), united.
// nullopt when there is nothing to go by: a filesystem without a block device (tmpfs),
// a loop device, a device that has not interrupted yet, an unreadable tree.
// Decided when asked: irqbalance may move the vectors later.
[[nodiscard]] std::optional<CpuSet> disk_irq_cpus(dev_t dev, const HostRoots& roots = {});

// The CPUs for a disk's queue workers: `irq_cpus` within the VM's I/O CPUs, leaving
// out CPUs that explicitly pinned vCPUs spin on (`vcpu_only`); the I/O CPUs unchanged
// when that leaves nothing or nothing is known.
[[nodiscard]] CpuSet disk_worker_cpus(const CpuSet& io_cpus, const std::optional<CpuSet>& irq_cpus,
                                      const CpuSet& vcpu_only);

} // namespace kiln::host
