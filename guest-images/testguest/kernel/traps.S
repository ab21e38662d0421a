/*
 * Interrupt/exception entry stubs and the drop to ring 3.
 *
 * Exceptions 0..31 build a struct trap_frame (kernel.h) and call
 * trap_dispatch(). Every instruction here is emulated on kvm_pvm (a ring-3
 * -> ring-0 -> ring-3 round trip through trap_common and C measured about
 * 200 us, a bare exception + iretq about 50 us), so the hot cases are
 * handled in a few instructions of assembly:
 *   #GP from ring 3 at `in al,dx` / `in eax,dx` / `out dx,al` / `out dx,eax`
 *       (EC ED EE EF, the forms the console and exit port use) runs the very
 *       same instruction with the very same registers, then steps over it;
 *       every other I/O form goes to pio_emulate() in C.
 *   the LAPIC timer (vector 32) counts a tick and writes EOI.
 * Spurious LAPIC interrupts (0xff) need no EOI.
 */
#include "boot/layout.h"

        .text
        .code64

.macro TRAP_NOERR n
trap_\n:
        pushq   $0
        pushq   $\n
        jmp     trap_common
.endm
.macro TRAP_ERR n
trap_\n:
        pushq   $\n
        jmp     trap_common
.endm

TRAP_NOERR 0
TRAP_NOERR 1
TRAP_NOERR 2
TRAP_NOERR 3
TRAP_NOERR 4
TRAP_NOERR 5
TRAP_NOERR 6
TRAP_NOERR 7
TRAP_ERR   8
TRAP_NOERR 9
TRAP_ERR   10
TRAP_ERR   11
TRAP_ERR   12
/* #GP: CPU pushed SS RSP RFLAGS CS RIP and an error code. */
trap_13:
        testb   $3, 16(%rsp)            /* CS: from ring 3? */
        jz      gp_slow
        pushq   %rsi
        movq    16(%rsp), %rsi          /* faulting RIP */
        movzbl  (%rsi), %esi
        cmpl    $0xee, %esi
        je      gp_out8
        cmpl    $0xec, %esi
        je      gp_in8
        cmpl    $0xef, %esi
        je      gp_out32
        cmpl    $0xed, %esi
        je      gp_in32
        popq    %rsi
gp_slow:
        pushq   $13
        jmp     trap_common
gp_out8:
        outb    %al, %dx
        jmp     gp_done
gp_in8:
        inb     %dx, %al
        jmp     gp_done
gp_out32:
        outl    %eax, %dx
        jmp     gp_done
gp_in32:
        inl     %dx, %eax
gp_done:
        popq    %rsi
        addq    $8, %rsp                /* error code */
        incq    (%rsp)                  /* RIP: all four forms are one byte */
        orq     $0x200, 16(%rsp)        /* RFLAGS.IF, see trap_dispatch() */
        iretq

TRAP_ERR   14
TRAP_NOERR 15
TRAP_NOERR 16
TRAP_ERR   17
TRAP_NOERR 18
TRAP_NOERR 19
TRAP_NOERR 20
TRAP_ERR   21
TRAP_NOERR 22
TRAP_NOERR 23
TRAP_NOERR 24
TRAP_NOERR 25
TRAP_NOERR 26
TRAP_NOERR 27
TRAP_NOERR 28
TRAP_ERR   29
TRAP_ERR   30
TRAP_NOERR 31

trap_common:
        pushq   %rax
        pushq   %rbx
        pushq   %rcx
        pushq   %rdx
        pushq   %rsi
        pushq   %rdi
        pushq   %rbp
        pushq   %r8
        pushq   %r9
        pushq   %r10
        pushq   %r11
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        movq    %rsp, %rdi              /* 22 quadwords: RSP stays 16-byte aligned */
        call    trap_dispatch
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %r11
        popq    %r10
        popq    %r9
        popq    %r8
        popq    %rbp
        popq    %rdi
        popq    %rsi
        popq    %rdx
        popq    %rcx
        popq    %rbx
        popq    %rax
        addq    $16, %rsp               /* vector, error code */
        iretq

        .globl  timer_stub
timer_stub:
        pushq   %rax
        incq    timer_ticks(%rip)
        movq    lapic_eoi_reg(%rip), %rax
        movl    $0, (%rax)
        popq    %rax
        iretq

        .globl  spurious_stub
spurious_stub:
        iretq

/* enter_user(entry, stack): iretq to ring 3 with IF=1 (so the LAPIC timer
 * reaches ring 3) and IOPL 0 (kvm_pvm forces it anyway). */
        .globl  enter_user
enter_user:
        movl    $SEL_UDATA, %eax
        movl    %eax, %ds
        movl    %eax, %es
        pushq   $SEL_UDATA
        pushq   %rsi
        pushq   $0x202
        pushq   $SEL_UCODE64
        pushq   %rdi
        xorl    %eax, %eax
        xorl    %ebx, %ebx
        xorl    %ecx, %ecx
        xorl    %edx, %edx
        xorl    %esi, %esi
        xorl    %edi, %edi
        xorl    %ebp, %ebp
        iretq

        .section .rodata
        .p2align 3
        .globl  trap_stub_table
trap_stub_table:
        .quad trap_0, trap_1, trap_2, trap_3, trap_4, trap_5, trap_6, trap_7
        .quad trap_8, trap_9, trap_10, trap_11, trap_12, trap_13, trap_14, trap_15
        .quad trap_16, trap_17, trap_18, trap_19, trap_20, trap_21, trap_22, trap_23
        .quad trap_24, trap_25, trap_26, trap_27, trap_28, trap_29, trap_30, trap_31

        .section .bss
        .p2align 3
        .globl  timer_ticks, lapic_eoi_reg
timer_ticks:    .quad 0
lapic_eoi_reg:  .quad 0
