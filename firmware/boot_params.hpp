// The Linux x86 boot protocol structures: setup_header and boot_params (the "zero page").
//
// Written from Documentation/arch/x86/boot.rst and arch/x86/include/uapi/asm/bootparam.h
// rather than included, so firmware/ needs no kernel headers. Offsets are the protocol's
// (relative to the start of the image / boot_params) and are pinned by static_asserts:
// a wrong field here would be silently misread by the guest.
#pragma once

#include <cstddef>
#include <cstdint>

namespace kiln::firmware::linux_boot {

inline constexpr uint32_t kHeaderMagic = 0x53726448; // "HdrS" read as a little-endian u32
inline constexpr uint16_t kBootFlag = 0xaa55;
inline constexpr uint64_t kSetupHeaderOffset = 0x1f1;  // in the image and in boot_params
inline constexpr uint64_t kHeaderMagicOffset = 0x202;
inline constexpr uint64_t kBootFlagOffset = 0x1fe;
inline constexpr uint64_t kJumpOffset = 0x201;         // header ends at 0x202 + this byte
inline constexpr uint64_t kSectorSize = 512;
inline constexpr uint8_t kDefaultSetupSects = 4;       // setup_sects 0 means 4 (protocol)

inline constexpr uint16_t kMinVersion = 0x020c;        // 2.12: xloadflags, XLF_KERNEL_64
inline constexpr uint16_t kSetupDataVersion = 0x0209;  // 2.09: hdr.setup_data
inline constexpr uint16_t kAcpiRsdpVersion = 0x020e;   // 2.14: boot_params.acpi_rsdp_addr
inline constexpr uint64_t kStartup64Offset = 0x200;    // 64-bit entry, from the payload start

// loadflags
inline constexpr uint8_t kLoadedHigh = 0x01;
inline constexpr uint8_t kCanUseHeap = 0x80;
// xloadflags
inline constexpr uint16_t kXlfKernel64 = 0x0001;
inline constexpr uint16_t kXlfCanBeLoadedAbove4G = 0x0002;

inline constexpr uint8_t kLoaderTypeUndefined = 0xff;  // "no assigned loader id"
// heap_end_ptr: end of the real-mode setup heap minus 0x200, the value boot.rst's
// example uses. Unused on the 64-bit entry, but the protocol asks a loader that sets
// CAN_USE_HEAP to fill it.
inline constexpr uint16_t kHeapEndPtr = 0xe000 - 0x200;
inline constexpr uint32_t kDefaultInitrdAddrMax = 0x37ffffff; // before protocol 2.03

inline constexpr uint32_t kE820Ram = 1;
inline constexpr uint32_t kE820Reserved = 2;
inline constexpr size_t kE820MaxEntries = 128;          // E820_MAX_ENTRIES_ZEROPAGE

struct [[gnu::packed]] SetupHeader {
    uint8_t setup_sects;
    uint16_t root_flags;
    uint32_t syssize;
    uint16_t ram_size;
    uint16_t vid_mode;
    uint16_t root_dev;
    uint16_t boot_flag;
    uint16_t jump;
    uint32_t header;
    uint16_t version;
    uint32_t realmode_swtch;
    uint16_t start_sys_seg;
    uint16_t kernel_version;
    uint8_t type_of_loader;
    uint8_t loadflags;
    uint16_t setup_move_size;
    uint32_t code32_start;
    uint32_t ramdisk_image;
    uint32_t ramdisk_size;
    uint32_t bootsect_kludge;
    uint16_t heap_end_ptr;
    uint8_t ext_loader_ver;
    uint8_t ext_loader_type;
    uint32_t cmd_line_ptr;
    uint32_t initrd_addr_max;
    uint32_t kernel_alignment;
    uint8_t relocatable_kernel;
    uint8_t min_alignment;
    uint16_t xloadflags;
    uint32_t cmdline_size;
    uint32_t hardware_subarch;
    uint64_t hardware_subarch_data;
    uint32_t payload_offset;
    uint32_t payload_length;
    uint64_t setup_data;
    uint64_t pref_address;
    uint32_t init_size;
    uint32_t handover_offset;
    uint32_t kernel_info_offset;
};

// Offsets in boot.rst are absolute (from the image start); the header starts at 0x1f1.
#define KILN_HDR_AT(field, abs) \
    static_assert(offsetof(SetupHeader, field) + kSetupHeaderOffset == (abs), #field)
KILN_HDR_AT(setup_sects, 0x1f1);
KILN_HDR_AT(boot_flag, 0x1fe);
KILN_HDR_AT(jump, 0x200);
KILN_HDR_AT(header, 0x202);
KILN_HDR_AT(version, 0x206);
KILN_HDR_AT(type_of_loader, 0x210);
KILN_HDR_AT(loadflags, 0x211);
KILN_HDR_AT(code32_start, 0x214);
KILN_HDR_AT(ramdisk_image, 0x218);
KILN_HDR_AT(ramdisk_size, 0x21c);
KILN_HDR_AT(heap_end_ptr, 0x224);
KILN_HDR_AT(cmd_line_ptr, 0x228);
KILN_HDR_AT(initrd_addr_max, 0x22c);
KILN_HDR_AT(kernel_alignment, 0x230);
KILN_HDR_AT(relocatable_kernel, 0x234);
KILN_HDR_AT(xloadflags, 0x236);
KILN_HDR_AT(cmdline_size, 0x238);
KILN_HDR_AT(hardware_subarch, 0x23c);
KILN_HDR_AT(payload_offset, 0x248);
KILN_HDR_AT(setup_data, 0x250);
KILN_HDR_AT(pref_address, 0x258);
KILN_HDR_AT(init_size, 0x260);
KILN_HDR_AT(kernel_info_offset, 0x268);
#undef KILN_HDR_AT
static_assert(sizeof(SetupHeader) == 0x26c - kSetupHeaderOffset);

// setup_data: a singly linked list of typed blobs, headed by hdr.setup_data (boot.rst,
// "Details of the setup_data"). Each node is this header followed by `len` bytes.
struct [[gnu::packed]] SetupData {
    uint64_t next;              // guest-physical address of the next node, 0 ends the list
    uint32_t type;
    uint32_t len;               // of the data after this header
};
static_assert(sizeof(SetupData) == 16);
inline constexpr uint32_t kSetupDtb = 2;

struct [[gnu::packed]] E820Entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type;
};
static_assert(sizeof(E820Entry) == 20);

// boot_params: only the fields a 64-bit loader fills are named; the rest is padding
// that stays zero.
struct [[gnu::packed]] BootParams {
    uint8_t screen_info[0x40];
    uint8_t apm_bios_info[0x14];
    uint8_t pad2[4];
    uint64_t tboot_addr;
    uint8_t ist_info[0x10];
    uint64_t acpi_rsdp_addr;
    uint8_t pad3[8];
    uint8_t hd0_info[16];
    uint8_t hd1_info[16];
    uint8_t sys_desc_table[0x10];
    uint8_t olpc_ofw_header[0x10];
    uint32_t ext_ramdisk_image;
    uint32_t ext_ramdisk_size;
    uint32_t ext_cmd_line_ptr;
    uint8_t pad4[112];
    uint32_t cc_blob_address;
    uint8_t edid_info[0x80];
    uint8_t efi_info[0x20];
    uint32_t alt_mem_k;
    uint32_t scratch;
    uint8_t e820_entries;
    uint8_t eddbuf_entries;
    uint8_t edd_mbr_sig_buf_entries;
    uint8_t kbd_status;
    uint8_t secure_boot;
    uint8_t pad5[2];
    uint8_t sentinel;
    uint8_t pad6[1];
    SetupHeader hdr;
    uint8_t pad7[0x290 - 0x1f1 - sizeof(SetupHeader)];
    uint32_t edd_mbr_sig_buffer[16];
    E820Entry e820_table[kE820MaxEntries];
    uint8_t pad8[48];
    uint8_t eddbuf[0x1ec];
    uint8_t pad9[276];
};

static_assert(offsetof(BootParams, acpi_rsdp_addr) == 0x070);
static_assert(offsetof(BootParams, ext_ramdisk_image) == 0x0c0);
static_assert(offsetof(BootParams, ext_ramdisk_size) == 0x0c4);
static_assert(offsetof(BootParams, ext_cmd_line_ptr) == 0x0c8);
static_assert(offsetof(BootParams, cc_blob_address) == 0x13c);
static_assert(offsetof(BootParams, alt_mem_k) == 0x1e0);
static_assert(offsetof(BootParams, e820_entries) == 0x1e8);
static_assert(offsetof(BootParams, sentinel) == 0x1ef);
static_assert(offsetof(BootParams, hdr) == kSetupHeaderOffset);
static_assert(offsetof(BootParams, edd_mbr_sig_buffer) == 0x290);
static_assert(offsetof(BootParams, e820_table) == 0x2d0);
static_assert(offsetof(BootParams, eddbuf) == 0xd00);
static_assert(sizeof(BootParams) == 0x1000);

} // namespace kiln::firmware::linux_boot
