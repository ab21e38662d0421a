/* GDT TSS descriptor, TSS (RSP0 for traps from ring 3) and the IDT. The GDT
 * itself is static data in entry.S because the entry code loads it. */
#include "kernel/kernel.h"
#include "lib/string.h"

struct tss64 {
    uint32_t reserved0;
    uint64_t rsp[3];
    uint64_t reserved1;
    uint64_t ist[7];
    uint64_t reserved2;
    uint16_t reserved3;
    uint16_t iomap_base;
} __attribute__((packed));

struct idt_gate {
    uint16_t offset_lo;
    uint16_t selector;
    uint8_t ist;
    uint8_t type_attr;
    uint16_t offset_mid;
    uint32_t offset_hi;
    uint32_t reserved;
} __attribute__((packed));

_Static_assert(sizeof(struct tss64) == 104, "TSS layout");
_Static_assert(sizeof(struct idt_gate) == 16, "IDT gate layout");

extern uint64_t gdt[];

static struct tss64 tss __attribute__((aligned(16)));
static struct idt_gate idt[256] __attribute__((aligned(16)));

static void set_gate(unsigned vector, uint64_t handler)
{
    struct idt_gate *g = &idt[vector];
    g->offset_lo = (uint16_t)handler;
    g->selector = SEL_KCODE64;
    g->ist = 0;
    g->type_attr = 0x8e;            /* present, DPL 0, 64-bit interrupt gate */
    g->offset_mid = (uint16_t)(handler >> 16);
    g->offset_hi = (uint32_t)(handler >> 32);
    g->reserved = 0;
}

void cpu_tables_init(void)
{
    /* No I/O bitmap: ring 3 port I/O always faults and is emulated. */
    tss.rsp[0] = (uint64_t)kstack_top;
    tss.iomap_base = sizeof tss;

    uint64_t base = (uint64_t)&tss, limit = sizeof tss - 1;
    gdt[SEL_TSS / 8] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89ULL << 40) |
                       ((limit >> 16 & 0xf) << 48) | ((base >> 24 & 0xff) << 56);
    gdt[SEL_TSS / 8 + 1] = base >> 32;
    __asm__ volatile("ltr %w0" : : "r"(SEL_TSS));

    /* Vectors without a gate stay not-present: they raise #NP and are reported. */
    for (unsigned v = 0; v < 32; v++)
        set_gate(v, trap_stub_table[v]);
    set_gate(32, (uint64_t)timer_stub);
    set_gate(0xff, (uint64_t)spurious_stub);

    struct __attribute__((packed)) {
        uint16_t limit;
        uint64_t base;
    } idtr = { sizeof idt - 1, (uint64_t)idt };
    __asm__ volatile("lidt %0" : : "m"(idtr));
}
