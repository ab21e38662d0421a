/* job=pio: self-test of the ring-3 port-I/O emulation (kernel/traps.S fast
 * path and kernel/pio_emul.c). Runs every decoded in/out form and checks
 * that RIP is stepped correctly and that AL/AX merge and EAX zero-extends;
 * the byte forms also round-trip a value through the master PIC's mask
 * register (port 0x21, 0xff again afterwards). Word and dword forms use
 * port 0x80 (POST codes; reads return whatever the VMM returns there).
 * Prints "pio: N of N forms ok", exit 0; a failure prints the form, exit 1. */
#include "jobs/jobs.h"
#include "lib/console.h"
#include "user/user.h"

#define PATTERN 0x1122334455667788ULL

static unsigned failures;

static void check(const char *form, bool ok)
{
    if (!ok) {
        kprintf("pio: FAIL %s\n", form);
        failures++;
    }
}

int job_pio(void)
{
    uint64_t rax;
    uint16_t pic = 0x21, post = 0x80;
    unsigned forms = 0;

    /* byte forms, round trip through the PIC mask */
    __asm__ volatile("outb %%al, %%dx" : : "a"(0xfb), "d"(pic));                 /* EE */
    rax = PATTERN;
    __asm__ volatile("inb %%dx, %%al" : "+a"(rax) : "d"(pic));                   /* EC */
    check("out dx,al / in al,dx", rax == ((PATTERN & ~0xffULL) | 0xfb));
    __asm__ volatile("outb %%al, $0x21" : : "a"(0xfd));                          /* E6 */
    rax = PATTERN;
    __asm__ volatile("inb $0x21, %%al" : "+a"(rax));                             /* E4 */
    check("out imm8,al / in al,imm8", rax == ((PATTERN & ~0xffULL) | 0xfd));
    __asm__ volatile("outb %%al, $0x21" : : "a"(0xff));
    forms += 4;

    /* word forms (0x66 prefix): AX merges */
    rax = PATTERN;
    __asm__ volatile("inw %%dx, %%ax" : "+a"(rax) : "d"(post));                  /* 66 ED */
    check("in ax,dx", (rax & ~0xffffULL) == (PATTERN & ~0xffffULL));
    rax = PATTERN;
    __asm__ volatile("inw $0x80, %%ax" : "+a"(rax));                             /* 66 E5 */
    check("in ax,imm8", (rax & ~0xffffULL) == (PATTERN & ~0xffffULL));
    __asm__ volatile("outw %%ax, %%dx" : : "a"(0x1234), "d"(post));              /* 66 EF */
    __asm__ volatile("outw %%ax, $0x80" : : "a"(0x1234));                        /* 66 E7 */
    forms += 4;

    /* dword forms: EAX zero-extends into RAX */
    rax = PATTERN;
    __asm__ volatile("inl %%dx, %%eax" : "+a"(rax) : "d"(post));                 /* ED */
    check("in eax,dx", (rax >> 32) == 0);
    rax = PATTERN;
    __asm__ volatile("inl $0x80, %%eax" : "+a"(rax));                            /* E5 */
    check("in eax,imm8", (rax >> 32) == 0);
    __asm__ volatile("outl %%eax, %%dx" : : "a"(0x12345678), "d"(post));         /* EF */
    __asm__ volatile("outl %%eax, $0x80" : : "a"(0x12345678));                   /* E7 */
    forms += 4;

    /* reaching this line at all means every RIP was stepped right */
    kprintf("pio: %u of %u forms ok\n", forms - failures, forms);
    return failures ? EXIT_FAIL : EXIT_OK;
}
