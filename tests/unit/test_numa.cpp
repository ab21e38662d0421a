// NUMA topology against fake sysfs trees with 1, 2 and 4 nodes (these machines have one),
// numa_maps parsing, and mbind on this host's node 0.
#include <doctest/doctest.h>

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "tests/support/files.hpp"
#include "vmm/base/mmap_region.hpp"
#include "vmm/host/numa.hpp"

using namespace kiln;
using namespace kiln::host;
namespace fs = std::filesystem;

namespace {

// A sysfs tree in a scratch directory, with the files NumaTopology reads.
struct FakeSysfs {
    test::ScratchDir dir{"/tmp/kiln-numa-XXXXXX"};
    [[nodiscard]] std::string root() const { return dir.path.string(); }
    void write(const std::string& rel, const std::string& text) const {
        const fs::path p = dir.path / rel;
        fs::create_directories(p.parent_path());
        std::ofstream(p) << text;
    }
    // A node as the kernel shows it: cpulist with its newline, meminfo's first lines.
    void node(uint32_t id, const std::string& cpulist, uint64_t mem_kib) const {
        const std::string n = "devices/system/node/node" + std::to_string(id);
        write(n + "/cpulist", cpulist + "\n");
        write(n + "/meminfo", fmt::format("Node {} MemTotal:       {} kB\nNode {} MemFree:        {} kB\n"
                                          "Node {} MemUsed:         1024 kB\n",
                                          id, mem_kib, id, mem_kib - 1024, id));
    }
    void online(const std::string& list) const { write("devices/system/node/online", list + "\n"); }
    // What NumaTopology::read says about a tree it must refuse.
    [[nodiscard]] std::string read_error() const {
        const auto t = NumaTopology::read(root());
        REQUIRE_FALSE(t);
        return t.error().message();
    }
};

} // namespace

TEST_CASE("numa: one node") {
    FakeSysfs sys;
    sys.online("0");
    sys.node(0, "0-1", 5728032);
    const auto t = NumaTopology::read(sys.root());
    REQUIRE(t);
    REQUIRE(t->nodes().size() == 1);
    CHECK(t->nodes()[0].id == 0);
    CHECK(t->nodes()[0].cpus.to_string() == "0-1");
    CHECK(t->nodes()[0].memory_bytes == 5728032ULL * 1024);
    CHECK_FALSE(t->synthesized());
    CHECK(t->describe() == "1 node: node0 CPUs 0-1 5593 MiB");
}

TEST_CASE("numa: two nodes with interleaved CPU numbering") {
    FakeSysfs sys;
    sys.online("0-1");
    sys.node(0, "0-7,16-23", 16 << 20);
    sys.node(1, "8-15,24-31", 16 << 20);
    const auto t = NumaTopology::read(sys.root());
    REQUIRE(t);
    REQUIRE(t->nodes().size() == 2);
    CHECK(t->node(0)->cpus.count() == 16);
    CHECK(t->node(1)->cpus.contains(24));
    CHECK_FALSE(t->node(1)->cpus.contains(7));
    CHECK(t->node(2) == nullptr);
    CHECK(t->node_ids() == "0-1");
    CHECK(t->describe() == "2 nodes: node0 CPUs 0-7,16-23 16384 MiB, node1 CPUs 8-15,24-31 16384 MiB");
}

TEST_CASE("numa: four nodes, one of them memory only, and a gap in the node ids") {
    FakeSysfs sys;
    sys.online("0-2,4");
    sys.node(0, "0-3", 8 << 20);
    sys.node(1, "4-7", 8 << 20);
    sys.node(2, "8-11", 8 << 20);
    sys.node(4, "", 64 << 20); // CXL memory: a node with no CPUs
    sys.node(3, "12-15", 8 << 20); // offline: not in `online`, so not read
    const auto t = NumaTopology::read(sys.root());
    REQUIRE(t);
    REQUIRE(t->nodes().size() == 4);
    CHECK(t->node_ids() == "0-2,4");
    CHECK(t->node(3) == nullptr);
    REQUIRE(t->node(4));
    CHECK(t->node(4)->cpus.empty());
    CHECK(t->node(4)->memory_bytes == 64ULL << 30);
    CHECK(t->describe().ends_with(", node4 CPUs none 65536 MiB"));
}

