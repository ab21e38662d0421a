/*
 * Boot entry points of the Kiln test guest. One linked image, three ways in:
 *
 *   0x100000  startup_32   Linux 32-bit boot protocol (bzImage): protected
 *                          mode, paging off, flat segments, ESI = boot_params.
 *   0x100200  startup_64   Linux 64-bit boot protocol (bzImage, XLF_KERNEL_64):
 *                          long mode, identity-mapped paging, RSI = boot_params.
 *   (note)    pvh_start32  PVH (ELF note XEN_ELFNOTE_PHYS32_ENTRY): protected
 *                          mode, paging off, EBX = hvm_start_info.
 *
 * All three load the guest's own GDT, reach long mode (the 32-bit ones through
 * a boot identity map of 0..4 GiB) and call kmain(kind, info).
 *
 * Everything here runs in ring 0, which kvm_pvm emulates instruction by
 * instruction (about 1 us each): keep it short, and use no int/int3/xsave/
 * cmpxchg16b. That is also why nothing is cleared or computed at boot that can
 * be in the file instead: .bss is stored in the image as zeros (see
 * testguest.ld) and the boot page tables below are assembled, not built.
 */
#include "boot/layout.h"

/* ---- PVH ELF note: name "Xen", type 18 (PHYS32_ENTRY), 4-byte address ---- */
        .section .note.Xen, "a", @note
        .p2align 2
        .long   4                       /* namesz: "Xen\0" */
        .long   4                       /* descsz */
        .long   18                      /* XEN_ELFNOTE_PHYS32_ENTRY */
        .asciz  "Xen"
        .long   pvh_start32

/* ---- 32-bit entries: must fit below image offset 0x200 ---- */
        .section .boot32, "ax", @progbits
        .code32
        .globl  startup_32
startup_32:
        cli
        cld
        movl    $BOOT_BZIMAGE32, %edi
        jmp     common32                /* ESI = boot_params */

        .globl  pvh_start32
pvh_start32:
        cli
        cld
        movl    %ebx, %esi              /* ESI = hvm_start_info */
        movl    $BOOT_PVH, %edi

common32:
        movl    %edi, %ebp              /* kind, info: EDI/ESI are needed below */
        movl    %esi, %ebx
        lgdt    gdt_desc                /* 6 bytes read: limit + low 32 bits of base */
        ljmp    $SEL_KCODE32, $1f
1:      movl    $SEL_KDATA, %eax
        movl    %eax, %ds
        movl    %eax, %es
        movl    %eax, %ss
        xorl    %eax, %eax
        movl    %eax, %fs
        movl    %eax, %gs
        movl    $kstack_top, %esp

        movl    $boot_pml4, %eax
        movl    %eax, %cr3
        movl    %cr4, %eax
        orl     $0x20, %eax             /* PAE */
        movl    %eax, %cr4
        movl    $0xc0000080, %ecx       /* EFER.LME */
        rdmsr
        orl     $0x100, %eax
        wrmsr
        movl    %cr0, %eax
        orl     $0x80000001, %eax       /* PG | PE */
        movl    %eax, %cr0
        ljmp    $SEL_KCODE64, $long_from32

/* ---- 64-bit entry at image offset 0x200 (placed by the linker script) ---- */
        .section .boot64, "ax", @progbits
        .code64
        .globl  startup_64
startup_64:
        cli
        cld
        movl    $BOOT_BZIMAGE64, %edi   /* RSI = boot_params, from the loader */
        lgdt    gdt_desc(%rip)
        movl    $SEL_KDATA, %eax
        movl    %eax, %ds
        movl    %eax, %es
        movl    %eax, %ss
        xorl    %eax, %eax
        movl    %eax, %fs
        movl    %eax, %gs
        leaq    kstack_top(%rip), %rsp
        pushq   $SEL_KCODE64            /* reload CS with our own selector */
        leaq    1f(%rip), %rax
        pushq   %rax
        lretq
1:      jmp     call_kmain

long_from32:
        movl    %ebp, %edi              /* 32-bit moves zero-extend */
        movl    %ebx, %esi
call_kmain:
        leaq    kstack_top(%rip), %rsp
        xorl    %ebp, %ebp
        call    kmain
4:      cli
        hlt
        jmp     4b

/* ---- GDT (layout in layout.h; the TSS descriptor is filled in by cpu.c) ---- */
        .section .data
        .p2align 4
        .globl  gdt
gdt:
        .quad   0                       /* 0x00 null */
        .quad   0x00af9a000000ffff      /* 0x08 kernel code, 64-bit */
        .quad   0x00cf92000000ffff      /* 0x10 kernel data */
        .quad   0x00cf9a000000ffff      /* 0x18 kernel code, 32-bit */
        .quad   0x00cff2000000ffff      /* 0x20 user data (DPL 3) */
        .quad   0x00affa000000ffff      /* 0x28 user code, 64-bit (DPL 3) */
        .quad   0, 0                    /* 0x30 64-bit TSS */
gdt_end:
        .if gdt_end - gdt != GDT_ENTRIES * 8
        .error "GDT_ENTRIES in layout.h does not match the GDT"
        .endif
        .p2align 3
gdt_desc:
        .word   gdt_end - gdt - 1
        .quad   gdt

/* ---- page tables assembled into the image ----
 * boot_pml4 -> boot_pdpt -> boot_pd[0..2] (0..3 GiB) + mmio_pd (3..4 GiB):
 * the 32-bit entries' identity map of 0..4 GiB. mmio_pd (2 MiB pages, user,
 * uncached) is also the 3..4 GiB part of the final map built in paging.c. */
#define PG_TABLE 0x07                   /* P | RW | US */
#define PG_LARGE 0x87                   /* P | RW | US | PS */
#define PG_UC    0x18                   /* PWT | PCD */
        .section .data
        .p2align 12
boot_pml4:
        .quad   boot_pdpt + PG_TABLE
        .fill   511, 8, 0
boot_pdpt:
        .quad   boot_pd + PG_TABLE
        .quad   boot_pd + 4096 + PG_TABLE
        .quad   boot_pd + 8192 + PG_TABLE
        .quad   mmio_pd + PG_TABLE
        .fill   508, 8, 0
boot_pd:
        .set    pa, 0
        .rept   3 * 512
        .quad   pa + PG_LARGE
        .set    pa, pa + 0x200000
        .endr
        .globl  mmio_pd
mmio_pd:
        .rept   512
        .quad   pa + PG_LARGE + PG_UC
        .set    pa, pa + 0x200000
        .endr

/* ---- not in the file, never cleared: stacks and the page-table pool ---- */
        .section .noinit, "aw", @nobits
        .p2align 12
        .globl  pt_pool, kstack_top, ustack_top
pt_pool:        .skip PT_POOL_PAGES * 4096
kstack:         .skip KSTACK_SIZE
kstack_top:
ustack:         .skip USTACK_SIZE
ustack_top:
