// Placement on the real host: vCPU threads pinned as --vcpu-affinity / --numa-node say,
// disk workers on the I/O CPUs, guest memory bound to the node, and the cpuset kiln was
// started in respected. Checked from outside the running kiln, as an operator would:
// /proc/PID/task/TID/status (Cpus_allowed_list) and /proc/PID/numa_maps.
#include <doctest/doctest.h>

#include <sched.h>
#include <sys/stat.h>

#include <chrono>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "tests/support/background.hpp"
#include "tests/support/files.hpp"
#include "tests/support/process.hpp"
#include "vmm/host/disk_irq.hpp"

using namespace kiln::test;

namespace {

std::vector<int> allowed_cpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    REQUIRE(::sched_getaffinity(0, sizeof set, &set) == 0);
    std::vector<int> cpus;
    for (int i = 0; i < CPU_SETSIZE; ++i)
        if (CPU_ISSET(i, &set)) cpus.push_back(i);
    return cpus;
}

// What the worker of a disk on `file` should be allowed: the CPUs that take the
// interrupts of the device under it (host::disk_irq_cpus, unit-tested on fake trees),
// within the allowed CPUs, off the pinned vCPUs' CPUs; all allowed CPUs otherwise.
std::string expected_worker_cpus(const std::string& file, const std::vector<int>& allowed,
                                 const kiln::host::CpuSet& vcpu_only) {
    struct stat st{};
    REQUIRE(::stat(file.c_str(), &st) == 0);
    kiln::host::CpuSet io;
    for (const int c : allowed) io = io | kiln::host::CpuSet{static_cast<uint32_t>(c)};
    return kiln::host::disk_worker_cpus(io, kiln::host::disk_irq_cpus(st.st_dev), vcpu_only).to_string();
}

} // namespace

TEST_CASE("placement: --vcpu-affinity pins each vCPU thread, disk workers stay on the I/O CPUs") {
    const auto cpus = allowed_cpus();
    if (cpus.size() < 2) {
        MESSAGE("needs two CPUs");
        return;
    }
    ScratchDir dir;
    const std::string disk = dir / "d.raw";
    write_bytes(disk, std::vector<uint8_t>(1 << 20, 0));
    const int a = cpus[0], b = cpus[1];
    Background kiln(kiln_argv({"run", "--kernel", TESTGUEST_ELF, "--memory", "128M", "--cpus", "2",
                               "--vcpu-affinity", fmt::format("0={},1={}", b, a), "--disk", "path=" + disk,
                               "--cmdline", "job=blk-bench pattern=randread qd=4 seconds=2"}));
    const auto t = kiln.threads({"vcpu0", "vcpu1", "blk0-q0"});
    std::string names;
    for (const auto& [n, c] : t) names += n + "=" + c + " ";
    CAPTURE(names);
    REQUIRE(t.count("vcpu0"));
    REQUIRE(t.count("vcpu1"));
    CHECK(t.at("vcpu0") == std::to_string(b));
    CHECK(t.at("vcpu1") == std::to_string(a));
    // The queue worker starts from vcpu0's thread at DRIVER_OK, yet does not inherit
    // its pinning: it runs on the I/O CPUs (all allowed CPUs here), on those that take
    // the disk's interrupts if any is free of a pinned vCPU.
    REQUIRE(t.count("blk0-q0"));
    CHECK(t.at("blk0-q0") == expected_worker_cpus(disk, cpus, kiln::host::CpuSet{uint32_t(a), uint32_t(b)}));
    CHECK(kiln.wait() == 0);
}

