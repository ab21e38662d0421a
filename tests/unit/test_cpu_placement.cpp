// vCPU placement: every rule and every error against 2- and 4-node topologies with
// cpusets that cover some or part of a node, --vcpu-affinity parsing, and real thread
// pinning read back from /proc/self/task/TID/status.
#include <doctest/doctest.h>

#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "vmm/host/cpu_placement.hpp"

using namespace kiln;
using namespace kiln::host;

namespace {

CpuSet cpus(const char* list) {
    auto s = parse_cpulist(list);
    REQUIRE(s);
    return *s;
}

NumaNode node(uint32_t id, const char* list) { return NumaNode{id, cpus(list), 8ULL << 30}; }

NumaTopology two_nodes() { return NumaTopology({node(0, "0-3"), node(1, "4-7")}); }
// Node 3 is memory only (CXL).
NumaTopology four_nodes() { return NumaTopology({node(0, "0-3"), node(1, "4-7"), node(2, "8-11"), node(3, "")}); }

std::vector<VcpuAffinity> affinity(const char* spec) {
    auto a = parse_vcpu_affinity(spec);
    REQUIRE_MESSAGE(a, (a ? "" : a.error().message()));
    return *a;
}

// "0 | 1 | 4-5": each vCPU's CPUs, to compare a whole plan at a glance.
std::string pins(const Placement& p) {
    std::string out;
    for (size_t v = 0; v < p.vcpu_cpus.size(); ++v) out += (v ? " | " : "") + p.vcpu_cpus[v].to_string();
    return out;
}

Placement plan_ok(const NumaTopology& t, const char* allowed, uint32_t vcpus, std::optional<uint32_t> node_id,
                  const std::vector<VcpuAffinity>& explicit_affinity = {}) {
    auto p = plan_vcpu_placement(t, cpus(allowed), vcpus, node_id, explicit_affinity);
    REQUIRE_MESSAGE(p, (p ? "" : p.error().message()));
    return *p;
}

std::string plan_error(const NumaTopology& t, const char* allowed, uint32_t vcpus, std::optional<uint32_t> node_id,
                       const std::vector<VcpuAffinity>& explicit_affinity = {}) {
    auto p = plan_vcpu_placement(t, cpus(allowed), vcpus, node_id, explicit_affinity);
    REQUIRE_FALSE(p);
    return p.error().message();
}

} // namespace

TEST_CASE("vcpu affinity: the grammar") {
    CHECK(affinity("0=2,1=3") == std::vector<VcpuAffinity>{{0, CpuSet{2}}, {1, CpuSet{3}}});
    CHECK(affinity("0=2-3,1=4-5") == std::vector<VcpuAffinity>{{0, CpuSet{2, 3}}, {1, CpuSet{4, 5}}});
    // A piece without '=' continues the previous vCPU's CPU list.
    CHECK(affinity("0=2-3,8,1=4") == std::vector<VcpuAffinity>{{0, CpuSet{2, 3, 8}}, {1, CpuSet{4}}});
    CHECK(affinity("3=0") == std::vector<VcpuAffinity>{{3, CpuSet{0}}});
    // Parsing keeps duplicates; the plan refuses them (they may come from two flags).
    CHECK(affinity("0=1,0=2").size() == 2);

    struct Case {
        const char* spec;
        const char* why;
    } cases[] = {
        {"", "empty"},
        {"2", "'2' does not start with a vCPU number and '='"},
        {"=2", "'' is not a vCPU number"},
        {"x=2", "'x' is not a vCPU number"},
        {"-1=2", "'-1' is not a vCPU number"},
        {"0=", "vCPU 0 has no CPUs after '='"},
        {"0=2,1=", "vCPU 1 has no CPUs after '='"},
        {"0=2,", "vCPU 0: invalid CPU list '2,': an empty entry"},
        {"0=2,,1=3", "vCPU 0: invalid CPU list '2,': an empty entry"},
        {"0=3-1", "vCPU 0: invalid CPU list '3-1': range '3-1' ends before it starts"},
        {"0=a", "vCPU 0: invalid CPU list 'a': 'a' is not a number"},
        {"0=2;1=3", "vCPU 0: invalid CPU list '2;1=3': '2;1=3' is not a number"},
        {"0=4096", "vCPU 0: invalid CPU list '4096': CPU 4096 is beyond the 1024 CPUs kiln supports"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.spec);
        const auto a = parse_vcpu_affinity(c.spec);
        REQUIRE_FALSE(a);
        CHECK(a.error().message().starts_with(fmt::format("--vcpu-affinity '{}': {}", c.spec, c.why)));
        CHECK(a.error().message().ends_with("(expected entries VCPU=CPULIST, like 0=2,1=3 or 0=2-3,1=4-5)"));
    }
}

