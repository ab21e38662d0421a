/* Port I/O on behalf of ring 3.
 *
 * On kvm_pvm a ring-3 `in`/`out` raises #GP whatever IOPL the iretq frame
 * asked for (see docs: kvm-here.md), so the #GP handler decodes the faulting
 * instruction, performs it in ring 0 (where KVM turns it into an ordinary
 * KVM_EXIT_IO or in-kernel device access) and steps over it. The TSS has no
 * I/O bitmap, so this is also what happens on hardware-virtualized hosts.
 *
 * Decoded forms (with an optional 0x66 operand-size prefix):
 *   E4 ib in al,imm8   E5 ib in eax/ax,imm8   EC in al,dx   ED in eax/ax,dx
 *   E6 ib out imm8,al  E7 ib out imm8,eax/ax  EE out dx,al  EF out dx,eax/ax
 * String I/O (ins/outs) is not emulated: it is reported as an exception. */
#include "kernel/kernel.h"
#include "lib/arch.h"

bool pio_emulate(struct trap_frame *f)
{
    if (f->err != 0)
        return false;                   /* a selector-related #GP, not I/O */
    const uint8_t *p = (const uint8_t *)f->rip;
    unsigned len = 0;
    bool opsize16 = false;
    if (p[0] == 0x66) {
        opsize16 = true;
        len++;
    }
    uint8_t op = p[len];
    uint16_t port;
    switch (op) {
    case 0xe4: case 0xe5: case 0xe6: case 0xe7:
        port = p[len + 1];
        len += 2;
        break;
    case 0xec: case 0xed: case 0xee: case 0xef:
        port = (uint16_t)f->rdx;
        len += 1;
        break;
    default:
        return false;
    }
    unsigned size = (op & 1) ? (opsize16 ? 2 : 4) : 1;
    if (op & 2) {                       /* out */
        if (size == 1)
            outb(port, (uint8_t)f->rax);
        else if (size == 2)
            outw(port, (uint16_t)f->rax);
        else
            outl(port, (uint32_t)f->rax);
    } else {                            /* in: AL/AX merge, EAX zero-extends */
        if (size == 1)
            f->rax = (f->rax & ~0xffULL) | inb(port);
        else if (size == 2)
            f->rax = (f->rax & ~0xffffULL) | inw(port);
        else
            f->rax = inl(port);
    }
    f->rip += len;
    return true;
}