TEST_CASE("placement: without flags a disk's queue worker runs on the CPUs that take its device's interrupts") {
    const auto cpus = allowed_cpus();
    ScratchDir dir("/var/tmp/kiln-irq-XXXXXX"); // a real block device, unlike a tmpfs /tmp
    const std::string disk = dir / "d.raw";
    write_bytes(disk, std::vector<uint8_t>(1 << 20, 0));
    const std::string stats = dir / "stats.json";
    Background kiln(kiln_argv({"run", "--kernel", TESTGUEST_ELF, "--memory", "128M", "--disk",
                               "path=" + disk + ",cache=none", "--stats-json", stats, "--cmdline",
                               "job=blk-bench pattern=randread qd=4 seconds=2"}));
    const auto t = kiln.threads({"vcpu0", "blk0-q0"});
    REQUIRE(t.count("blk0-q0"));
    REQUIRE(t.count("vcpu0"));
    const std::string expected = expected_worker_cpus(disk, cpus, {});
    MESSAGE("disk worker on CPUs " << t.at("blk0-q0") << ", allowed " << cpus.front() << "-" << cpus.back());
    CHECK(t.at("blk0-q0") == expected);
    CHECK(t.at("vcpu0") == fmt::format("{}-{}", cpus.front(), cpus.back())); // vCPUs still float
    CHECK(kiln.wait() == 0);
    // The run's statistics say where the workers were put, for schedulers and operators.
    const auto j = nlohmann::json::parse(read_text(stats));
    CHECK(j["disks"][0]["worker_cpus"] == expected);
}

TEST_CASE("placement: --numa-node 0 pins vCPUs one per node CPU and binds guest memory to the node") {
    ScratchDir dir;
    const std::string cpulist = read_text("/sys/devices/system/node/node0/cpulist");
    REQUIRE_FALSE(cpulist.empty());
    const auto cpus = allowed_cpus();
    Background kiln(kiln_argv({"run", "--kernel", TESTGUEST_ELF, "--memory", "128M", "--cpus", "2", "--numa-node",
                               "0", "--cmdline", "job=memfill mib=32 hold=3"}));
    const auto t = kiln.threads({"vcpu0", "vcpu1"});
    REQUIRE(t.count("vcpu0"));
    REQUIRE(t.count("vcpu1"));
    if (cpus.size() >= 2) {
        CHECK(t.at("vcpu0") == std::to_string(cpus[0]));
        CHECK(t.at("vcpu1") == std::to_string(cpus[1]));
    }
    // Give memfill time to touch its 32 MiB, then count the node-0 pages under bind:0.
    uint64_t bound_pages = 0;
    for (int i = 0; i < 100 && bound_pages < 8192; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        bound_pages = 0;
        std::istringstream maps(read_text(fmt::format("/proc/{}/numa_maps", kiln.pid())));
        for (std::string line; std::getline(maps, line);) {
            if (line.find(" bind:0 ") == std::string::npos) continue;
            const auto n0 = line.find(" N0=");
            if (n0 != std::string::npos) bound_pages += std::stoull(line.substr(n0 + 4));
        }
    }
    CHECK(bound_pages >= 8192); // 32 MiB of 4 KiB pages, all on node 0 under MPOL_BIND
    CHECK(kiln.wait() == 0);
}

TEST_CASE("placement: kiln stays inside the cpuset it was started in, and a request outside it is one line") {
    const auto cpus = allowed_cpus();
    if (cpus.size() < 2) {
        MESSAGE("needs two CPUs");
        return;
    }
    const int last = cpus.back();
    // No flags under `taskset -c LAST`: both vCPUs may run only there.
    Background kiln(kiln_argv({"run", "--kernel", TESTGUEST_ELF, "--memory", "128M", "--cpus", "2", "--cmdline",
                               "job=memfill mib=1 hold=2"},
                              {"taskset", "-c", std::to_string(last)}));
    const auto t = kiln.threads({"vcpu0", "vcpu1"});
    REQUIRE(t.count("vcpu0"));
    CHECK(t.at("vcpu0") == std::to_string(last));
    CHECK(t.at("vcpu1") == std::to_string(last));
    CHECK(kiln.wait() == 0);

    auto r = run_process({"taskset", "-c", std::to_string(last), KILN_BIN, "run", "--kernel", TESTGUEST_ELF,
                          "--vcpu-affinity", fmt::format("0={}", cpus.front()), "--cmdline", "job=exit"});
    CHECK(r.exit_code == 125);
    CHECK(r.err == fmt::format("kiln: error: --vcpu-affinity: vCPU 0 -> CPU {} is outside the CPUs kiln may use "
                               "({})\n",
                               cpus.front(), last));
    auto node = run_kiln({"run", "--kernel", TESTGUEST_ELF, "--numa-node", "7", "--cmdline", "job=exit"});
    CHECK(node.exit_code == 125);
    CHECK(node.err.find("--numa-node 7: the host has no NUMA node 7") != std::string::npos);
}
