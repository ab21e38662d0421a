/*
 * bzImage setup sectors: the Linux boot-protocol header (at 0x1f1) and a
 * small real-mode stub for loaders that enter through the 16-bit entry
 * point (setup segment + 0x20 : 0), as QEMU's option ROMs and qboot do.
 *
 * Loaders that use the 32-bit or 64-bit boot protocol (Kiln) never run any of
 * this; they read the header, build boot_params themselves and jump to
 * code32_start (0x100000) or code32_start + 0x200.
 *
 * The first 4 KiB of this file double as boot_params ("zero page") when the
 * 16-bit entry is used, so the stub code lives at 0x1000 and up, out of the
 * way of the e820 table it fills in at 0x2d0.
 *
 * Fields patched by tools/mkbzimage.c: setup_sects, syssize, init_size.
 */
#include "boot/layout.h"

#define SETUP_SECTS     8               /* 1 + 8 sectors = 4.5 KiB */
#define BP_E820_ENTRIES 0x1e8
#define BP_E820_TABLE   0x2d0
#define E820_MAX        128
#define SMAP            0x534d4150

        .section .setup, "ax", @progbits
        .code16
        .globl  _setup_start
_setup_start:
        .org    0x1f1
setup_sects:    .byte   SETUP_SECTS
root_flags:     .word   0
syssize:        .long   0               /* patched: payload size / 16 */
ram_size:       .word   0
vid_mode:       .word   0xffff          /* NORMAL_VGA */
root_dev:       .word   0
boot_flag:      .word   0xaa55
        .org    0x200
jump:           .byte   0xeb, start_of_setup - 1f
1:
header:         .ascii  "HdrS"
version:        .word   0x020c          /* boot protocol 2.12 */
realmode_swtch: .long   0
start_sys_seg:  .word   0x1000
kernel_version: .word   version_string - 0x200
type_of_loader: .byte   0
loadflags:      .byte   0x01            /* LOADED_HIGH */
setup_move_size: .word  0x8000
code32_start:   .long   IMAGE_BASE
ramdisk_image:  .long   0
ramdisk_size:   .long   0
bootsect_kludge: .long  0
heap_end_ptr:   .word   0
ext_loader_ver: .byte   0
ext_loader_type: .byte  0
cmd_line_ptr:   .long   0
initrd_addr_max: .long  0x7fffffff
kernel_alignment: .long 0x200000
relocatable_kernel: .byte 0             /* load at 0x100000 exactly */
min_alignment:  .byte   21
xloadflags:     .word   0x0001          /* XLF_KERNEL_64: 64-bit entry at +0x200 */
cmdline_size:   .long   4095
hardware_subarch: .long 0
hardware_subarch_data: .quad 0
payload_offset: .long   0
payload_length: .long   0
setup_data:     .quad   0
pref_address:   .quad   IMAGE_BASE
init_size:      .long   0               /* patched: memory needed from 0x100000 */
handover_offset: .long  0
kernel_info_offset: .long 0
        /* 0x26c..0x290 is padding in boot_params. */
start_of_setup:
        jmp     real_mode_stub
version_string: .asciz  "kiln-testguest"

/* ---- the stub, out of boot_params' way ---- */
        .org    0x1000
real_mode_stub:
        cli
        cld
        movw    %cs, %ax                /* CS = setup segment + 0x20 */
        subw    $0x20, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %ss
        movw    $0x8000, %sp            /* setup + heap area, see boot.rst */

        /* Memory map from the BIOS (int 0x15, eax=0xe820) into boot_params. */
        xorl    %ebx, %ebx
        movw    $BP_E820_TABLE, %di
        xorw    %bp, %bp
2:      movl    $0xe820, %eax
        movl    $20, %ecx
        movl    $SMAP, %edx
        int     $0x15
        jc      3f
        cmpl    $SMAP, %eax
        jne     3f
        incw    %bp
        addw    $20, %di
        cmpw    $E820_MAX, %bp
        jae     3f
        testl   %ebx, %ebx
        jnz     2b
3:      movw    %bp, %ax
        movb    %al, BP_E820_ENTRIES

        /* ESI = linear address of boot_params (= this setup segment). */
        xorl    %esi, %esi
        movw    %ds, %si
        shll    $4, %esi
        leal    stub_gdt(%esi), %eax
        movl    %eax, stub_gdtr + 2
        leal    stub_pm32(%esi), %eax
        movl    %eax, stub_farptr
        lgdtl   stub_gdtr
        movl    %cr0, %eax
        orl     $1, %eax
        movl    %eax, %cr0
        ljmpl   *stub_farptr

        .code32
stub_pm32:                              /* __BOOT_DS = 0x18 */
        movl    $0x18, %eax
        movl    %eax, %ds
        movl    %eax, %es
        movl    %eax, %ss
        movl    %eax, %fs
        movl    %eax, %gs
        xorl    %ebp, %ebp
        xorl    %edi, %edi
        xorl    %ebx, %ebx
        jmp     *0x214(%esi)            /* code32_start, ESI = boot_params */

        .p2align 3
stub_gdt:
        .quad   0
        .quad   0
        .quad   0x00cf9a000000ffff      /* 0x10 __BOOT_CS */
        .quad   0x00cf92000000ffff      /* 0x18 __BOOT_DS */
stub_gdt_end:
stub_gdtr:
        .word   stub_gdt_end - stub_gdt - 1
        .long   0                       /* patched at run time */
stub_farptr:
        .long   0                       /* patched at run time */
        .word   0x10

        .org    (SETUP_SECTS + 1) * 512
