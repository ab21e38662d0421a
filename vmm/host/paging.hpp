// Which second-level paging the host's KVM uses (issue 5, item 3: detection). Batch
// users care: some compute loads ran 6 % faster under shadow paging, most run faster
// with EPT/NPT, and a farm wants to know which its hosts run.
//
// Read from the KVM vendor module's parameters in sysfs: kvm_intel `ept`, kvm_amd
// `npt` (Y/1: two-dimensional paging; N/0: shadow paging), and kvm_pvm, the
// paravirtualized KVM of nested clouds, which always shadows. `sysfs_root` is a
// parameter so tests can hand in fake trees.
#pragma once

#include <string>
#include <string_view>

namespace kiln::host {

enum class PagingMode { Ept, Npt, Shadow, Unknown };

struct PagingInfo {
    PagingMode mode = PagingMode::Unknown;
    std::string module; // "kvm_intel", "kvm_amd", "kvm_pvm", or "" when none is loaded
    std::string why;    // what the answer rests on, e.g. "kvm_intel: ept=Y"
};

[[nodiscard]] PagingInfo detect_paging(std::string_view sysfs_root = "/sys");
[[nodiscard]] const char* to_string(PagingMode mode); // "ept", "npt", "shadow", "unknown"

} // namespace kiln::host
