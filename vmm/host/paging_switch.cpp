#include "vmm/host/paging_switch.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "vmm/base/fd.hpp"
#include "vmm/host/host_files.hpp"
#include "vmm/host/paging.hpp"

namespace kiln::host {
namespace {

std::string join(const std::vector<std::string>& words, std::string_view sep) {
    std::string out;
    for (const auto& w : words) out += (out.empty() ? "" : std::string(sep)) + w;
    return out;
}

Result<void> write_file(const std::string& path, const std::string& text) {
    Fd fd = KILN_TRY(Fd::open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644));
    for (size_t done = 0; done < text.size();) {
        const ssize_t n = ::write(fd.get(), text.data() + done, text.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail_errno(fmt::format("writing '{}'", path));
        done += static_cast<size_t>(n);
    }
    return {};
}

// fork + execvp + waitpid: the command must exit 0. Its output goes where kiln's goes.
Result<void> run_command(const std::vector<std::string>& argv) {
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) return fail_errno("fork");
    if (pid == 0) {
        ::execvp(args[0], args.data());
        ::_exit(127);
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return fail_errno("waitpid");
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
    if (WIFEXITED(status)) return fail("'{}' exited with status {}", join(argv, " "), WEXITSTATUS(status));
    return fail("'{}' was killed by signal {}", join(argv, " "), WTERMSIG(status));
}

bool uses(PagingMode mode, PagingTarget target) {
    if (target == PagingTarget::Shadow) return mode == PagingMode::Shadow;
    return mode == PagingMode::Ept || mode == PagingMode::Npt;
}

const char* to_string(PagingTarget target) {
    return target == PagingTarget::Shadow ? "shadow" : "two-dimensional";
}

} // namespace

Result<PagingTarget> parse_paging_target(std::string_view word) {
    if (word == "ept" || word == "npt") return PagingTarget::TwoDimensional;
    if (word == "shadow") return PagingTarget::Shadow;
    return fail("'{}' is not ept, npt or shadow", word);
}

std::vector<int> pids_holding_vms(std::string_view proc_root) {
    static constexpr std::string_view kVmInode = "anon_inode:kvm-vm";
    std::vector<int> pids;
    const std::string proc(proc_root);
    for (const unsigned pid : numbered_entries(proc, "")) {
        const std::string fd_dir = fmt::format("{}/{}/fd", proc, pid);
        for (const unsigned fd : numbered_entries(fd_dir, "")) {
            char target[64];
            const ssize_t n = ::readlink(fmt::format("{}/{}", fd_dir, fd).c_str(), target, sizeof target);
            if (n > 0 && std::string_view(target, static_cast<size_t>(n)) == kVmInode) {
                pids.push_back(static_cast<int>(pid));
                break;
            }
        }
    }
    return pids;
}

Result<PagingSwitchPlan> plan_paging_switch(PagingTarget target, const SwitchRoots& roots) {
    const PagingInfo now = detect_paging(roots.sys);
    if (now.module.empty()) return fail("{}: nothing to switch", now.why);
    PagingSwitchPlan plan;
    plan.target = target;
    plan.module = now.module;
    if (uses(now.mode, target)) {
        plan.nothing_to_do = true;
        plan.summary = fmt::format("{}: already {} paging; nothing to do", now.why, to_string(target));
        return plan;
    }
    if (now.module == "kvm_pvm") return fail("kvm_pvm always uses shadow paging; it has no switch");
    const char* parameter = now.module == "kvm_intel" ? "ept" : "npt";
    const bool on = target == PagingTarget::TwoDimensional;

    if (const auto pids = pids_holding_vms(roots.proc); !pids.empty()) {
        std::vector<std::string> list;
        for (const int pid : pids) list.push_back(std::to_string(pid));
        return fail("refusing to reload {} while VMs run: PID{} {} hold{} anon_inode:kvm-vm; stop {} first", now.module,
                    pids.size() == 1 ? "" : "s", join(list, ", "), pids.size() == 1 ? "s" : "",
                    pids.size() == 1 ? "it" : "them");
    }

    const std::string word = on ? parameter : "shadow";
    plan.summary = fmt::format("{} -> {}={} ({} paging)", now.why, parameter, on ? 1 : 0, to_string(target));
    plan.conf_path = roots.etc + "/modprobe.d/kiln-paging.conf";
    plan.conf_text = fmt::format("# Written by Kiln (kiln host paging set {}). Delete this file and reload {} "
                                 "for the module's default.\noptions {} {}={}\n",
                                 word, now.module, now.module, parameter, on ? 1 : 0);
    plan.commands = {{"modprobe", "-r", now.module}, {"modprobe", now.module}};
    return plan;
}

std::string describe(const PagingSwitchPlan& plan) {
    std::string out = fmt::format("# {}\n", plan.summary);
    if (plan.nothing_to_do) return out;
    out += fmt::format("cat > {} <<'EOF'\n{}EOF\n", plan.conf_path, plan.conf_text);
    for (const auto& c : plan.commands) out += join(c, " ") + "\n";
    return out;
}

Result<std::string> apply_paging_switch(const PagingSwitchPlan& plan, std::string_view sysfs_root) {
    if (plan.nothing_to_do) return plan.summary;
    KILN_TRY(write_file(plan.conf_path, plan.conf_text));
    for (const auto& c : plan.commands)
        KILN_TRY_CTX(run_command(c), "{} written ({} takes it when next loaded); reloading now failed", plan.conf_path,
                     plan.module);
    const PagingInfo now = detect_paging(sysfs_root);
    if (!uses(now.mode, plan.target))
        return fail("{} reloaded, but {}: not {} paging", plan.module, now.why, to_string(plan.target));
    return fmt::format("{} reloaded: {} ({} paging)", plan.module, now.why, to_string(now.mode));
}

} // namespace kiln::host
