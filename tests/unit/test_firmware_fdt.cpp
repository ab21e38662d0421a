// The device tree from the machine description, as `dtc -I dtb -O dts` reads it, and
// its way to a bzImage kernel: SETUP_DTB setup_data linked from boot_params.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "firmware/boot.hpp"
#include "firmware/boot_params.hpp"
#include "firmware/fdt.hpp"
#include "test_firmware_acpi_tools.hpp"
#include "test_firmware_images.hpp"

using namespace kiln;
using namespace kiln::firmware;
using namespace kiln::test;

namespace {


// dtc's view of a DTB, whitespace squeezed; fails the test on any dtc warning.
std::string decompile(const std::vector<uint8_t>& dtb) {
    REQUIRE_MESSAGE(have_tool("dtc"), "dtc not found: install device-tree-compiler (scripts/install-deps)");
    ScratchDir dir;
    const auto file = dir.path / "kiln.dtb";
    REQUIRE(fdt::dump(dtb, file.string()));
    const auto r = run_tool("dtc -I dtb -O dts '" + file.string() + "'");
    REQUIRE_MESSAGE(r.status == 0, r.out);
    CHECK_MESSAGE(r.out.find("Warning") == std::string::npos, r.out);
    return squeeze(r.out);
}

} // namespace

TEST_CASE("FDT: dtc reads the virtio,mmio nodes, CPUs, memory, IOAPIC and serial as built") {
    const auto p = platform_with(2, 3);
    auto mem = make_memory(256 * MiB);
    auto dtb = fdt::build(p, mem.memory_map(), "console=ttyS0 root=/dev/vda");
    REQUIRE_MESSAGE(dtb, dtb.error().message());
    const std::string dts = decompile(*dtb);

    // dtc 1.6 prints a string list as one string with \0 separators.
    CHECK(dts.find("/ { compatible = \"kiln,microvm\\0linux,microvm\"; model = \"Kiln microVM\"; "
                   "#address-cells = <0x02>; #size-cells = <0x02>; interrupt-parent = <0x01>;") != std::string::npos);
    CHECK(dts.find("chosen { bootargs = \"console=ttyS0 root=/dev/vda\"; stdout-path = \"/serial@3f8\"; };") !=
          std::string::npos);
    CHECK(dts.find("cpus { #address-cells = <0x01>; #size-cells = <0x00>; "
                   "cpu@0 { device_type = \"cpu\"; reg = <0x00>; }; "
                   "cpu@1 { device_type = \"cpu\"; reg = <0x01>; }; };") != std::string::npos);
    // One memory node per RAM range of the map: below the EBDA, and from 1 MiB.
    CHECK(dts.find("memory@0 { device_type = \"memory\"; reg = <0x00 0x00 0x00 0x9f000>; };") != std::string::npos);
    CHECK(dts.find(fmt::format("memory@100000 {{ device_type = \"memory\"; reg = <0x00 0x100000 0x00 {:#x}>; }};",
                               low_ram_end_for(256 * MiB) - layout::kHighMemory)) != std::string::npos);
    CHECK(dts.find("lapic@fee00000 { compatible = \"intel,ce4100-lapic\"; reg = <0x00 0xfee00000 0x00 0x1000>; };") !=
          std::string::npos);
    CHECK(dts.find("ioapic@fec00000 { compatible = \"intel,ce4100-ioapic\"; interrupt-controller; "
                   "#interrupt-cells = <0x02>; #address-cells = <0x00>; reg = <0x00 0xfec00000 0x00 0x1000>; "
                   "phandle = <0x01>; };") != std::string::npos);
    CHECK(dts.find("serial@3f8 { compatible = \"ns16550a\"; reg = <0x00 0x3f8 0x00 0x08>; "
                   "clock-frequency = <0x1c2000>; interrupts = <0x04 0x03>; };") != std::string::npos);
    for (uint32_t i = 0; i < 3; ++i) {
        const auto node = fmt::format("virtio_mmio@{:x} {{ compatible = \"virtio,mmio\"; reg = <0x00 {:#x} 0x00 0x1000>; "
                                      "interrupts = <{:#04x} 0x03>; interrupt-parent = <0x01>; dma-coherent; }};",
                                      0xd0000000 + i * 0x1000, 0xd0000000 + i * 0x1000, 5 + i);
        CHECK_MESSAGE(dts.find(node) != std::string::npos, node);
    }
    size_t nodes = 0;
    for (size_t at = 0; (at = dts.find("\"virtio,mmio\"", at)) != std::string::npos; ++at) ++nodes;
    CHECK(nodes == 3);
}

