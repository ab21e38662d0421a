// KvmStats: KVM's own per-vCPU (or per-VM) counters through KVM_GET_STATS_FD, the
// binary statistics interface (Linux 5.14+): exits, halt polling, page faults, ...
//
// The descriptors are read once at open; sample() then reads only the data block with
// one pread, so a control socket can serve the counters live at any rate.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "vmm/base/fd.hpp"
#include "vmm/base/result.hpp"

namespace kiln {

struct KvmCounter {
    std::string name; // KVM's name, e.g. "exits", "halt_successful_poll", "halt_wait_ns"
    uint64_t value = 0;
};

class KvmStats {
public:
    // `fd` is a VM or vCPU fd. Fails on kernels without KVM_CAP_BINARY_STATS_FD.
    [[nodiscard]] static Result<KvmStats> open(int fd);

    // Every single-valued counter (histograms are left out), in KVM's order.
    [[nodiscard]] Result<std::vector<KvmCounter>> sample() const;

private:
    struct Field {
        std::string name;
        uint32_t offset = 0; // from the start of the data block
    };
    KvmStats(Fd fd, std::vector<Field> fields, uint64_t data_offset, size_t data_size)
        : fd_(std::move(fd)), fields_(std::move(fields)), data_offset_(data_offset), data_size_(data_size) {}

    Fd fd_;
    std::vector<Field> fields_;
    uint64_t data_offset_ = 0;
    size_t data_size_ = 0;
};

} // namespace kiln
