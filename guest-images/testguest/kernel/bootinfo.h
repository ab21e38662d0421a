/* What ring-0 setup learned about the machine, read by the ring-3 jobs.
 *
 * Ring-0 setup copies the command line and the memory map out of the
 * loader's structures (PVH start_info or Linux boot_params) into this one
 * object in .bss first, so nothing the loader placed in low memory is needed
 * after that (the AP trampoline reuses low memory). */
#pragma once
#include "lib/types.h"

#define CMDLINE_MAX 4096
#define MEMMAP_MAX 128

#define MEM_RAM 1        /* e820 / hvm_memmap type 1 */
#define MEM_RESERVED 2

struct mem_region {
    uint64_t addr;
    uint64_t size;
    uint32_t type;
};

struct bootinfo {
    uint32_t kind;                 /* BOOT_PVH / BOOT_BZIMAGE32 / BOOT_BZIMAGE64 */
    char cmdline[CMDLINE_MAX];     /* NUL-terminated copy */
    uint32_t memmap_entries;
    struct mem_region memmap[MEMMAP_MAX];
    bool memmap_fallback;          /* loader gave none: only low RAM + image assumed */
    bool cmdline_truncated;
    uint64_t rsdp;                 /* ACPI RSDP from the loader, 0 if none */

    uint64_t image_start;          /* [image_start, image_end): the guest itself */
    uint64_t image_end;            /* incl. .bss, stacks and page tables */
    uint64_t map_limit;            /* addresses >= this are not mapped (pool/512 GiB cap) */

    /* CPUID as the VMM configured it (read in ring 0: native CPUID in ring 3
     * may show the host's CPUID on kvm_pvm). */
    char hv_signature[13];         /* CPUID 0x40000000, "" if none */
    uint32_t hv_max_leaf;

    uint64_t tsc_khz;
    const char *tsc_source;        /* "cpuid-0x40000010", "cpuid-0x15", "cpuid-0x16", "pit", "lapic" */
    uint64_t lapic_bus_khz;        /* LAPIC timer input clock */
    uint64_t lapic_base;
};

extern struct bootinfo boot;

/* Linker-script symbols. */
extern char __image_start[], __image_end[];