TEST_CASE("numa: without an online file the nodeN directories count") {
    FakeSysfs sys;
    sys.node(1, "2-3", 1 << 20);
    sys.node(0, "0-1", 1 << 20);
    sys.write("devices/system/node/possible", "0-1\n");
    sys.write("devices/system/node/power/control", "auto\n");
    const auto t = NumaTopology::read(sys.root());
    REQUIRE(t);
    REQUIRE(t->nodes().size() == 2);
    CHECK(t->nodes()[0].id == 0);
    CHECK(t->nodes()[1].cpus.to_string() == "2-3");
}

TEST_CASE("numa: a kernel without NUMA is one node 0 with every online CPU") {
    FakeSysfs sys;
    sys.write("devices/system/cpu/online", "0-5\n");
    const auto t = NumaTopology::read(sys.root());
    REQUIRE(t);
    REQUIRE(t->nodes().size() == 1);
    CHECK(t->nodes()[0].id == 0);
    CHECK(t->nodes()[0].cpus.to_string() == "0-5");
    CHECK(t->nodes()[0].memory_bytes == 0);
    CHECK(t->synthesized());
    CHECK(t->describe() == "1 node (no NUMA in sysfs): node0 CPUs 0-5");
}

TEST_CASE("numa: malformed or missing files are errors naming the file") {
    SUBCASE("a malformed cpulist") {
        FakeSysfs sys;
        sys.online("0-1");
        sys.node(0, "0-3", 1 << 20);
        sys.node(1, "4-x", 1 << 20);
        CHECK(sys.read_error() == fmt::format("'{}/devices/system/node/node1/cpulist': invalid CPU list '4-x': "
                                              "'4-x' is not a number or a range A-B (expected numbers and "
                                              "ranges like 0-3,8,10-11)",
                                              sys.root()));
    }
    SUBCASE("a malformed online list") {
        FakeSysfs sys;
        sys.online("0-");
        sys.node(0, "0-3", 1 << 20);
        CHECK(sys.read_error().starts_with(
            fmt::format("'{}/devices/system/node/online': invalid node list '0-'", sys.root())));
    }
    SUBCASE("an online node without its directory") {
        FakeSysfs sys;
        sys.online("0-1");
        sys.node(0, "0-3", 1 << 20);
        CHECK(sys.read_error() ==
              fmt::format("opening '{}/devices/system/node/node1/cpulist': No such file or directory", sys.root()));
    }
    SUBCASE("meminfo without MemTotal") {
        FakeSysfs sys;
        sys.online("0");
        sys.node(0, "0-3", 1 << 20);
        sys.write("devices/system/node/node0/meminfo", "Node 0 MemFree: 5 kB\n");
        CHECK(sys.read_error() ==
              fmt::format("'{}/devices/system/node/node0/meminfo': no 'Node 0 MemTotal:' line", sys.root()));
    }
    SUBCASE("meminfo with a bad number") {
        FakeSysfs sys;
        sys.online("0");
        sys.node(0, "0-3", 1 << 20);
        sys.write("devices/system/node/node0/meminfo", "Node 0 MemTotal: lots kB\n");
        CHECK(sys.read_error().ends_with("malformed MemTotal line 'Node 0 MemTotal: lots kB'"));
    }
    SUBCASE("no node directory and no cpu/online either") {
        FakeSysfs sys;
        CHECK(sys.read_error().starts_with("no NUMA nodes in sysfs: opening '"));
    }
    SUBCASE("an empty online list") {
        FakeSysfs sys;
        sys.online("");
        CHECK(sys.read_error().ends_with("/devices/system/node': no NUMA nodes online"));
    }
}

TEST_CASE("numa: this host's topology covers the CPUs kiln may use") {
    const auto t = NumaTopology::read();
    REQUIRE(t);
    MESSAGE("this host: " << t->describe());
    REQUIRE_FALSE(t->nodes().empty());
    CpuSet all;
    for (const auto& n : t->nodes()) all = all | n.cpus;
    const auto allowed = allowed_cpus();
    REQUIRE(allowed);
    CHECK(allowed->subset_of(all));
}

