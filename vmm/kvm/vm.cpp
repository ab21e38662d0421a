#include "vmm/kvm/vm.hpp"

#include <cerrno>
#include <sys/ioctl.h>

namespace kiln {

Result<Vm> Vm::create(const Kvm& kvm) {
    // KVM_CREATE_VM can fail with EINTR when a signal arrives during setup; retry.
    int fd;
    do {
        fd = ::ioctl(kvm.fd(), KVM_CREATE_VM, 0);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) return fail_errno("KVM_CREATE_VM");
    return Vm(Fd(fd));
}

Result<void> Vm::set_tss_addr(uint64_t addr) const {
    if (::ioctl(fd_.get(), KVM_SET_TSS_ADDR, static_cast<unsigned long>(addr)) < 0)
        return fail_errno("KVM_SET_TSS_ADDR");
    return {};
}

Result<void> Vm::set_identity_map_addr(uint64_t addr) const {
    __u64 a = addr;
    if (::ioctl(fd_.get(), KVM_SET_IDENTITY_MAP_ADDR, &a) < 0)
        return fail_errno("KVM_SET_IDENTITY_MAP_ADDR");
    return {};
}

Result<void> Vm::create_irqchip() const {
    if (::ioctl(fd_.get(), KVM_CREATE_IRQCHIP, 0) < 0) return fail_errno("KVM_CREATE_IRQCHIP");
    return {};
}

Result<void> Vm::create_pit2() const {
    kvm_pit_config cfg{};
    // The speaker port 0x61 is emulated as a dummy in the kernel: Linux reads it while
    // calibrating against the PIT, and a userspace exit per read would be pointless.
    cfg.flags = KVM_PIT_SPEAKER_DUMMY;
    if (::ioctl(fd_.get(), KVM_CREATE_PIT2, &cfg) < 0) return fail_errno("KVM_CREATE_PIT2");
    return {};
}

Result<void> Vm::set_memory_region(uint32_t slot, uint64_t guest_phys, uint64_t size, void* host,
                                   uint32_t flags) const {
    kvm_userspace_memory_region r{};
    r.slot = slot;
    r.flags = flags;
    r.guest_phys_addr = guest_phys;
    r.memory_size = size;
    r.userspace_addr = reinterpret_cast<uint64_t>(host);
    if (::ioctl(fd_.get(), KVM_SET_USER_MEMORY_REGION, &r) < 0)
        return fail_errno(fmt::format("KVM_SET_USER_MEMORY_REGION slot {} at {:#x} ({} MiB)", slot,
                                      guest_phys, size >> 20));
    return {};
}

Result<void> Vm::irq_line(uint32_t gsi, bool level) const {
    kvm_irq_level l{};
    l.irq = gsi;
    l.level = level ? 1 : 0;
    if (::ioctl(fd_.get(), KVM_IRQ_LINE, &l) < 0)
        return fail_errno(fmt::format("KVM_IRQ_LINE gsi {}", gsi));
    return {};
}

Result<void> Vm::add_ioeventfd(uint64_t addr, uint32_t len, uint64_t datamatch, int fd) const {
    kvm_ioeventfd io{};
    io.datamatch = datamatch;
    io.addr = addr;
    io.len = len;
    io.fd = fd;
    io.flags = KVM_IOEVENTFD_FLAG_DATAMATCH;
    if (::ioctl(fd_.get(), KVM_IOEVENTFD, &io) < 0)
        return fail_errno(fmt::format("KVM_IOEVENTFD at {:#x} (value {})", addr, datamatch));
    return {};
}

Result<void> Vm::add_irqfd(uint32_t gsi, int fd) const {
    kvm_irqfd irq{};
    irq.fd = static_cast<uint32_t>(fd);
    irq.gsi = gsi;
    if (::ioctl(fd_.get(), KVM_IRQFD, &irq) < 0) return fail_errno(fmt::format("KVM_IRQFD gsi {}", gsi));
    return {};
}

Result<Vcpu> Vm::create_vcpu(const Kvm& kvm, uint32_t id) const {
    int fd = ::ioctl(fd_.get(), KVM_CREATE_VCPU, static_cast<unsigned long>(id));
    if (fd < 0) return fail_errno(fmt::format("KVM_CREATE_VCPU {}", id));
    Fd vcpu_fd(fd);
    auto size = KILN_TRY(kvm.vcpu_mmap_size());
    auto run = MmapRegion::shared(vcpu_fd.get(), size);
    if (!run) return std::unexpected(run.error().context(fmt::format("vcpu {}: mapping kvm_run", id)));
    return Vcpu(id, std::move(vcpu_fd), std::move(*run));
}

Result<void> Vm::enable_cap(uint32_t cap, uint64_t arg0) const {
    kvm_enable_cap c{};
    c.cap = cap;
    c.args[0] = arg0;
    if (::ioctl(fd_.get(), KVM_ENABLE_CAP, &c) < 0)
        return fail_errno(fmt::format("KVM_ENABLE_CAP {}", cap));
    return {};
}

int Vm::check_extension(long cap) const {
    int r = ::ioctl(fd_.get(), KVM_CHECK_EXTENSION, cap);
    return r < 0 ? 0 : r;
}

} // namespace kiln