TEST_CASE("placement: no flags keeps every vCPU inside the allowed CPUs and lets the kernel spread them") {
    const auto p = plan_ok(two_nodes(), "0-7", 4, std::nullopt);
    CHECK(pins(p) == "0-7 | 0-7 | 0-7 | 0-7");
    CHECK(p.io_cpus.to_string() == "0-7");
    CHECK_FALSE(p.memory_node);
    CHECK(p.description ==
          "placement (CPUs kiln may use 0-7): vcpu0=0-7 vcpu1=0-7 vcpu2=0-7 vcpu3=0-7 (no placement flags: spread "
          "over 0-7 by the kernel); I/O threads on 0-7; guest memory not bound");
}

TEST_CASE("placement: no flags respects a cpuset that straddles two nodes, or is sparse") {
    const auto p = plan_ok(two_nodes(), "2-5", 4, std::nullopt);
    CHECK(pins(p) == "2-5 | 2-5 | 2-5 | 2-5");
    CHECK(p.io_cpus.to_string() == "2-5");
    const auto sparse = plan_ok(four_nodes(), "1,6,9", 3, std::nullopt);
    CHECK(pins(sparse) == "1,6,9 | 1,6,9 | 1,6,9");
}

TEST_CASE("placement: no flags, more vCPUs than allowed CPUs: each vCPU on the whole allowed set") {
    const auto p = plan_ok(two_nodes(), "0-1", 3, std::nullopt);
    CHECK(pins(p) == "0-1 | 0-1 | 0-1");
    CHECK(p.io_cpus.to_string() == "0-1");
    CHECK(p.description ==
          "placement (CPUs kiln may use 0-1): vcpu0=0-1 vcpu1=0-1 vcpu2=0-1 (no placement flags: spread over 0-1 by "
          "the kernel); I/O threads on 0-1; guest memory not bound");
}

TEST_CASE("placement: --numa-node pins to the node's CPUs and binds memory there") {
    const auto p = plan_ok(two_nodes(), "0-7", 2, 1);
    CHECK(pins(p) == "4 | 5");
    CHECK(p.io_cpus.to_string() == "4-7");
    CHECK(p.memory_node == 1);
    CHECK(p.description ==
          "placement (CPUs kiln may use 0-7, --numa-node 1 (CPUs 4-7)): vcpu0=4 vcpu1=5; I/O threads on 4-7; "
          "guest memory bound to node 1");

    const auto all = plan_ok(four_nodes(), "0-11", 4, 2);
    CHECK(pins(all) == "8 | 9 | 10 | 11");
    CHECK(all.memory_node == 2);
}

TEST_CASE("placement: --numa-node within a cpuset that holds part of the node") {
    const auto p = plan_ok(four_nodes(), "0-5", 2, 1);
    CHECK(pins(p) == "4 | 5");
    CHECK(p.io_cpus.to_string() == "4-5");
    // Oversubscribed: 3 vCPUs on the 2 CPUs of node 1 that kiln may use.
    const auto over = plan_ok(four_nodes(), "0-5", 3, 1);
    CHECK(pins(over) == "4-5 | 4-5 | 4-5");
    CHECK(over.io_cpus.to_string() == "4-5");
    CHECK(over.memory_node == 1);
}

