#include "vmm/kvm/kvm_stats.hpp"

#include <cstddef>
#include <cstring>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <unistd.h>

namespace kiln {

namespace {

Result<void> pread_all(int fd, void* buf, size_t len, uint64_t off, const char* what) {
    auto* p = static_cast<uint8_t*>(buf);
    while (len > 0) {
        ssize_t n = ::pread(fd, p, len, static_cast<off_t>(off));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail_errno(fmt::format("KVM stats: reading the {}", what));
        if (n == 0) return fail("KVM stats: the {} is shorter than its header says", what);
        p += n;
        len -= static_cast<size_t>(n);
        off += static_cast<uint64_t>(n);
    }
    return {};
}

} // namespace

Result<KvmStats> KvmStats::open(int fd) {
    int raw = ::ioctl(fd, KVM_GET_STATS_FD, nullptr);
    if (raw < 0) return fail_errno("KVM_GET_STATS_FD");
    Fd stats(raw);
    kvm_stats_header h{};
    KILN_TRY(pread_all(stats.get(), &h, sizeof h, 0, "header"));
    if (h.num_desc > 4096 || h.name_size == 0 || h.name_size > 4096)
        return fail("KVM stats: implausible header ({} descriptors, names of {} bytes)", h.num_desc, h.name_size);
    // The fixed part of a descriptor, without its name. Not sizeof(kvm_stats_desc): in
    // C++ the header's flexible-array wrapper pads the struct to 20 bytes.
    constexpr size_t kFixed = offsetof(kvm_stats_desc, bucket_size) + sizeof(uint32_t);
    static_assert(kFixed == 16);
    const size_t desc_size = kFixed + h.name_size;
    std::vector<uint8_t> descs(desc_size * h.num_desc);
    KILN_TRY(pread_all(stats.get(), descs.data(), descs.size(), h.desc_offset, "descriptors"));
    std::vector<Field> fields;
    size_t data_size = 0;
    for (uint32_t i = 0; i < h.num_desc; ++i) {
        kvm_stats_desc d{};
        std::memcpy(&d, descs.data() + i * desc_size, kFixed);
        const auto* name = reinterpret_cast<const char*>(descs.data() + i * desc_size + kFixed);
        const size_t end = size_t(d.offset) + size_t(d.size) * sizeof(uint64_t);
        data_size = std::max(data_size, end);
        if (d.size != 1) continue; // histograms: not counters
        fields.push_back({std::string(name, ::strnlen(name, h.name_size)), d.offset});
    }
    if (data_size > (1u << 20)) return fail("KVM stats: implausible data block of {} bytes", data_size);
    return KvmStats(std::move(stats), std::move(fields), h.data_offset, data_size);
}

Result<std::vector<KvmCounter>> KvmStats::sample() const {
    std::vector<uint8_t> data(data_size_);
    KILN_TRY(pread_all(fd_.get(), data.data(), data.size(), data_offset_, "data"));
    std::vector<KvmCounter> out;
    out.reserve(fields_.size());
    for (const auto& f : fields_) {
        uint64_t v = 0;
        std::memcpy(&v, data.data() + f.offset, sizeof v);
        out.push_back({f.name, v});
    }
    return out;
}

} // namespace kiln
