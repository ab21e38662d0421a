// `kiln host check` against fake sysfs, procfs and /dev trees: each check's verdict and
// detail for its pass, warn and fail cases, the human and JSON reports, and this host.
#include <doctest/doctest.h>

#include "tests/unit/test_host_tree.hpp"
#include "vmm/host/host_check.hpp"

using namespace kiln;
using namespace kiln::host;
using kiln::test::FakeHost;

namespace {

HostRoots roots_of(const FakeHost& h) { return {h.sys(), h.proc(), h.dev()}; }

// Probes answering what the test says, never touching the kernel.
HostProbes fake_probes(int api_version, int io_uring_errno = 0) {
    HostProbes p;
    p.kvm_api_version = [api_version](const Fd&) -> Result<int> { return api_version; };
    p.io_uring_setup = [io_uring_errno]() -> Result<void> {
        if (io_uring_errno) return fail_errno("io_uring_setup", io_uring_errno);
        return {};
    };
    return p;
}

// Two NUMA nodes, four CPUs each, and their huge pages.
void two_nodes(const FakeHost& h, uint64_t node0_2m_total, uint64_t node0_2m_free) {
    for (unsigned n : {0u, 1u}) {
        const std::string node = "sys/devices/system/node/node" + std::to_string(n);
        h.write(node + "/cpulist", n == 0 ? "0-3\n" : "4-7\n");
        h.write(node + "/meminfo", "Node " + std::to_string(n) + " MemTotal:       " +
                                       (n == 0 ? "8388608" : "4194304") + " kB\nNode 0 MemFree: 1 kB\n");
        const uint64_t total = n == 0 ? node0_2m_total : 0, free = n == 0 ? node0_2m_free : 0;
        h.write(node + "/hugepages/hugepages-2048kB/nr_hugepages", std::to_string(total) + "\n");
        h.write(node + "/hugepages/hugepages-2048kB/free_hugepages", std::to_string(free) + "\n");
        h.write(node + "/hugepages/hugepages-1048576kB/nr_hugepages", "0\n");
        h.write(node + "/hugepages/hugepages-1048576kB/free_hugepages", "0\n");
    }
    h.mkdir("sys/devices/system/node/power"); // not a node
}

} // namespace

TEST_CASE("host check: kvm: missing, API version 12, another version, not a KVM device") {
    FakeHost h;
    const auto missing = check_kvm(roots_of(h), fake_probes(12));
    CHECK(missing.name == "kvm");
    CHECK(missing.verdict == Verdict::Fail);
    CHECK(missing.detail == h.dev() + "/kvm: No such file or directory; load kvm_intel, kvm_amd or kvm_pvm, "
                                      "or enable virtualization in the firmware");

    h.write("dev/kvm", "");
    const auto ok = check_kvm(roots_of(h), fake_probes(12));
    CHECK(ok.verdict == Verdict::Pass);
    CHECK(ok.detail == h.dev() + "/kvm: API version 12");
    CHECK(ok.data["api_version"] == 12);

    const auto old = check_kvm(roots_of(h), fake_probes(11));
    CHECK(old.verdict == Verdict::Fail);
    CHECK(old.detail == h.dev() + "/kvm: API version 11; Kiln needs 12");

    // The real ioctl on a regular file.
    const auto file = check_kvm(roots_of(h), HostProbes::real());
    CHECK(file.verdict == Verdict::Fail);
    CHECK(file.detail == h.dev() + "/kvm: KVM_GET_API_VERSION: Inappropriate ioctl for device (not a KVM device?)");
}