TEST_CASE("placement: --vcpu-affinity pins listed vCPUs, the rest take the CPUs nobody named") {
    const auto p = plan_ok(two_nodes(), "0-7", 4, std::nullopt, affinity("0=2,1=3"));
    CHECK(pins(p) == "2 | 3 | 0 | 1");
    CHECK(p.io_cpus.to_string() == "0-7");
    CHECK(p.description.starts_with("placement (CPUs kiln may use 0-7, --vcpu-affinity): vcpu0=2 vcpu1=3 "));

    const auto ranges = plan_ok(two_nodes(), "0-7", 2, std::nullopt, affinity("1=4-5,7"));
    CHECK(pins(ranges) == "0 | 4-5,7");

    // Every vCPU listed: nothing else is decided.
    const auto all = plan_ok(two_nodes(), "0-7", 2, std::nullopt, affinity("0=7,1=7"));
    CHECK(pins(all) == "7 | 7");

    // Unlisted vCPUs outnumber the free CPUs: they share the whole pool.
    const auto over = plan_ok(two_nodes(), "0-3", 5, std::nullopt, affinity("0=0,1=1"));
    CHECK(pins(over) == "0 | 1 | 0-3 | 0-3 | 0-3");
    CHECK(over.description.find("(3 vCPUs share 4 CPUs, balanced by the kernel)") != std::string::npos);
    const auto fits = plan_ok(two_nodes(), "0-3", 4, std::nullopt, affinity("0=0,1=1"));
    CHECK(pins(fits) == "0 | 1 | 2 | 3");
}

TEST_CASE("placement: --numa-node with --vcpu-affinity inside the node") {
    const auto p = plan_ok(two_nodes(), "0-7", 3, 1, affinity("2=6-7"));
    CHECK(pins(p) == "4 | 5 | 6-7");
    CHECK(p.memory_node == 1);
    CHECK(p.io_cpus.to_string() == "4-7");
}

TEST_CASE("placement: errors") {
    const auto two = two_nodes();
    const auto four = four_nodes();
    CHECK(plan_error(two, "0-3", 2, std::nullopt, affinity("1=5")) ==
          "--vcpu-affinity: vCPU 1 -> CPU 5 is outside the CPUs kiln may use (0-3)");
    CHECK(plan_error(two, "0-3", 2, std::nullopt, affinity("0=2-4")) ==
          "--vcpu-affinity: vCPU 0 -> CPU 4 is outside the CPUs kiln may use (0-3)");
    CHECK(plan_error(two, "0-7", 2, 0, affinity("0=5")) ==
          "--vcpu-affinity: vCPU 0 -> CPU 5 is outside node 0's CPUs that kiln may use (0-3)");
    CHECK(plan_error(two, "0-2,4-7", 2, 0, affinity("0=3")) ==
          "--vcpu-affinity: vCPU 0 -> CPU 3 is outside the CPUs kiln may use (0-2,4-7)");
    CHECK(plan_error(two, "0-7", 2, std::nullopt, affinity("2=1")) ==
          "--vcpu-affinity: vCPU 2 does not exist (the VM has 2 vCPUs: 0-1)");
    CHECK(plan_error(two, "0-7", 1, std::nullopt, affinity("1=1")) ==
          "--vcpu-affinity: vCPU 1 does not exist (the VM has 1 vCPU: 0)");
    CHECK(plan_error(two, "0-7", 2, std::nullopt, affinity("1=1,0=0,1=2")) ==
          "--vcpu-affinity: vCPU 1 is listed twice");
    CHECK(plan_error(two, "0-7", 2, std::nullopt, {VcpuAffinity{0, CpuSet{}}}) ==
          "--vcpu-affinity: vCPU 0 has no CPUs");
    CHECK(plan_error(two, "0-7", 2, 5) == "--numa-node 5: the host has no NUMA node 5 (its nodes: 0-1)");
    CHECK(plan_error(four, "0-11", 2, 3) == "--numa-node 3: node 3 has memory but no CPUs to run vCPUs on");
    CHECK(plan_error(two, "0-3", 2, 1) ==
          "--numa-node 1: none of node 1's CPUs (4-7) are among the CPUs kiln may use (0-3)");
    CHECK(plan_error(two, "0-7", 0, std::nullopt) == "placing vCPUs: the VM has no vCPUs");
    CHECK(plan_error(two, "", 1, std::nullopt) == "placing vCPUs: kiln may run on no CPU at all (empty affinity)");
}

