/*
 * Application-processor start-up code. kernel/lapic.c copies the bytes
 * between ap_trampoline_start and ap_trampoline_end to AP_TRAMPOLINE_BASE,
 * patches ap_cr3 and sends INIT-SIPI-SIPI with vector AP_TRAMPOLINE_BASE>>12.
 *
 * Each AP: real mode -> protected mode -> long mode (on the BSP's final page
 * tables), one locked increment of ap_checkin_count, then cli;hlt forever.
 * All of this is ring 0 and therefore emulated on kvm_pvm: keep it short.
 * Addresses are computed for the copy, not for where this is linked.
 */
#include "boot/layout.h"

#define TRAMP(sym) (AP_TRAMPOLINE_BASE + (sym) - ap_trampoline_start)

        .section .trampoline, "ax", @progbits
        .code16
        .globl  ap_trampoline_start, ap_trampoline_end, ap_cr3
ap_trampoline_start:
        cli
        cld
        movw    %cs, %ax
        movw    %ax, %ds
        lgdtl   ap_gdtr - ap_trampoline_start
        movl    %cr0, %eax
        orl     $1, %eax
        movl    %eax, %cr0
        ljmpl   $SEL_KCODE32, $TRAMP(ap_pm32)

        .code32
ap_pm32:
        movl    $SEL_KDATA, %eax
        movl    %eax, %ds
        movl    %eax, %es
        movl    %eax, %ss
        movl    %cr4, %eax
        orl     $0x20, %eax             /* PAE */
        movl    %eax, %cr4
        movl    TRAMP(ap_cr3), %eax
        movl    %eax, %cr3
        movl    $0xc0000080, %ecx       /* EFER.LME */
        rdmsr
        orl     $0x100, %eax
        wrmsr
        movl    %cr0, %eax
        orl     $0x80000000, %eax       /* PG */
        movl    %eax, %cr0
        ljmp    $SEL_KCODE64, $TRAMP(ap_lm64)

        .code64
ap_lm64:
        movabsq $ap_checkin_count, %rax
        lock incl (%rax)
1:      cli
        hlt
        jmp     1b

        .p2align 3
ap_gdtr:
        .word   GDT_ENTRIES * 8 - 1
        .long   gdt                     /* the BSP's GDT, below 4 GiB */
ap_cr3:
        .long   0
ap_trampoline_end:

        .section .bss
        .p2align 2
        .globl  ap_checkin_count
ap_checkin_count:
        .long   0
