// --memory SIZE,OPTIONS parsing, the huge page pool check, and the run statistics'
// parsers (schedstat, smaps_rollup, ksm_stat) and JSON form.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "tests/support/files.hpp"
#include "vmm/machine/run_stats.hpp"
#include "vmm/memory/guest_memory.hpp"
#include "vmm/memory/memory_backing.hpp"

using namespace kiln;

namespace {
std::string spec_error(const char* text) {
    auto r = parse_memory_spec(text);
    REQUIRE_FALSE(r);
    return r.error().message();
}
} // namespace

TEST_CASE("memory spec: size alone, and each option") {
    auto plain = parse_memory_spec("512M");
    REQUIRE(plain);
    CHECK(plain->bytes == 512ull << 20);
    CHECK(plain->backing == MemoryBacking{});
    CHECK(plain->backing.use_thp()); // the default, as QEMU
    CHECK(plain->backing.describe() == "THP");

    auto huge = parse_memory_spec("2G,hugepages=on");
    REQUIRE(huge);
    CHECK(huge->bytes == 2ull << 30);
    CHECK(huge->backing.hugepages);
    CHECK_FALSE(huge->backing.use_thp());
    CHECK(huge->backing.describe() == "hugetlb 2M pages");

    auto fs = parse_memory_spec("1G,hugepages=on,hugetlbfs=/dev/hugepages");
    REQUIRE(fs);
    CHECK(fs->backing.hugetlbfs == "/dev/hugepages");
    CHECK(fs->backing.describe() == "hugetlbfs /dev/hugepages");

    auto merge = parse_memory_spec("1G,merge=on");
    REQUIRE(merge);
    CHECK(merge->backing.merge);
    CHECK_FALSE(merge->backing.use_thp()); // KSM would split every huge page
    CHECK(merge->backing.describe() == "4K pages, KSM merge");

    auto both = parse_memory_spec("1G,merge=on,thp=on");
    REQUIRE(both);
    CHECK(both->backing.use_thp()); // asked for explicitly
    CHECK(both->backing.describe() == "THP, KSM merge");

    auto off = parse_memory_spec("1G,thp=off");
    REQUIRE(off);
    CHECK_FALSE(off->backing.use_thp());
    CHECK(off->backing.describe() == "4K pages");
}

TEST_CASE("memory spec: every mistake is one clear message") {
    CHECK(spec_error("1G,merge=on,hugepages=on").find("KSM does not merge hugetlb pages") != std::string::npos);
    CHECK(spec_error("1G,hugepages=on,thp=on").find("cannot be combined") != std::string::npos);
    CHECK(spec_error("1G,hugetlbfs=/dev/hugepages").find("hugetlbfs= needs hugepages=on") != std::string::npos);
    CHECK(spec_error("1G,hugepages=yes").find("hugepages='yes' is not on or off") != std::string::npos);
    CHECK(spec_error("1G,frob=on").find("unknown option 'frob'") != std::string::npos);
    CHECK(spec_error("1G,thp").find("'thp' is not KEY=VALUE") != std::string::npos);
    CHECK(spec_error("1G,").find("empty option") != std::string::npos);
    CHECK(spec_error("1G,thp=on,").find("empty option") != std::string::npos);
    CHECK(spec_error("1G,thp=on,thp=off").find("thp given twice") != std::string::npos);
    CHECK(spec_error("lots,thp=on").find("--memory: invalid size 'lots'") != std::string::npos);
    CHECK(spec_error("1G,hugepages=on,hugetlbfs=").find("needs the directory") != std::string::npos);
}

TEST_CASE("huge page pool: read from sysfs, and a shortage names the command that fixes it") {
    test::ScratchDir dir;
    const auto global = dir.path / "kernel/mm/hugepages/hugepages-2048kB";
    const auto node1 = dir.path / "devices/system/node/node1/hugepages/hugepages-2048kB";
    std::filesystem::create_directories(global);
    std::filesystem::create_directories(node1);
    std::ofstream(global / "nr_hugepages") << "100\n";
    std::ofstream(global / "free_hugepages") << "40\n";
    std::ofstream(node1 / "nr_hugepages") << "10\n";
    std::ofstream(node1 / "free_hugepages") << "10\n";

    auto pool = read_huge_page_pool(std::nullopt, dir.path.string());
    REQUIRE(pool);
    CHECK(pool->total == 100);
    CHECK(pool->free == 40);
    auto n1 = read_huge_page_pool(1u, dir.path.string());
    REQUIRE(n1);
    CHECK(n1->total == 10);
    CHECK_FALSE(read_huge_page_pool(2u, dir.path.string())); // no such node

    CHECK(check_huge_page_pool(80ull << 20, *pool, std::nullopt)); // 40 pages: exactly enough
    auto short_global = check_huge_page_pool(81ull << 20, *pool, std::nullopt);
    REQUIRE_FALSE(short_global);
    CHECK(short_global.error().message() ==
          "hugepages=on: 81 MiB of guest memory needs 41 huge pages of 2 MiB, 40 of 100 reserved are free: "
          "reserve more with 'sysctl vm.nr_hugepages=101'");
    auto short_node = check_huge_page_pool(64ull << 20, *n1, 1u);
    REQUIRE_FALSE(short_node);
    CHECK(short_node.error().message().find(
              "on NUMA node 1, 10 of 10 reserved are free: reserve more with "
              "'echo 32 > /sys/devices/system/node/node1/hugepages/hugepages-2048kB/nr_hugepages'") !=
          std::string::npos);
}