TEST_CASE("placement: a synthesized single-node topology (no NUMA in sysfs) takes --numa-node 0") {
    const NumaTopology t({NumaNode{0, cpus("0-1"), 0}}, true);
    const auto p = plan_ok(t, "0-1", 2, 0);
    CHECK(pins(p) == "0 | 1");
    CHECK(p.memory_node == 0);
}

TEST_CASE("cpus allowed: the status line") {
    const auto set = parse_cpus_allowed_list("Name:\tvcpu0\nCpus_allowed:\t3\nCpus_allowed_list:\t0-1\nMems_allowed:\t1\n");
    REQUIRE(set);
    CHECK(set->to_string() == "0-1");
    const auto missing = parse_cpus_allowed_list("Name:\tx\n");
    REQUIRE_FALSE(missing);
    CHECK(missing.error().message() == "no Cpus_allowed_list line in the status text");
    const auto bad = parse_cpus_allowed_list("Cpus_allowed_list:\t0-\n");
    REQUIRE_FALSE(bad);
    CHECK(bad.error().message().starts_with("Cpus_allowed_list: invalid CPU list '0-'"));
}

TEST_CASE("pinning: a std::thread pinned to one CPU, read back from /proc/self/task/TID/status") {
    const auto allowed = allowed_cpus();
    REQUIRE(allowed);
    const uint32_t target = allowed->cpus().back();

    std::atomic<pid_t> tid{0};
    std::atomic<bool> go{false};
    std::atomic<int> ran_on{-1};
    std::thread t([&] {
        tid = ::gettid();
        while (!go) std::this_thread::yield();
        std::this_thread::yield(); // after the affinity change the next run is on the target
        ran_on = ::sched_getcpu();
    });
    while (tid == 0) std::this_thread::yield();

    CHECK(read_cpus_allowed(0, tid).value() == *allowed); // inherited from this thread
    const auto pinned = pin_thread(t.native_handle(), CpuSet{target});
    REQUIRE_MESSAGE(pinned, (pinned ? "" : pinned.error().message()));
    const auto seen = read_cpus_allowed(0, tid);
    REQUIRE(seen);
    CHECK(*seen == CpuSet{target});
    go = true;
    t.join();
    CHECK(ran_on == static_cast<int>(target));
}

TEST_CASE("pinning: pin_task by thread id, and the errors") {
    const auto allowed = allowed_cpus();
    REQUIRE(allowed);
    std::atomic<pid_t> tid{0};
    std::atomic<bool> done{false};
    std::thread t([&] {
        tid = ::gettid();
        while (!done) std::this_thread::yield();
    });
    while (tid == 0) std::this_thread::yield();

    const CpuSet first{allowed->cpus().front()};
    REQUIRE(pin_task(tid, first));
    CHECK(read_cpus_allowed(::getpid(), tid).value() == first);
    REQUIRE(pin_task(tid, *allowed));
    CHECK(read_cpus_allowed(0, tid).value() == *allowed);

    // A CPU this host does not have.
    const auto none = pin_thread(t.native_handle(), CpuSet{1000});
    REQUIRE_FALSE(none);
    CHECK(none.error().message() == "pinning a thread to CPUs 1000: Invalid argument");
    const auto by_tid = pin_task(tid, CpuSet{1000});
    REQUIRE_FALSE(by_tid);
    CHECK(by_tid.error().message() == fmt::format("pinning thread {} to CPUs 1000: Invalid argument", tid.load()));
    CHECK(read_cpus_allowed(0, tid).value() == *allowed); // unchanged by the failures
    done = true;
    t.join();

    // No thread has this id (pid_max is at most 2^22).
    const auto gone = read_cpus_allowed(0, 1 << 30);
    REQUIRE_FALSE(gone);
    CHECK(gone.error().message() == "opening '/proc/self/task/1073741824/status': No such file or directory");
}
