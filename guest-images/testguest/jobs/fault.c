/* job=fault kind=pf|gp|ud|de|triple|emulation: make the guest fail on purpose.
 * pf, gp, ud, de raise a CPU exception in ring 3, to test the "unexpected
 * exception" path: ring 0 prints "testguest: exception N at rip=... err=..."
 * and exits with status 3.
 *   pf  read from an unmapped address (vector 14)
 *   gp  `hlt` in ring 3, a privileged instruction (vector 13)
 *   ud  `ud1`, an undefined opcode that is not the ud2 syscall (vector 6)
 *   de  divide by zero (vector 0)
 * triple and emulation end the VM in ways the VMM must report itself:
 *   triple     ring 0 loads an empty IDT and faults: a triple fault, which KVM
 *              reports as KVM_EXIT_SHUTDOWN
 *   emulation  `popcnt` reading MMIO (an address in the 32-bit hole that no
 *              device claims): an MMIO access has to be emulated by KVM, and
 *              KVM's instruction emulator has no POPCNT, so KVM_RUN returns
 *              KVM_EXIT_INTERNAL_ERROR (emulation failure) on any host */
#include "jobs/jobs.h"
#include "lib/console.h"
#include "lib/string.h"
#include "user/sys.h"
#include "user/user.h"

int job_fault(void)
{
    char kind[16];
    if (!arg_str("kind", "pf", kind, sizeof kind))
        return EXIT_USAGE;
    if (strcmp(kind, "pf") == 0) {
        volatile uint64_t *p = (volatile uint64_t *)GiB(1024);   /* above the 512 GiB map */
        (void)*p;
    } else if (strcmp(kind, "gp") == 0) {
        __asm__ volatile("hlt");
    } else if (strcmp(kind, "ud") == 0) {
        __asm__ volatile("ud1 %%eax, %%eax" ::: "memory");
    } else if (strcmp(kind, "de") == 0) {
        uint32_t eax = 1, edx = 0, zero = 0;
        __asm__ volatile("divl %2" : "+a"(eax), "+d"(edx) : "r"(zero));
    } else if (strcmp(kind, "triple") == 0) {
        sys_triple_fault();
    } else if (strcmp(kind, "emulation") == 0) {
        const volatile uint32_t *mmio = (const volatile uint32_t *)0xdf000000ULL;
        uint32_t n;
        __asm__ volatile("popcnt %1, %0" : "=r"(n) : "m"(*mmio));
        kprintf("fault: popcnt on MMIO was emulated (%u)\n", n);
        return EXIT_FAIL;
    } else {
        kprintf("testguest: bad value for kind: '%s' (expected pf, gp, ud, de, triple or emulation)\n", kind);
        return EXIT_USAGE;
    }
    kprintf("fault: no exception raised\n");
    return EXIT_FAIL;
}