TEST_CASE("host check: paging: two-dimensional passes, shadow warns with the reason, no module fails") {
    {
        FakeHost h;
        h.module("kvm_intel", "ept", "Y");
        const auto c = check_paging(roots_of(h));
        CHECK(c.verdict == Verdict::Pass);
        CHECK(c.detail == "kvm_intel: ept=Y: two-dimensional paging");
        CHECK(c.data["mode"] == "ept");
        CHECK(c.data["module"] == "kvm_intel");
    }
    {
        FakeHost h;
        h.module("kvm_amd", "npt", "0");
        const auto c = check_paging(roots_of(h));
        CHECK(c.verdict == Verdict::Warn);
        CHECK(c.detail == "kvm_amd: npt=0: the host traps and mirrors every guest page-table update, so most "
                          "loads run slower than with EPT/NPT; kiln host paging set npt switches");
    }
    {
        FakeHost h;
        h.module("kvm_pvm");
        const auto c = check_paging(roots_of(h));
        CHECK(c.verdict == Verdict::Warn);
        CHECK(c.detail == "kvm_pvm: paravirtualized KVM, always shadow paging: the host traps and mirrors every "
                          "guest page-table update, so most loads run slower than with EPT/NPT");
        CHECK(c.data["mode"] == "shadow");
    }
    {
        FakeHost h;
        h.module("kvm");
        const auto c = check_paging(roots_of(h));
        CHECK(c.verdict == Verdict::Fail);
        CHECK(c.detail == "no KVM vendor module (kvm_intel, kvm_amd, kvm_pvm) is loaded");
    }
}

TEST_CASE("host check: ksm: off warns with the command, running passes with its counters, absent warns") {
    FakeHost h;
    const auto absent = check_ksm(roots_of(h));
    CHECK(absent.verdict == Verdict::Warn);
    CHECK(absent.detail ==
          "no " + h.sys() + "/kernel/mm/ksm/run: this kernel has no KSM (CONFIG_KSM); merge=on would save nothing");

    h.write("sys/kernel/mm/ksm/run", "0\n");
    h.write("sys/kernel/mm/ksm/pages_shared", "3\n");
    h.write("sys/kernel/mm/ksm/pages_sharing", "12\n");
    h.write("sys/kernel/mm/ksm/pages_unshared", "5\n");
    h.write("sys/kernel/mm/ksm/full_scans", "2\n");
    const auto off = check_ksm(roots_of(h));
    CHECK(off.verdict == Verdict::Warn);
    CHECK(off.detail == "KSM is off: merge=on would save nothing; echo 1 > " + h.sys() + "/kernel/mm/ksm/run");
    CHECK(off.data["run"] == 0);
    CHECK(off.data["pages_sharing"] == 12);

    h.write("sys/kernel/mm/ksm/run", "1\n");
    const auto on = check_ksm(roots_of(h));
    CHECK(on.verdict == Verdict::Pass);
    CHECK(on.detail == "KSM is running: pages_shared=3 pages_sharing=12 pages_unshared=5 full_scans=2");
    CHECK(on.data["full_scans"] == 2);

    h.write("sys/kernel/mm/ksm/run", "2\n");
    CHECK(check_ksm(roots_of(h)).verdict == Verdict::Warn);
}

TEST_CASE("host check: thp: the bracketed word, and never warns") {
    FakeHost h;
    CHECK(check_thp(roots_of(h)).verdict == Verdict::Warn);
    const std::string file = "sys/kernel/mm/transparent_hugepage/enabled";
    h.write(file, "always [madvise] never\n");
    auto c = check_thp(roots_of(h));
    CHECK(c.verdict == Verdict::Pass);
    CHECK(c.detail == "transparent huge pages: madvise (Kiln advises guest RAM above 2 MiB with MADV_HUGEPAGE)");
    CHECK(c.data["enabled"] == "madvise");
    h.write(file, "[always] madvise never\n");
    c = check_thp(roots_of(h));
    CHECK(c.verdict == Verdict::Pass);
    CHECK(c.detail == "transparent huge pages: always");
    h.write(file, "always madvise [never]\n");
    c = check_thp(roots_of(h));
    CHECK(c.verdict == Verdict::Warn);
    CHECK(c.detail == "transparent huge pages: never: guest RAM stays in 4 KiB pages; echo madvise > " + h.sys() +
                          "/" + file.substr(4));
}

