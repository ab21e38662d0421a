/* Constants shared by the assembly entry code and the C code.
 * Only #defines here: this header is included from .S files. */
#pragma once

/* How the guest was entered (first argument of kmain). */
#define BOOT_PVH        1   /* PVH: 32-bit, paging off, EBX = hvm_start_info */
#define BOOT_BZIMAGE32  2   /* Linux 32-bit boot protocol: ESI = boot_params */
#define BOOT_BZIMAGE64  3   /* Linux 64-bit boot protocol: RSI = boot_params */

/* GDT selectors (see gdt in entry.S). */
#define SEL_KCODE64     0x08
#define SEL_KDATA       0x10
#define SEL_KCODE32     0x18
#define SEL_UDATA       0x23    /* 0x20 | RPL 3 */
#define SEL_UCODE64     0x2b    /* 0x28 | RPL 3 */
#define SEL_TSS         0x30
#define GDT_ENTRIES     8       /* 6 descriptors + the 16-byte TSS one */

/* The image is linked and loaded here (Linux code32_start / pref_address). */
#define IMAGE_BASE      0x100000

/* Physical address the AP start-up trampoline is copied to (SIPI vector 0x08).
 * Below 0x9fc00, which the guest owns once it has copied its boot info. */
#define AP_TRAMPOLINE_BASE 0x8000

/* Page-table pages available to the final identity map (2 MiB pages):
 * one PML4, one PDPT, one PD per GiB that holds mapped memory. */
#define PT_POOL_PAGES   64

#define KSTACK_SIZE     16384
#define USTACK_SIZE     65536
