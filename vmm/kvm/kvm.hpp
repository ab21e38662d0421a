// Thin wrappers over the KVM ioctls: /dev/kvm (Kvm), a VM (Vm), a vCPU (Vcpu).
// They translate errno into Result errors with context and hold their fds by RAII;
// policy (what to set up, in which order) lives in vmm/machine.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <linux/kvm.h>

#include "vmm/base/fd.hpp"
#include "vmm/base/mmap_region.hpp"
#include "vmm/base/result.hpp"

namespace kiln {

// Owned storage for struct kvm_cpuid2 with its flexible array.
class CpuidEntries {
public:
    std::vector<kvm_cpuid_entry2> entries;
    [[nodiscard]] kvm_cpuid_entry2* find(uint32_t function, uint32_t index = 0);
    [[nodiscard]] const kvm_cpuid_entry2* find(uint32_t function, uint32_t index = 0) const;
    // Replaces or appends the entry for (function, index).
    void set(const kvm_cpuid_entry2& e);
};

class Kvm {
public:
    // Opens /dev/kvm and checks the API version; the error explains access problems.
    [[nodiscard]] static Result<Kvm> open(const std::string& path = "/dev/kvm");

    [[nodiscard]] int fd() const { return fd_.get(); }
    [[nodiscard]] int check_extension(long cap) const; // 0 when unsupported
    [[nodiscard]] Result<size_t> vcpu_mmap_size() const;
    [[nodiscard]] Result<CpuidEntries> supported_cpuid() const;
    [[nodiscard]] int max_vcpus() const;
    [[nodiscard]] int api_version() const { return api_version_; }

private:
    explicit Kvm(Fd fd, int api) : fd_(std::move(fd)), api_version_(api) {}
    Fd fd_;
    int api_version_ = 0;
};

} // namespace kiln
