// `kiln host paging set ept|npt|shadow` (issue 5, item 3): the documented way to switch
// the host's KVM between two-dimensional and shadow paging. The vendor module's
// parameter (kvm_intel `ept`, kvm_amd `npt`) is read only when the module loads, so the
// switch is a modprobe.d options file plus a module reload, which only works while no
// VM holds the module. kvm_pvm always shadows and has nothing to switch.
//
// Planning is separate from doing: the plan is plain data (tested against fake sysfs
// and procfs trees), `--dry-run` prints it, apply_paging_switch() carries it out.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "vmm/base/result.hpp"

namespace kiln::host {

// ept and npt are one request: two-dimensional paging, whatever the vendor calls it.
enum class PagingTarget { TwoDimensional, Shadow };

// "ept", "npt" or "shadow".
[[nodiscard]] Result<PagingTarget> parse_paging_target(std::string_view word);

struct SwitchRoots {
    std::string sys = "/sys";
    std::string proc = "/proc";
    std::string etc = "/etc";
};

struct PagingSwitchPlan {
    PagingTarget target = PagingTarget::TwoDimensional;
    std::string module;  // "kvm_intel" or "kvm_amd"
    std::string summary; // "kvm_intel: ept=Y -> ept=0 (shadow paging)", or why nothing is to do
    bool nothing_to_do = false; // the host already uses the requested paging
    std::string conf_path;      // <etc>/modprobe.d/kiln-paging.conf
    std::string conf_text;      // a comment saying Kiln wrote it, then "options kvm_intel ept=0"
    std::vector<std::vector<std::string>> commands; // modprobe -r MODULE; modprobe MODULE
};

// The PIDs holding a KVM VM open (a /proc/PID/fd link to anon_inode:kvm-vm), sorted.
[[nodiscard]] std::vector<int> pids_holding_vms(std::string_view proc_root = "/proc");

// Refuses with one line when there is no vendor module, when it is kvm_pvm, or when a VM
// runs (naming the PIDs). Already in the requested mode: a plan with nothing_to_do.
[[nodiscard]] Result<PagingSwitchPlan> plan_paging_switch(PagingTarget target, const SwitchRoots& roots = {});

// What --dry-run prints: the summary as a comment, then a shell script doing exactly
// what apply_paging_switch() does (the file's content verbatim, then the commands).
[[nodiscard]] std::string describe(const PagingSwitchPlan& plan);

// Writes the file, runs the commands (fork/exec, each must exit 0), then reads the mode
// back; returns a line saying what the host now uses, or fails if it is not the target.
[[nodiscard]] Result<std::string> apply_paging_switch(const PagingSwitchPlan& plan,
                                                      std::string_view sysfs_root = "/sys");

} // namespace kiln::host