TEST_CASE("FDT: no bootargs, no serial, many vCPUs, every virtio slot") {
    auto p = platform_with(254, layout::kVirtioMmioMaxDevices);
    p.com1.reset();
    auto mem = make_memory(64 * MiB);
    auto dtb = fdt::build(p, mem.memory_map());
    REQUIRE_MESSAGE(dtb, dtb.error().message());
    const std::string dts = decompile(*dtb);
    CHECK(dts.find("chosen { };") != std::string::npos);
    CHECK(dts.find("serial@") == std::string::npos);
    CHECK(dts.find("cpu@fd { device_type = \"cpu\"; reg = <0xfd>; };") != std::string::npos);
    CHECK(dts.find("virtio_mmio@d0012000 { compatible = \"virtio,mmio\"; reg = <0x00 0xd0012000 0x00 0x1000>; "
                   "interrupts = <0x17 0x03>;") != std::string::npos);

    auto bad = platform_with(1, 1);
    bad.virtio_mmio[0].size = 0;
    auto r = fdt::build(bad, mem.memory_map());
    REQUIRE_FALSE(r);
    CHECK(r.error().message() == "device tree: virtio-mmio device 0: window size 0x0 is not a non-zero multiple of 0x200");
}

TEST_CASE("bzImage: a DTB goes to the kernel as SETUP_DTB setup_data linked from boot_params") {
    const auto p = platform_with(1, 2);
    auto mem = make_memory(64 * MiB);
    auto dtb = fdt::build(p, mem.memory_map(), "console=ttyS0");
    REQUIRE(dtb);
    const auto img = make_bzimage(); // protocol 2.15
    BootRequest req{img, {}, "console=ttyS0", 1, &p};
    req.dtb = *dtb;
    auto r = load_kernel(mem, req);
    REQUIRE_MESSAGE(r, r.error().message());
    CHECK(r->setup_data == layout::kSetupData);
    const auto bp = guest_read<linux_boot::BootParams>(mem, layout::kZeroPage);
    CHECK(v(bp.hdr.setup_data) == layout::kSetupData);
    const auto node = guest_read<linux_boot::SetupData>(mem, layout::kSetupData);
    CHECK(v(node.next) == 0);       // the list's only node
    CHECK(v(node.type) == 2);       // SETUP_DTB
    CHECK(v(node.len) == dtb->size());
    std::vector<uint8_t> got(dtb->size());
    REQUIRE(mem.read(GuestAddress(layout::kSetupData + sizeof(linux_boot::SetupData)), got));
    CHECK(got == *dtb);
    CHECK(layout::kSetupData + sizeof(linux_boot::SetupData) + dtb->size() <= layout::kSetupDataEnd);
    // The setup_data area is usable RAM the kernel reserves itself once it has read it.
    bool in_ram = false;
    for (const auto& m : mem.memory_map())
        in_ram |= m.kind == MemoryRange::Kind::Ram && m.start <= layout::kSetupData &&
                  layout::kSetupDataEnd <= m.end();
    CHECK(in_ram);
    // It decompiles back from guest memory.
    CHECK(decompile(got).find("virtio_mmio@d0001000") != std::string::npos);

    SUBCASE("without a DTB there is no list, whatever the image's header held") {
        BzOptions o;
        o.setup_data = 0x12345678;
        const auto img2 = make_bzimage(o);
        auto mem2 = make_memory(64 * MiB);
        auto r2 = load_kernel(mem2, BootRequest{img2, {}, "x", 1, &p});
        REQUIRE(r2);
        CHECK(r2->setup_data == 0);
        CHECK(v(guest_read<linux_boot::BootParams>(mem2, layout::kZeroPage).hdr.setup_data) == 0);
    }
    SUBCASE("a DTB larger than the setup_data area is refused") {
        std::vector<uint8_t> huge(layout::kSetupDataEnd - layout::kSetupData, 0xd0);
        BootRequest big{img, {}, "x", 1, &p};
        big.dtb = huge;
        auto mem3 = make_memory(64 * MiB);
        auto r3 = load_kernel(mem3, big);
        REQUIRE_FALSE(r3);
        CHECK(r3.error().message() ==
              "writing setup_data: setup_data of 393216 bytes (type 2) does not fit in [0x30000, 0x90000)");
    }
    SUBCASE("PVH has no DTB path") {
        const auto elf = make_pvh_elf();
        BootRequest pvh{elf, {}, "x", 1, &p};
        pvh.dtb = *dtb;
        auto mem4 = make_memory(64 * MiB);
        auto r4 = load_kernel(mem4, pvh);
        REQUIRE_FALSE(r4);
        CHECK(r4.error().message().find("a device tree cannot be passed to a PVH kernel") == 0);
    }
}
