// What the firmware layer hands to the machine: the kernel is loaded into guest memory,
// the boot structures are written, and BootCpuState says how the boot vCPU must start.
//
// Firmware depends on vmm/memory only; it never includes KVM headers. The machine
// turns BootCpuState into KVM_SET_REGS / KVM_SET_SREGS.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "firmware/platform.hpp"
#include "vmm/base/result.hpp"
#include "vmm/memory/guest_memory.hpp"

namespace kiln::firmware {

enum class KernelFormat : uint8_t {
    BzImage, // Linux x86 boot protocol, 64-bit entry (startup_64)
    PvhElf,  // ELF with XEN_ELFNOTE_PHYS32_ENTRY, 32-bit protected-mode entry
};

[[nodiscard]] std::string_view to_string(KernelFormat f);

// A segment register as KVM's kvm_segment has it, without depending on KVM headers.
struct Segment {
    uint64_t base = 0;
    uint32_t limit = 0;
    uint16_t selector = 0;
    uint8_t type = 0;
    uint8_t present = 0, dpl = 0, db = 0, s = 0, l = 0, g = 0, avl = 0;
};

struct DescriptorTable {
    uint64_t base = 0;
    uint16_t limit = 0;
};

// The architectural state of the boot vCPU at the kernel's entry point.
struct BootCpuState {
    uint64_t rip = 0, rsp = 0, rbp = 0, rsi = 0, rbx = 0, rflags = 0x2;
    uint64_t cr0 = 0, cr3 = 0, cr4 = 0, efer = 0;
    Segment cs, ds, es, fs, gs, ss, tr, ldt;
    DescriptorTable gdt, idt;
};

struct BootRequest {
    std::span<const uint8_t> kernel;          // the kernel file's bytes
    std::span<const uint8_t> initrd;          // empty: no initrd
    std::string_view cmdline;
    uint32_t num_cpus = 1;
    // The machine the boot tables (MP table, ACPI) describe. Null: Platform::standard(
    // num_cpus), no virtio devices. When set, its num_cpus must equal num_cpus.
    const Platform* platform = nullptr;
    // Write the ACPI tables at layout::kAcpiTables and point the kernel at the RSDP:
    // boot_params.acpi_rsdp_addr (boot protocol 2.14+; older kernels find it by scanning
    // 0xe0000-0xfffff) or hvm_start_info.rsdp_paddr. The MP table is written either way.
    bool acpi = false;
    // A flattened device tree to hand the kernel as SETUP_DTB setup_data at
    // layout::kSetupData (bzImage with boot protocol 2.09+). Empty: none. PVH has no DTB
    // path: a non-empty dtb with a PVH kernel is an error.
    std::span<const uint8_t> dtb = {};
};

struct BootInfo {
    KernelFormat format = KernelFormat::BzImage;
    BootCpuState cpu;
    // Guest-physical range of the loaded kernel. For a bzImage, kernel_end includes the
    // room it decompresses into (init_size, at pref_address when that is higher).
    uint64_t kernel_start = 0, kernel_end = 0;
    uint64_t initrd_start = 0, initrd_size = 0;  // 0 size: none
    uint64_t acpi_rsdp = 0;    // the RSDP's address, 0 without ACPI
    uint64_t setup_data = 0;   // bzImage: head of the setup_data list (boot_params.hdr.setup_data), 0: none
};

// Detects the format from the file's contents, loads the kernel, initrd and command
// line into `mem`, writes the boot structures (boot_params/e820 or hvm_start_info,
// the MP table, the ACPI tables, setup_data, boot GDT and page tables) and returns the
// boot vCPU state.
// Every failure is one clear message ("not a bzImage or PVH ELF kernel", "initrd of
// 900 MiB does not fit below ...").
[[nodiscard]] Result<BootInfo> load_kernel(const GuestMemory& mem, const BootRequest& req);

} // namespace kiln::firmware
