#include "vmm/kvm/kvm.hpp"

#include <algorithm>
#include <cerrno>
#include <sys/ioctl.h>

#include "vmm/kvm/ioctls.hpp"

namespace kiln {

kvm_cpuid_entry2* CpuidEntries::find(uint32_t function, uint32_t index) {
    for (auto& e : entries)
        if (e.function == function &&
            (!(e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || e.index == index))
            return &e;
    return nullptr;
}

const kvm_cpuid_entry2* CpuidEntries::find(uint32_t function, uint32_t index) const {
    return const_cast<CpuidEntries*>(this)->find(function, index);
}

void CpuidEntries::set(const kvm_cpuid_entry2& e) {
    for (auto& x : entries) {
        if (x.function == e.function && x.index == e.index) {
            x = e;
            return;
        }
    }
    entries.push_back(e);
}

Result<Kvm> Kvm::open(const std::string& path) {
    auto fd = Fd::open(path, O_RDWR);
    if (!fd) {
        int e = fd.error().sys_errno();
        if (e == ENOENT)
            return fail("{} does not exist: KVM is not available on this host (load kvm_intel "
                        "or kvm_amd, or enable nested virtualization)", path);
        if (e == EACCES || e == EPERM)
            return fail("{} is not accessible: permission denied (run as root or join the "
                        "'kvm' group)", path);
        return std::unexpected(fd.error());
    }
    int api = ::ioctl(fd->get(), KVM_GET_API_VERSION, 0);
    if (api < 0) return fail_errno(fmt::format("{}: KVM_GET_API_VERSION", path));
    if (api != KVM_API_VERSION)
        return fail("{}: KVM API version {} is not the supported {}", path, api, KVM_API_VERSION);
    return Kvm(std::move(*fd), api);
}

int Kvm::check_extension(long cap) const {
    int r = ::ioctl(fd_.get(), KVM_CHECK_EXTENSION, cap);
    return r < 0 ? 0 : r;
}

Result<size_t> Kvm::vcpu_mmap_size() const {
    int r = ::ioctl(fd_.get(), KVM_GET_VCPU_MMAP_SIZE, 0);
    if (r <= 0) return fail_errno("KVM_GET_VCPU_MMAP_SIZE");
    return static_cast<size_t>(r);
}

int Kvm::max_vcpus() const {
    int n = check_extension(KVM_CAP_MAX_VCPUS);
    if (n <= 0) n = check_extension(KVM_CAP_NR_VCPUS);
    return n > 0 ? n : 4; // the API's documented minimum assumption
}

Result<CpuidEntries> Kvm::supported_cpuid() const {
    // The kernel tells us when the buffer is too small (E2BIG); grow until it fits.
    for (uint32_t n = 128; n <= 4096; n *= 2) {
        std::vector<uint64_t> buf((sizeof(kvm_abi::CpuidHeader) + n * sizeof(kvm_cpuid_entry2)) / 8 + 1);
        auto* hdr = reinterpret_cast<kvm_abi::CpuidHeader*>(buf.data());
        hdr->nent = n;
        if (::ioctl(fd_.get(), kvm_abi::kGetSupportedCpuid, hdr) == 0) {
            const auto* entries = reinterpret_cast<const kvm_cpuid_entry2*>(hdr + 1);
            CpuidEntries out;
            out.entries.assign(entries, entries + std::min(hdr->nent, n));
            return out;
        }
        if (errno != E2BIG) return fail_errno("KVM_GET_SUPPORTED_CPUID");
    }
    return fail("KVM_GET_SUPPORTED_CPUID: too many entries");
}

} // namespace kiln
