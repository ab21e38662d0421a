// `kiln host check`: Kiln's counterpart of libvirt's virt-host-validate (issue 5, item 4).
// One Check per thing a batch farm tunes or a VM needs: /dev/kvm, the paging mode, KSM,
// THP, huge pages, NUMA, io_uring, TAP, the CPU frequency governor.
//
// Verdicts: fail = something Kiln offers cannot work on this host (no /dev/kvm, no
// io_uring for disks, no TUN for networking); warn = it works, but slower or with less
// than it could, and the detail says what to change; pass = fine, or informational.
//
// Every file is read below a configurable root, so unit tests build fake sysfs, procfs
// and /dev trees. The two answers that come from system calls rather than files (the
// KVM API version, io_uring_setup) are probes the tests can replace.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "vmm/base/fd.hpp"
#include "vmm/base/result.hpp"

namespace kiln::host {

enum class Verdict { Pass, Warn, Fail };
[[nodiscard]] const char* to_string(Verdict v); // "pass", "warn", "fail"

struct Check {
    std::string name;   // "kvm", "paging", "ksm", ...
    Verdict verdict = Verdict::Pass;
    std::string detail; // why, and what to do about a warn or fail
    nlohmann::ordered_json data = nlohmann::ordered_json::object(); // structured fields for --json
};

struct HostRoots {
    std::string sys = "/sys";
    std::string proc = "/proc";
    std::string dev = "/dev";
};

struct HostProbes {
    // ioctl(KVM_GET_API_VERSION) on an open /dev/kvm.
    std::function<Result<int>(const Fd&)> kvm_api_version;
    // io_uring_setup with a small ring, closed again at once.
    std::function<Result<void>()> io_uring_setup;

    [[nodiscard]] static HostProbes real();
};

[[nodiscard]] Check check_kvm(const HostRoots& roots, const HostProbes& probes);
[[nodiscard]] Check check_paging(const HostRoots& roots);
[[nodiscard]] Check check_ksm(const HostRoots& roots);
[[nodiscard]] Check check_thp(const HostRoots& roots);
[[nodiscard]] Check check_hugepages(const HostRoots& roots);
[[nodiscard]] Check check_numa(const HostRoots& roots);
[[nodiscard]] Check check_io_uring(const HostRoots& roots, const HostProbes& probes);
[[nodiscard]] Check check_tun(const HostRoots& roots);
[[nodiscard]] Check check_vhost_net(const HostRoots& roots);
[[nodiscard]] Check check_cpufreq(const HostRoots& roots);

// Every check above, in that order.
[[nodiscard]] std::vector<Check> check_host(const HostRoots& roots = {}, const HostProbes& probes = HostProbes::real());

// One aligned line per check ("pass  kvm           /dev/kvm: API version 12"), then a
// summary line ("10 checks: 7 pass, 3 warn, 0 fail").
[[nodiscard]] std::string format_checks(const std::vector<Check>& checks);
// {"checks":[{"name","verdict","detail", ...data}], "pass":N, "warn":N, "fail":N}
[[nodiscard]] nlohmann::ordered_json checks_to_json(const std::vector<Check>& checks);
[[nodiscard]] bool any_failed(const std::vector<Check>& checks);

// "0-3,6,8-9": the kernel's cpulist notation, for messages.
[[nodiscard]] std::string format_cpulist(const std::vector<unsigned>& cpus);

} // namespace kiln::host