TEST_CASE("numa: numa_maps lines") {
    const std::string text =
        "55d0c0a00000 default file=/usr/bin/kiln mapped=10 N0=10 kernelpagesize_kB=4\n"
        "7f3c00000000 bind:0 anon=512 dirty=512 active=0 N0=512 kernelpagesize_kB=4\n"
        "7f3d00000000 interleave:0-1 anon=4 dirty=4 N0=2 N1=2 kernelpagesize_kB=4\n"
        "7f3e00000000 prefer:1 file=/dev/hugepages/x huge dirty=2 N1=2 kernelpagesize_kB=2048\n"
        "7ffd1c000000 default stack anon=3 dirty=3 N0=3 kernelpagesize_kB=4\n"
        "7ffd1c100000 default\n";
    const auto maps = parse_numa_maps(text);
    REQUIRE(maps);
    REQUIRE(maps->size() == 6);
    const auto& bound = (*maps)[1];
    CHECK(bound.start == 0x7f3c00000000ULL);
    CHECK(bound.policy == "bind:0");
    CHECK(bound.node_pages == std::map<uint32_t, uint64_t>{{0, 512}});
    CHECK(bound.page_size_kib == 4);
    CHECK((*maps)[2].node_pages == std::map<uint32_t, uint64_t>{{0, 2}, {1, 2}});
    CHECK((*maps)[3].policy == "prefer:1");
    CHECK((*maps)[3].page_size_kib == 2048);
    CHECK((*maps)[5].node_pages.empty()); // nothing resident yet

    for (const char* bad : {"zz default", "7f3c00000000", "7f3c00000000 bind:0 N0=many"}) {
        CAPTURE(bad);
        const auto e = parse_numa_maps_line(bad);
        REQUIRE_FALSE(e);
        CHECK(e.error().message().starts_with(fmt::format("malformed numa_maps line '{}'", bad)));
    }
}

TEST_CASE("numa: bind_memory puts touched pages on node 0 and numa_maps shows bind:0") {
    const size_t len = 4 << 20;
    auto region = MmapRegion::anonymous(len);
    REQUIRE(region);
    const auto bound = bind_memory(region->data(), len, 0);
    if (!bound && bound.error().message().find("CONFIG_NUMA") != std::string::npos) {
        MESSAGE("skipped: " << bound.error().message());
        return;
    }
    REQUIRE_MESSAGE(bound, (bound ? "" : bound.error().message()));
    std::memset(region->data(), 0x5a, len);

    const auto maps = read_numa_maps();
    REQUIRE(maps);
    const auto start = reinterpret_cast<uintptr_t>(region->data());
    const NumaMapsEntry* entry = nullptr;
    for (const auto& e : *maps)
        if (e.start == start) entry = &e;
    REQUIRE_MESSAGE(entry, "no numa_maps line at the bound region");
    CHECK(entry->policy == "bind:0");
    REQUIRE(entry->node_pages.contains(0));
    CHECK(entry->node_pages.size() == 1);
    // Counted in base pages even when THP backs the region.
    CHECK(entry->node_pages.at(0) * entry->page_size_kib * 1024 == len);
}

TEST_CASE("numa: bind_memory errors") {
    const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    auto region = MmapRegion::anonymous(2 * page);
    REQUIRE(region);
    const auto unaligned = bind_memory(region->data() + 1, page, 0);
    REQUIRE_FALSE(unaligned);
    CHECK(unaligned.error().message().ends_with("is not page aligned"));

    const auto too_big = bind_memory(region->data(), page, 1024);
    REQUIRE_FALSE(too_big);
    CHECK(too_big.error().message() == "binding memory to node 1024: node ids go up to 1023");

    // No host here has node 1000; the kernel refuses it.
    const auto missing = bind_memory(region->data(), page, 1000);
    REQUIRE_FALSE(missing);
    const std::string m = missing.error().message();
    CHECK(m.find("to NUMA node 1000 (mbind)") != std::string::npos);
    const bool explained = m.ends_with("the host has no such node, or kiln's cpuset may not use its memory") ||
                           m.ends_with("the kernel has no NUMA support (CONFIG_NUMA)");
    CHECK_MESSAGE(explained, m);
}
