/* Copy what the loader handed over (PVH start_info or Linux boot_params)
 * into `boot`. Loader structures are read once, here, and never again. */
#include "boot/layout.h"
#include "kernel/bootinfo.h"
#include "kernel/kernel.h"
#include "lib/string.h"

/* Xen include/public/arch-x86/hvm/start_info.h */
#define PVH_MAGIC 0x336ec578
struct hvm_start_info {
    uint32_t magic, version, flags, nr_modules;
    uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr;
    uint64_t memmap_paddr;          /* version >= 1 */
    uint32_t memmap_entries, reserved;
};
struct hvm_memmap_entry {
    uint64_t addr, size;
    uint32_t type, reserved;
};

/* Linux boot_params ("zero page") offsets, arch/x86/include/uapi/asm/bootparam.h */
#define BP_ACPI_RSDP 0x070
#define BP_EXT_CMD_LINE_PTR 0x0c8
#define BP_E820_ENTRIES 0x1e8
#define BP_CMD_LINE_PTR 0x228
#define BP_E820_TABLE 0x2d0
#define BP_E820_MAX 128
struct __attribute__((packed)) e820_entry {
    uint64_t addr, size;
    uint32_t type;
};

/* The 32-bit entries run on a boot map of 0..4 GiB only. */
static bool reachable(uint64_t pa)
{
    return pa != 0 && (boot.kind == BOOT_BZIMAGE64 || pa < GiB(4));
}

static void copy_cmdline(uint64_t pa)
{
    if (!reachable(pa))
        return;
    const char *s = (const char *)pa;
    size_t i = 0;
    for (; i < CMDLINE_MAX - 1 && s[i]; i++)
        boot.cmdline[i] = s[i];
    boot.cmdline[i] = 0;
    boot.cmdline_truncated = s[i] != 0;
}

static void add_region(uint64_t addr, uint64_t size, uint32_t type)
{
    if (size == 0 || boot.memmap_entries >= MEMMAP_MAX)
        return;
    struct mem_region *r = &boot.memmap[boot.memmap_entries++];
    r->addr = addr;
    r->size = size;
    r->type = type;
}

static void parse_pvh(uint64_t info)
{
    const struct hvm_start_info *si = (const void *)info;
    if (!reachable(info) || si->magic != PVH_MAGIC)
        return;
    copy_cmdline(si->cmdline_paddr);
    boot.rsdp = si->rsdp_paddr;
    if (si->version >= 1 && reachable(si->memmap_paddr)) {
        const struct hvm_memmap_entry *e = (const void *)si->memmap_paddr;
        for (uint32_t i = 0; i < si->memmap_entries; i++)
            add_region(e[i].addr, e[i].size, e[i].type);
    }
}

static void parse_boot_params(uint64_t info)
{
    if (!reachable(info))
        return;
    const uint8_t *bp = (const uint8_t *)info;
    uint64_t cmd = *(const uint32_t *)(bp + BP_CMD_LINE_PTR) |
                   (uint64_t)*(const uint32_t *)(bp + BP_EXT_CMD_LINE_PTR) << 32;
    copy_cmdline(cmd);
    boot.rsdp = *(const uint64_t *)(bp + BP_ACPI_RSDP);
    unsigned n = bp[BP_E820_ENTRIES];
    if (n > BP_E820_MAX)
        n = BP_E820_MAX;
    const struct e820_entry *e = (const void *)(bp + BP_E820_TABLE);
    for (unsigned i = 0; i < n; i++)
        add_region(e[i].addr, e[i].size, e[i].type);
}

void bootinfo_parse(uint32_t kind, uint64_t info)
{
    boot.kind = kind;
    boot.image_start = (uint64_t)__image_start;
    boot.image_end = (uint64_t)__image_end;
    if (kind == BOOT_PVH)
        parse_pvh(info);
    else
        parse_boot_params(info);
    if (boot.memmap_entries == 0) {
        /* No map at all: claim only what must exist, low RAM and the image. */
        boot.memmap_fallback = true;
        add_region(0, 0x9fc00, MEM_RAM);
        add_region(IMAGE_BASE, boot.image_end - IMAGE_BASE, MEM_RAM);
    }
}