TEST_CASE("host check: huge pages per node: none reserved names the sysctl, all in use warns, free passes") {
    FakeHost h;
    CHECK(check_hugepages(roots_of(h)).verdict == Verdict::Warn); // no node directory at all

    two_nodes(h, 0, 0);
    auto c = check_hugepages(roots_of(h));
    CHECK(c.verdict == Verdict::Warn);
    CHECK(c.detail == "no 2 MiB huge pages reserved (node0: 2M 0 free of 0, 1G 0 free of 0; node1: 2M 0 free of "
                      "0, 1G 0 free of 0): hugepages=on needs them; sysctl vm.nr_hugepages=N");
    REQUIRE(c.data["nodes"].size() == 2);
    CHECK(c.data["nodes"][1]["node"] == 1);

    two_nodes(h, 512, 0);
    c = check_hugepages(roots_of(h));
    CHECK(c.verdict == Verdict::Warn);
    CHECK(c.detail.starts_with("all 512 reserved 2 MiB huge pages are in use (node0: 2M 0 free of 512,"));

    two_nodes(h, 512, 100);
    c = check_hugepages(roots_of(h));
    CHECK(c.verdict == Verdict::Pass);
    CHECK(c.detail == "node0: 2M 100 free of 512, 1G 0 free of 0; node1: 2M 0 free of 0, 1G 0 free of 0");
    CHECK(c.data["nodes"][0]["2M"]["total"] == 512);
    CHECK(c.data["nodes"][0]["2M"]["free"] == 100);
}

TEST_CASE("host check: numa: nodes with their CPUs and memory") {
    FakeHost h;
    CHECK(check_numa(roots_of(h)).verdict == Verdict::Warn);
    two_nodes(h, 0, 0);
    h.write("sys/devices/system/node/node2/cpulist", "\n"); // memory only
    h.write("sys/devices/system/node/node2/meminfo", "Node 2 MemTotal: 1048576 kB\n");
    const auto c = check_numa(roots_of(h));
    CHECK(c.verdict == Verdict::Pass);
    CHECK(c.detail == "3 nodes: node0 cpus 0-3 8.0 GiB; node1 cpus 4-7 4.0 GiB; node2 cpus none 1.0 GiB");
    REQUIRE(c.data["nodes"].size() == 3);
    CHECK(c.data["nodes"][0]["cpus"] == "0-3");
    CHECK(c.data["nodes"][1]["mem_total_kb"] == 4194304);
}

TEST_CASE("host check: io_uring: the probe decides, the sysctl explains") {
    FakeHost h;
    auto c = check_io_uring(roots_of(h), fake_probes(12));
    CHECK(c.verdict == Verdict::Pass);
    CHECK(c.detail == "io_uring_setup works");
    h.write("proc/sys/kernel/io_uring_disabled", "0\n");
    c = check_io_uring(roots_of(h), fake_probes(12));
    CHECK(c.detail == "io_uring_setup works (io_uring_disabled=0)");
    CHECK(c.data["io_uring_disabled"] == 0);
    h.write("proc/sys/kernel/io_uring_disabled", "2\n");
    c = check_io_uring(roots_of(h), fake_probes(12, EPERM));
    CHECK(c.verdict == Verdict::Fail);
    CHECK(c.detail == "io_uring_setup: Operation not permitted: Kiln's virtio-blk disks need io_uring "
                      "(io_uring_disabled=2: echo 0 > " + h.proc() + "/sys/kernel/io_uring_disabled)");

    const auto here = check_io_uring({}, HostProbes::real());
    MESSAGE("this host: " << here.detail);
}

TEST_CASE("host check: /dev/net/tun and /dev/vhost-net") {
    FakeHost h;
    auto tun = check_tun(roots_of(h));
    CHECK(tun.verdict == Verdict::Fail);
    CHECK(tun.detail == h.dev() + "/net/tun: No such file or directory; TAP networking needs it: modprobe tun");
    h.write("dev/net/tun", "");
    tun = check_tun(roots_of(h));
    CHECK(tun.verdict == Verdict::Pass);
    CHECK(tun.detail == h.dev() + "/net/tun: opens (TAP networking works)");

    auto vhost = check_vhost_net(roots_of(h));
    CHECK(vhost.verdict == Verdict::Warn);
    CHECK(vhost.detail == h.dev() + "/vhost-net absent: Kiln does not use it (its virtio devices run in the VMM, in userspace)");
    h.write("dev/vhost-net", "");
    CHECK(check_vhost_net(roots_of(h)).verdict == Verdict::Pass);
}

