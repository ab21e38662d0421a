#include "vmm/host/host_check.hpp"

#include <linux/io_uring.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>

#include <algorithm>
#include <iterator>
#include <map>

#include "vmm/base/file_io.hpp"
#include "vmm/host/host_files.hpp"
#include "vmm/host/numa.hpp"
#include "vmm/host/paging.hpp"

namespace kiln::host {
namespace {

std::string node_dir(const HostRoots& roots, unsigned node) {
    return fmt::format("{}/devices/system/node/node{}", roots.sys, node);
}

std::vector<unsigned> nodes(const HostRoots& roots) {
    return numbered_entries(roots.sys + "/devices/system/node", "node");
}

// Node `node`'s MemTotal in kB from its nodeN/meminfo (numa.hpp's parser); 0 when unknown.
uint64_t node_mem_total_kb(const HostRoots& roots, unsigned node) {
    const auto text = read_text_file(node_dir(roots, node) + "/meminfo");
    if (!text) return 0;
    return node_mem_total(*text, node).value_or(0) / 1024;
}

std::string gib(uint64_t kb) { return fmt::format("{:.1f} GiB", static_cast<double>(kb) / (1024.0 * 1024.0)); }

Check make(std::string name, Verdict v, std::string detail) {
    Check c;
    c.name = std::move(name);
    c.verdict = v;
    c.detail = std::move(detail);
    return c;
}

} // namespace

const char* to_string(Verdict v) {
    switch (v) {
    case Verdict::Pass: return "pass";
    case Verdict::Warn: return "warn";
    case Verdict::Fail: break;
    }
    return "fail";
}

HostProbes HostProbes::real() {
    HostProbes p;
    p.kvm_api_version = [](const Fd& kvm) -> Result<int> {
        const int api = ::ioctl(kvm.get(), KVM_GET_API_VERSION, 0);
        if (api < 0) return fail_errno("KVM_GET_API_VERSION");
        return api;
    };
    p.io_uring_setup = []() -> Result<void> {
        io_uring_params params{};
        const long fd = ::syscall(__NR_io_uring_setup, 4u, &params);
        if (fd < 0) return fail_errno("io_uring_setup");
        Fd ring(static_cast<int>(fd)); // closed here: the probe only asks whether rings can be made
        return {};
    };
    return p;
}

Check check_kvm(const HostRoots& roots, const HostProbes& probes) {
    const std::string path = roots.dev + "/kvm";
    auto fd = Fd::open(path, O_RDWR);
    if (!fd) {
        const int e = fd.error().sys_errno();
        std::string why = fmt::format("{}: {}", path, std::strerror(e));
        if (e == ENOENT) why += "; load kvm_intel, kvm_amd or kvm_pvm, or enable virtualization in the firmware";
        else if (e == EACCES) why += "; run kiln as root or as a member of the kvm group";
        return make("kvm", Verdict::Fail, why);
    }
    auto api = probes.kvm_api_version(*fd);
    if (!api) return make("kvm", Verdict::Fail, fmt::format("{}: {} (not a KVM device?)", path, api.error().message()));
    Check c = make("kvm", Verdict::Pass, fmt::format("{}: API version {}", path, *api));
    if (*api != KVM_API_VERSION) {
        c.verdict = Verdict::Fail;
        c.detail += fmt::format("; Kiln needs {}", KVM_API_VERSION);
    }
    c.data["path"] = path;
    c.data["api_version"] = *api;
    return c;
}

Check check_paging(const HostRoots& roots) {
    const PagingInfo p = detect_paging(roots.sys);
    Check c = make("paging", Verdict::Pass, p.why);
    switch (p.mode) {
    case PagingMode::Ept:
    case PagingMode::Npt: c.detail += ": two-dimensional paging"; break;
    case PagingMode::Shadow:
        c.verdict = Verdict::Warn;
        c.detail += ": the host traps and mirrors every guest page-table update, so most loads run "
                    "slower than with EPT/NPT";
        if (p.module != "kvm_pvm")
            c.detail += fmt::format("; kiln host paging set {} switches", p.module == "kvm_amd" ? "npt" : "ept");
        break;
    case PagingMode::Unknown: c.verdict = p.module.empty() ? Verdict::Fail : Verdict::Warn; break;
    }
    c.data["module"] = p.module;
    c.data["mode"] = to_string(p.mode);
    return c;
}

Check check_ksm(const HostRoots& roots) {
    const std::string dir = roots.sys + "/kernel/mm/ksm";
    const auto run = read_line(dir + "/run");
    if (!run)
        return make("ksm", Verdict::Warn,
                    fmt::format("no {}/run: this kernel has no KSM (CONFIG_KSM); merge=on would save nothing", dir));
    Check c = make("ksm", Verdict::Pass, "");
    c.data["run"] = parse_u64(*run).value_or(0);
    std::string counters;
    for (const char* name : {"pages_shared", "pages_sharing", "pages_unshared", "full_scans"}) {
        const auto v = read_u64(dir + "/" + name);
        if (!v) continue;
        c.data[name] = *v;
        counters += fmt::format("{}{}={}", counters.empty() ? "" : " ", name, *v);
    }
    const std::string enable = fmt::format("echo 1 > {}/run", dir);
    if (*run == "1") {
        c.detail = "KSM is running: " + counters;
    } else if (*run == "0") {
        c.verdict = Verdict::Warn;
        c.detail = "KSM is off: merge=on would save nothing; " + enable;
    } else if (*run == "2") {
        c.verdict = Verdict::Warn;
        c.detail = "KSM is stopped and has unmerged every page (run=2): merge=on would save nothing; " + enable;
    } else {
        c.verdict = Verdict::Warn;
        c.detail = fmt::format("{}/run holds '{}', not 0, 1 or 2", dir, *run);
    }
    return c;
}

Check check_thp(const HostRoots& roots) {
    const std::string path = roots.sys + "/kernel/mm/transparent_hugepage/enabled";
    const auto line = read_line(path);
    if (!line)
        return make("thp", Verdict::Warn, fmt::format("no {}: this kernel has no transparent huge pages", path));
    const auto open = line->find('['), close = line->find(']');
    if (open == std::string::npos || close == std::string::npos || close < open)
        return make("thp", Verdict::Warn, fmt::format("{}: no [mode] in '{}'", path, *line));
    const std::string mode = line->substr(open + 1, close - open - 1);
    Check c = make("thp", Verdict::Pass, "transparent huge pages: " + mode);
    c.data["enabled"] = mode;
    if (mode == "madvise") {
        c.detail += " (Kiln advises guest RAM above 2 MiB with MADV_HUGEPAGE)";
    } else if (mode == "never") {
        c.verdict = Verdict::Warn;
        c.detail += fmt::format(": guest RAM stays in 4 KiB pages; echo madvise > {}", path);
    } else if (mode != "always") {
        c.verdict = Verdict::Warn;
    }
    return c;
}

Check check_hugepages(const HostRoots& roots) {
    const auto ns = nodes(roots);
    if (ns.empty())
        return make("hugepages", Verdict::Warn,
                    fmt::format("no {}/devices/system/node: huge pages per node unknown", roots.sys));
    struct Size {
        const char* label;
        const char* dir;
    };
    static constexpr Size kSizes[] = {{"2M", "hugepages-2048kB"}, {"1G", "hugepages-1048576kB"}};
    uint64_t total_2m = 0, free_2m = 0;
    std::string per_node;
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (const unsigned n : ns) {
        nlohmann::ordered_json node = {{"node", n}};
        per_node += fmt::format("{}node{}", per_node.empty() ? "" : "; ", n);
        for (size_t i = 0; i < std::size(kSizes); ++i) {
            const std::string dir = fmt::format("{}/hugepages/{}", node_dir(roots, n), kSizes[i].dir);
            const uint64_t total = read_u64(dir + "/nr_hugepages").value_or(0);
            const uint64_t free = read_u64(dir + "/free_hugepages").value_or(0);
            node[kSizes[i].label] = {{"total", total}, {"free", free}};
            per_node += fmt::format("{} {} {} free of {}", i ? "," : ":", kSizes[i].label, free, total);
            if (i == 0) { // Kiln's hugepages=on maps 2 MiB pages; 1 GiB ones are shown, not needed
                total_2m += total;
                free_2m += free;
            }
        }
        list.push_back(std::move(node));
    }
    Check c = make("hugepages", Verdict::Pass, per_node);
    c.data["nodes"] = std::move(list);
    if (total_2m == 0) {
        c.verdict = Verdict::Warn;
        c.detail = fmt::format("no 2 MiB huge pages reserved ({}): hugepages=on needs them; sysctl vm.nr_hugepages=N",
                               per_node);
    } else if (free_2m == 0) {
        c.verdict = Verdict::Warn;
        c.detail = fmt::format("all {} reserved 2 MiB huge pages are in use ({}); sysctl vm.nr_hugepages=N "
                               "reserves more",
                               total_2m, per_node);
    }
    return c;
}

Check check_numa(const HostRoots& roots) {
    const auto ns = nodes(roots);
    if (ns.empty())
        return make("numa", Verdict::Warn, fmt::format("no {}/devices/system/node: NUMA topology unknown", roots.sys));
    std::string detail = fmt::format("{} node{}:", ns.size(), ns.size() == 1 ? "" : "s");
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (const unsigned n : ns) {
        const std::string cpus = read_line(node_dir(roots, n) + "/cpulist").value_or("");
        const uint64_t kb = node_mem_total_kb(roots, n);
        detail += fmt::format("{} node{} cpus {} {}", n == ns.front() ? "" : ";", n, cpus.empty() ? "none" : cpus,
                              gib(kb));
        list.push_back({{"node", n}, {"cpus", cpus}, {"mem_total_kb", kb}});
    }
    Check c = make("numa", Verdict::Pass, detail);
    c.data["nodes"] = std::move(list);
    return c;
}

Check check_io_uring(const HostRoots& roots, const HostProbes& probes) {
    const std::string sysctl = roots.proc + "/sys/kernel/io_uring_disabled";
    const auto disabled = read_u64(sysctl);
    auto setup = probes.io_uring_setup();
    Check c = make("io_uring", Verdict::Pass, "io_uring_setup works");
    if (!setup) {
        c.verdict = Verdict::Fail;
        c.detail = setup.error().message() + ": Kiln's virtio-blk disks need io_uring";
    }
    if (disabled) {
        c.data["io_uring_disabled"] = *disabled;
        if (*disabled == 0) c.detail += " (io_uring_disabled=0)";
        else if (*disabled == 1)
            c.detail += " (io_uring_disabled=1: only root and the kernel.io_uring_group group may make rings)";
        else c.detail += fmt::format(" (io_uring_disabled={}: echo 0 > {})", *disabled, sysctl);
    }
    return c;
}

Check check_tun(const HostRoots& roots) {
    const std::string path = roots.dev + "/net/tun";
    auto fd = Fd::open(path, O_RDWR);
    if (!fd) {
        const int e = fd.error().sys_errno();
        return make("tun", Verdict::Fail,
                    fmt::format("{}: {}; TAP networking needs it{}", path, std::strerror(e),
                                e == ENOENT ? ": modprobe tun" : ""));
    }
    return make("tun", Verdict::Pass, path + ": opens (TAP networking works)");
}

Check check_vhost_net(const HostRoots& roots) {
    const std::string path = roots.dev + "/vhost-net";
    if (!path_exists(path))
        return make("vhost-net", Verdict::Warn,
                    path + " absent: Kiln does not use it (its virtio devices run in the VMM, in userspace)");
    return make("vhost-net", Verdict::Pass, path + " present (Kiln does not use it: its virtio-net is in userspace)");
}

Check check_cpufreq(const HostRoots& roots) {
    const std::string dir = roots.sys + "/devices/system/cpu";
    std::map<std::string, std::vector<unsigned>> by_governor;
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (const unsigned cpu : numbered_entries(dir, "cpu")) {
        const auto g = read_line(fmt::format("{}/cpu{}/cpufreq/scaling_governor", dir, cpu));
        if (!g || g->empty()) continue;
        by_governor[*g].push_back(cpu);
        list.push_back({{"cpu", cpu}, {"governor", *g}});
    }
    if (by_governor.empty())
        return make("cpufreq", Verdict::Pass, "no cpufreq: the hypervisor or firmware controls frequency");
    std::string detail;
    for (const auto& [governor, cpus] : by_governor)
        detail += fmt::format("{}{} on cpu {}", detail.empty() ? "" : ", ", governor, format_cpulist(cpus));
    Check c = make("cpufreq", Verdict::Pass, detail);
    c.data["cpus"] = std::move(list);
    if (by_governor.size() > 1 || !by_governor.contains("performance")) {
        c.verdict = Verdict::Warn;
        c.detail += ": not performance, so vCPU speed follows the host's load; cpupower frequency-set -g performance";
    }
    return c;
}

std::vector<Check> check_host(const HostRoots& roots, const HostProbes& probes) {
    return {
        check_kvm(roots, probes), check_paging(roots), check_ksm(roots),
        check_thp(roots), check_hugepages(roots), check_numa(roots),
        check_io_uring(roots, probes), check_tun(roots), check_vhost_net(roots),
        check_cpufreq(roots),
    };
}

std::string format_checks(const std::vector<Check>& checks) {
    size_t width = 14;
    for (const Check& c : checks) width = std::max(width, c.name.size() + 2);
    std::string out;
    size_t count[3] = {};
    for (const Check& c : checks) {
        out += fmt::format("{:<6}{:<{}}{}\n", to_string(c.verdict), c.name, width, c.detail);
        ++count[static_cast<size_t>(c.verdict)];
    }
    out += fmt::format("{} checks: {} pass, {} warn, {} fail\n", checks.size(), count[0], count[1], count[2]);
    return out;
}

nlohmann::ordered_json checks_to_json(const std::vector<Check>& checks) {
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    size_t count[3] = {};
    for (const Check& c : checks) {
        nlohmann::ordered_json j = {{"name", c.name}, {"verdict", to_string(c.verdict)}, {"detail", c.detail}};
        for (const auto& [key, value] : c.data.items()) j[key] = value;
        list.push_back(std::move(j));
        ++count[static_cast<size_t>(c.verdict)];
    }
    return {{"checks", std::move(list)}, {"pass", count[0]}, {"warn", count[1]}, {"fail", count[2]}};
}

bool any_failed(const std::vector<Check>& checks) {
    return std::any_of(checks.begin(), checks.end(), [](const Check& c) { return c.verdict == Verdict::Fail; });
}

std::string format_cpulist(const std::vector<unsigned>& cpus) {
    std::string out;
    for (size_t i = 0; i < cpus.size();) {
        size_t j = i;
        while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) ++j;
        out += out.empty() ? "" : ",";
        out += j == i ? fmt::format("{}", cpus[i]) : fmt::format("{}-{}", cpus[i], cpus[j]);
        i = j + 1;
    }
    return out;
}

} // namespace kiln::host