TEST_CASE("guest memory: merge=on marks the mapping mergeable and turns THP off") {
    auto plan = MemoryPlan::for_ram_size(8ull << 20);
    REQUIRE(plan);
    MemoryBacking merge;
    merge.merge = true;
    auto mem = GuestMemory::create(*plan, merge);
    REQUIRE(mem);
    CHECK(mem->backing() == merge);
    // The mapping is marked mergeable: smaps shows "mg" in VmFlags for it.
    const auto* base = mem->regions()[0].mapping.data();
    const std::string smaps = test::read_text("/proc/self/smaps");
    const auto at = smaps.find(fmt::format("{:x}-", reinterpret_cast<uintptr_t>(base)));
    REQUIRE(at != std::string::npos);
    const auto flags = smaps.find("VmFlags:", at);
    REQUIRE(flags != std::string::npos);
    const std::string line = smaps.substr(flags, smaps.find('\n', flags) - flags);
    CAPTURE(line);
    CHECK(line.find(" mg") != std::string::npos);
    CHECK(line.find(" nh") != std::string::npos); // thp off with merge: MADV_NOHUGEPAGE
}

TEST_CASE("run stats: schedstat, smaps_rollup and ksm_stat parsing, and the JSON form") {
    auto s = parse_schedstat("1023161828 5123033 13\n");
    REQUIRE(s);
    CHECK(s->run_ns == 1023161828);
    CHECK(s->wait_ns == 5123033);
    CHECK(s->timeslices == 13);
    CHECK_FALSE(parse_schedstat("12 x 3"));
    CHECK_FALSE(parse_schedstat(""));

    const char* rollup = "55d0c0a00000-7ffd5bbf4000 ---p 00000000 00:00 0    [rollup]\n"
                         "Rss:              136724 kB\n"
                         "Pss:              136000 kB\n"
                         "AnonHugePages:     131072 kB\n"
                         "Shared_Hugetlb:         0 kB\n"
                         "Private_Hugetlb:     4096 kB\n";
    auto m = read_memory_stats(rollup, "ksm_rmap_items 8192\nksm_merging_pages 8190\nksm_process_profit 1\n");
    CHECK(m.rss_bytes == 136724ull * 1024);
    CHECK(m.anon_huge_bytes == 131072ull * 1024);
    CHECK(m.hugetlb_bytes == 4096ull * 1024);
    REQUIRE(m.ksm_merging_pages);
    CHECK(*m.ksm_merging_pages == 8190);
    CHECK_FALSE(read_memory_stats(rollup, "").ksm_merging_pages); // kernels without ksm_stat

    MachineStats st;
    st.uptime_seconds = 1.5;
    st.paging = "shadow (kvm_pvm)";
    st.memory = m;
    st.memory.backing = "THP";
    st.vcpus.push_back({0, 4242, "0-1", *s, {{"exits", 7}, {"halt_successful_poll", 3}}});
    st.nics.push_back({"virtio-net0", "kiln0", "52:54:00:00:00:01", 10, 1000, 1, 20, 2000, 2});
    const nlohmann::json j = st;
    CHECK(j["nics"][0]["tap"] == "kiln0");
    CHECK(j["nics"][0]["rx_dropped"] == 1);
    CHECK(j["nics"][0]["tx_bytes"] == 2000);
    CHECK(j["uptime_seconds"] == 1.5);
    CHECK(j["paging"] == "shadow (kvm_pvm)");
    CHECK(j["memory"]["ksm_merging_pages"] == 8190);
    CHECK(j["vcpus"][0]["tid"] == 4242);
    CHECK(j["vcpus"][0]["cpus_allowed"] == "0-1");
    CHECK(j["vcpus"][0]["wait_ns"] == 5123033);
    CHECK(j["vcpus"][0]["kvm"]["exits"] == 7);
}