TEST_CASE("host check: cpufreq governor per CPU") {
    FakeHost h;
    for (int cpu = 0; cpu < 4; ++cpu) h.mkdir("sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology");
    h.mkdir("sys/devices/system/cpu/cpufreq"); // not a CPU
    auto c = check_cpufreq(roots_of(h));
    CHECK(c.verdict == Verdict::Pass);
    CHECK(c.detail == "no cpufreq: the hypervisor or firmware controls frequency");

    for (int cpu = 0; cpu < 4; ++cpu)
        h.write("sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/cpufreq/scaling_governor", "performance\n");
    c = check_cpufreq(roots_of(h));
    CHECK(c.verdict == Verdict::Pass);
    CHECK(c.detail == "performance on cpu 0-3");

    h.write("sys/devices/system/cpu/cpu2/cpufreq/scaling_governor", "powersave\n");
    h.write("sys/devices/system/cpu/cpu3/cpufreq/scaling_governor", "powersave\n");
    c = check_cpufreq(roots_of(h));
    CHECK(c.verdict == Verdict::Warn);
    CHECK(c.detail == "performance on cpu 0-1, powersave on cpu 2-3: not performance, so vCPU speed follows the "
                      "host's load; cpupower frequency-set -g performance");
    REQUIRE(c.data["cpus"].size() == 4);
    CHECK(c.data["cpus"][2]["governor"] == "powersave");
}

TEST_CASE("host check: the report, aligned, with a summary, and JSON with counts and figures") {
    FakeHost h;
    h.write("dev/kvm", "");
    h.module("kvm_pvm");
    h.write("sys/kernel/mm/ksm/run", "0\n");
    const auto checks = check_host(roots_of(h), fake_probes(12));
    REQUIRE(checks.size() == 10);
    const char* names[] = {"kvm",      "paging", "ksm", "thp",       "hugepages",
                           "numa",     "io_uring", "tun", "vhost-net", "cpufreq"};
    for (size_t i = 0; i < 10; ++i) CHECK(checks[i].name == names[i]);

    const std::string text = format_checks(checks);
    CHECK(text.starts_with("pass  kvm           " + h.dev() + "/kvm: API version 12\n"
                           "warn  paging        kvm_pvm: paravirtualized KVM"));
    CHECK(text.find("\nfail  tun           ") != std::string::npos);
    CHECK(text.ends_with("\n10 checks: 3 pass, 6 warn, 1 fail\n"));
    CHECK(any_failed(checks));

    const auto j = checks_to_json(checks);
    CHECK(j["pass"] == 3);
    CHECK(j["warn"] == 6);
    CHECK(j["fail"] == 1);
    REQUIRE(j["checks"].size() == 10);
    CHECK(j["checks"][0]["name"] == "kvm");
    CHECK(j["checks"][0]["verdict"] == "pass");
    CHECK(j["checks"][0]["api_version"] == 12);
    CHECK(j["checks"][1]["mode"] == "shadow");
    CHECK(j["checks"][2]["run"] == 0);
    // name, verdict and detail come first, then the figures.
    CHECK(j["checks"][0].dump().starts_with(R"({"name":"kvm","verdict":"pass","detail":)"));

    std::vector<Check> fine(1);
    CHECK_FALSE(any_failed(fine));
}

TEST_CASE("host check: cpulists") {
    CHECK(format_cpulist({}) == "");
    CHECK(format_cpulist({3}) == "3");
    CHECK(format_cpulist({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8");
}

TEST_CASE("host check: this host") {
    const auto checks = check_host();
    MESSAGE("\n" << format_checks(checks));
    CHECK(checks.size() == 10);
}
