#include "vmm/host/paging.hpp"


#include "vmm/host/host_files.hpp"

namespace kiln::host {
namespace {

// A module parameter's value, first word only ("Y", "N", "1", "0"); "" if unreadable.
std::string parameter(const std::string& root, const std::string& module, const std::string& name) {
    const auto line = read_line(root + "/module/" + module + "/parameters/" + name);
    if (!line) return {};
    const size_t start = line->find_first_not_of(" \t");
    if (start == std::string::npos) return {};
    return line->substr(start, line->find_first_of(" \t", start) - start);
}

bool enabled(const std::string& v) { return v == "Y" || v == "y" || v == "1"; }

} // namespace

PagingInfo detect_paging(std::string_view sysfs_root) {
    const std::string root(sysfs_root);
    PagingInfo info;
    struct Vendor {
        const char* module;
        const char* parameter;
        PagingMode two_dimensional;
    };
    for (const Vendor v : {Vendor{"kvm_intel", "ept", PagingMode::Ept}, Vendor{"kvm_amd", "npt", PagingMode::Npt}}) {
        if (!path_exists(root + "/module/" + v.module)) continue;
        info.module = v.module;
        const std::string value = parameter(root, v.module, v.parameter);
        if (value.empty()) {
            info.why = std::string(v.module) + ": parameter " + v.parameter + " unreadable";
            return info;
        }
        info.mode = enabled(value) ? v.two_dimensional : PagingMode::Shadow;
        info.why = std::string(v.module) + ": " + v.parameter + "=" + value;
        return info;
    }
    if (path_exists(root + "/module/kvm_pvm")) {
        info.module = "kvm_pvm";
        info.mode = PagingMode::Shadow;
        info.why = "kvm_pvm: paravirtualized KVM, always shadow paging";
        return info;
    }
    info.why = "no KVM vendor module (kvm_intel, kvm_amd, kvm_pvm) is loaded";
    return info;
}

const char* to_string(PagingMode mode) {
    switch (mode) {
    case PagingMode::Ept: return "ept";
    case PagingMode::Npt: return "npt";
    case PagingMode::Shadow: return "shadow";
    case PagingMode::Unknown: break;
    }
    return "unknown";
}

} // namespace kiln::host
