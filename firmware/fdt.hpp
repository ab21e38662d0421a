// A flattened device tree (DTB) for the machine a Platform describes, built with libfdt.
//
// The shape follows QEMU microvm's x86 tree (hw/i386/microvm-dt.c) and Linux's x86
// bindings (arch/x86/kernel/devicetree.c):
//
//   / { compatible = "kiln,microvm", "linux,microvm"; #address-cells = #size-cells = 2;
//       interrupt-parent = <&ioapic>;
//       chosen { bootargs; stdout-path = "/serial@3f8"; }
//       cpus { cpu@N { device_type = "cpu"; reg = <APIC ID>; } ... }
//       memory@ADDR { device_type = "memory"; reg = <RAM range>; } ...  (one per RAM range)
//       lapic@fee00000 { compatible = "intel,ce4100-lapic"; reg; }
//       ioapic@fec00000 { compatible = "intel,ce4100-ioapic"; interrupt-controller;
//                         #interrupt-cells = <2>; reg; phandle; }
//       serial@3f8 { compatible = "ns16550a"; reg = <0 0x3f8 0 8>; interrupts = <4 3>; }
//       virtio_mmio@d0000000 { compatible = "virtio,mmio"; reg; interrupts = <5 3>;
//                              interrupt-parent = <&ioapic>; dma-coherent; } ... }
//
// The second interrupt cell is Linux's x86 IOAPIC type index: 3 is edge-triggered,
// active high (of_ioapic_type[3] in arch/x86/kernel/devicetree.c; QEMU microvm writes 0,
// which Linux programs as active low). Serial reg is the I/O port, as microvm writes it.
//
// How a kernel gets it: the bzImage loader passes it as SETUP_DTB setup_data
// (BootRequest::dtb). PVH has no DTB path: hvm_start_info carries no device tree.
// Linux on x86 reads the DTB only when built with CONFIG_OF (Debian's kernels are not),
// creates platform devices only below "isa"/"pci"/"intel,ce4100-cp" bus nodes, and
// registers the CPUs and IOAPIC from it as well as from ACPI: pass a DTB to a guest
// that uses it, not as a third description on top of ACPI for a stock kernel.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "firmware/platform.hpp"
#include "vmm/base/result.hpp"
#include "vmm/memory/guest_memory.hpp"

namespace kiln::firmware::fdt {

inline constexpr uint32_t kIoApicPhandle = 1;
inline constexpr uint32_t kIrqEdgeRising = 3; // the x86 IOAPIC type cell: edge, active high

// The DTB for `platform` (validated first); `memory_map`'s RAM ranges become memory
// nodes, `bootargs` (if not empty) /chosen/bootargs.
[[nodiscard]] Result<std::vector<uint8_t>> build(const Platform& platform, std::span<const MemoryRange> memory_map,
                                                 std::string_view bootargs = {});

// `kiln run --dump-dtb FILE`.
[[nodiscard]] Result<void> dump(std::span<const uint8_t> dtb, const std::string& path);

} // namespace kiln::firmware::fdt
