// Where a disk's completions land (vmm/host/disk_irq.hpp): fake sysfs/procfs trees shaped
// like a virtio-pci disk with a partition, an NVMe device with a vector per CPU, a
// device-mapper volume, a loop device and a legacy PCI line; and the rule that picks
// the queue workers' CPUs from it.
#include <doctest/doctest.h>

#include <sys/sysmacros.h>

#include <string>

#include "test_host_tree.hpp"
#include "vmm/host/disk_irq.hpp"

using namespace kiln;
using namespace kiln::host;
using kiln::test::FakeHost;

namespace {

HostRoots roots_of(const FakeHost& h) { return {h.sys(), h.proc(), h.dev()}; }

void vector(const FakeHost& h, unsigned irq, const std::string& per_cpu_count, const std::string& effective) {
    h.write("sys/kernel/irq/" + std::to_string(irq) + "/per_cpu_count", per_cpu_count + "\n");
    if (!effective.empty()) h.write("proc/irq/" + std::to_string(irq) + "/effective_affinity_list", effective + "\n");
    h.write("proc/irq/" + std::to_string(irq) + "/smp_affinity_list", "0-3\n");
}

// A block device at `dir/rel` (dir under sys/devices) and its /sys/dev/block/`devno` link.
void block(const FakeHost& h, const std::string& dir, const std::string& rel, const std::string& devno) {
    h.mkdir("sys/devices/" + dir + "/" + rel);
    h.symlink("../../devices/" + dir + "/" + rel, "sys/dev/block/" + devno);
}

// This machine's own disk: virtio-blk on PCI 00:02.0, vector 35 the config interrupt,
// 36 the request queue; /dev/vda1 a partition of it.
void virtio_disk(const FakeHost& h) {
    const std::string pci = "sys/devices/pci0000:00/0000:00:02.0";
    h.mkdir(pci + "/msi_irqs/35");
    h.mkdir(pci + "/msi_irqs/36");
    block(h, "pci0000:00/0000:00:02.0", "virtio1/block/vda", "254:0");
    block(h, "pci0000:00/0000:00:02.0", "virtio1/block/vda/vda1", "254:1");
    vector(h, 35, "0,1", "0");
    vector(h, 36, "0,8290812", "1");
}

} // namespace

TEST_CASE("disk irq: a virtio disk's request vector, not its config vector, and a partition answers for its disk") {
    FakeHost h;
    virtio_disk(h);
    const auto whole = disk_irq_cpus(makedev(254, 0), roots_of(h));
    REQUIRE(whole);
    CHECK(whole->to_string() == "1");
    const auto part = disk_irq_cpus(makedev(254, 1), roots_of(h));
    REQUIRE(part);
    CHECK(part->to_string() == "1");
}

TEST_CASE("disk irq: without effective_affinity_list the configured affinity is used") {
    FakeHost h;
    const std::string pci = "sys/devices/pci0000:00/0000:00:02.0";
    h.mkdir(pci + "/msi_irqs/36");
    block(h, "pci0000:00/0000:00:02.0", "virtio1/block/vda", "254:0");
    vector(h, 36, "5,5", "");
    const auto cpus = disk_irq_cpus(makedev(254, 0), roots_of(h));
    REQUIRE(cpus);
    CHECK(cpus->to_string() == "0-3");
}

TEST_CASE("disk irq: an NVMe device with a vector per CPU answers every CPU") {
    FakeHost h;
    const std::string pci = "sys/devices/pci0000:00/0000:00:04.0";
    block(h, "pci0000:00/0000:00:04.0", "nvme/nvme0/nvme0n1", "259:0");
    h.mkdir(pci + "/msi_irqs/40"); // the admin queue: a handful of interrupts
    vector(h, 40, "12,0,0,0", "0");
    for (unsigned q = 0; q < 4; ++q) {
        h.mkdir(pci + "/msi_irqs/" + std::to_string(41 + q));
        std::string counts;
        for (unsigned c = 0; c < 4; ++c) counts += (c ? "," : "") + std::string(c == q ? "90000" : "0");
        vector(h, 41 + q, counts, std::to_string(q));
    }
    const auto cpus = disk_irq_cpus(makedev(259, 0), roots_of(h));
    REQUIRE(cpus);
    CHECK(cpus->to_string() == "0-3");
    CHECK(disk_worker_cpus(CpuSet{0, 1, 2, 3}, cpus, CpuSet{}).to_string() == "0-3");
}

TEST_CASE("disk irq: a device-mapper volume answers for its slaves") {
    FakeHost h;
    virtio_disk(h);
    block(h, "virtual", "block/dm-0", "253:0");
    h.write("sys/devices/virtual/block/dm-0/slaves/vda1/dev", "254:1\n");
    const auto cpus = disk_irq_cpus(makedev(253, 0), roots_of(h));
    REQUIRE(cpus);
    CHECK(cpus->to_string() == "1");
}

TEST_CASE("disk irq: a legacy PCI line without MSI") {
    FakeHost h;
    const std::string pci = "sys/devices/pci0000:00/0000:00:1f.2";
    h.write(pci + "/irq", "19\n");
    h.write(pci + "/vendor", "0x8086\n");
    block(h, "pci0000:00/0000:00:1f.2", "ata1/host0/target0:0:0/0:0:0:0/block/sda", "8:0");
    vector(h, 19, "100,0", "0");
    const auto cpus = disk_irq_cpus(makedev(8, 0), roots_of(h));
    REQUIRE(cpus);
    CHECK(cpus->to_string() == "0");
}

TEST_CASE("disk irq: nothing to go by - tmpfs, a loop device, a disk that has not interrupted, no such device") {
    FakeHost h;
    virtio_disk(h);
    CHECK_FALSE(disk_irq_cpus(makedev(0, 42), roots_of(h))); // tmpfs: an anonymous device
    block(h, "virtual", "block/loop0", "7:0");
    CHECK_FALSE(disk_irq_cpus(makedev(7, 0), roots_of(h)));
    CHECK_FALSE(disk_irq_cpus(makedev(8, 16), roots_of(h)));

    FakeHost quiet;
    const std::string pci = "sys/devices/pci0000:00/0000:00:03.0";
    quiet.mkdir(pci + "/msi_irqs/37");
    block(quiet, "pci0000:00/0000:00:03.0", "virtio2/block/vdb", "254:16");
    vector(quiet, 37, "0,0", "1");
    CHECK_FALSE(disk_irq_cpus(makedev(254, 16), roots_of(quiet)));
}

TEST_CASE("disk irq: the workers' CPUs - the interrupt CPUs within the I/O CPUs, never a pinned vCPU's") {
    const CpuSet io{0, 1};
    CHECK(disk_worker_cpus(io, CpuSet{1}, CpuSet{}).to_string() == "1");
    CHECK(disk_worker_cpus(io, std::nullopt, CpuSet{}).to_string() == "0-1");
    CHECK(disk_worker_cpus(io, CpuSet{1}, CpuSet{1}).to_string() == "0-1");  // vCPU 0 pinned there
    CHECK(disk_worker_cpus(io, CpuSet{5}, CpuSet{}).to_string() == "0-1");   // outside the cpuset
    CHECK(disk_worker_cpus(CpuSet{4, 5, 6, 7}, CpuSet{1, 5}, CpuSet{4}).to_string() == "5");
    CHECK(disk_worker_cpus(CpuSet{4, 5, 6, 7}, CpuSet{4, 5, 6, 7}, CpuSet{4, 5}).to_string() == "6-7");
}
