/* The floor: the least a VMM can do on /dev/kvm. Create a VM, give it one 128 MiB
 * anonymous memslot (the size the startup benchmark gives every guest), one vCPU in
 * real mode, and run a 16-byte guest that writes "OK" to COM1 and its status (0) to the
 * debug-exit port 0x501. Exit status: the guest's status, or 1 on any failure.
 * No device model, no error context: whatever a real VMM costs above this is its own.
 *
 * Built a second time with -DFLOOR_IRQCHIP (kiln_bench_floor_irqchip): the same plus the
 * in-kernel irqchip and PIT that Kiln's machine must have (issue 2, item 3), to show
 * what they alone cost: on kvm_pvm mostly at VM teardown (SRCU grace periods). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define MEM_SIZE (128UL << 20)
#define ENTRY 0x1000

static const uint8_t guest[] = {
    0xba, 0xf8, 0x03, /* mov dx, 0x3f8  */
    0xb0, 'O',        /* mov al, 'O'    */
    0xee,             /* out dx, al     */
    0xb0, 'K',        /* mov al, 'K'    */
    0xee,             /* out dx, al     */
    0xba, 0x01, 0x05, /* mov dx, 0x501  */
    0x30, 0xc0,       /* xor al, al     */
    0xee,             /* out dx, al     */
    0xf4,             /* hlt            */
};

static int fail(const char *what) { perror(what); return 1; }

int main(void) {
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) return fail("open /dev/kvm");
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0) return fail("KVM_CREATE_VM");
    uint8_t *mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) return fail("mmap guest memory");
    memcpy(mem + ENTRY, guest, sizeof guest);
    struct kvm_userspace_memory_region region = {
        .slot = 0, .guest_phys_addr = 0, .memory_size = MEM_SIZE, .userspace_addr = (uintptr_t)mem};
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) return fail("KVM_SET_USER_MEMORY_REGION");
#ifdef FLOOR_IRQCHIP /* after the memslot: KVM_SET_USER_MEMORY_REGION is slower with an irqchip */
    if (ioctl(vm, KVM_CREATE_IRQCHIP, 0) < 0) return fail("KVM_CREATE_IRQCHIP");
    struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
    if (ioctl(vm, KVM_CREATE_PIT2, &pit) < 0) return fail("KVM_CREATE_PIT2");
#endif
    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (vcpu < 0) return fail("KVM_CREATE_VCPU");
    int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (run_size < 0) return fail("KVM_GET_VCPU_MMAP_SIZE");
    struct kvm_run *run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED) return fail("mmap kvm_run");

    struct kvm_sregs sregs;
    if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) return fail("KVM_GET_SREGS");
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) return fail("KVM_SET_SREGS");
    struct kvm_regs regs = {.rip = ENTRY, .rflags = 0x2};
    if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) return fail("KVM_SET_REGS");

    for (;;) {
        if (ioctl(vcpu, KVM_RUN, 0) < 0) return fail("KVM_RUN");
        if (run->exit_reason != KVM_EXIT_IO || run->io.direction != KVM_EXIT_IO_OUT) {
            fprintf(stderr, "floor: unexpected exit %u\n", run->exit_reason);
            return 1;
        }
        uint8_t byte = *((uint8_t *)run + run->io.data_offset);
        if (run->io.port == 0x501) return byte;
        if (run->io.port == 0x3f8 && write(STDOUT_FILENO, &byte, 1) != 1) return fail("write");
    }
}
