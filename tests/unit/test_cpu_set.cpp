// CpuSet: the kernel's CPU list format both ways, set operations, cpu_set_t, and this
// process's own affinity.
#include <doctest/doctest.h>

#include <sched.h>

#include <string>

#include "vmm/host/cpu_set.hpp"

using namespace kiln::host;

TEST_CASE("cpu set: parse_cpulist reads the kernel's list format and to_string writes it back") {
    struct Case {
        std::string text, canonical;
        uint32_t count;
    } cases[] = {
        {"0-3,8,10-11", "0-3,8,10-11", 7},
        {"0", "0", 1},
        {"0-1\n", "0-1", 2},                 // a sysfs file's newline
        {"  5 ", "5", 1},
        {"", "", 0},                         // a memory-only node's cpulist
        {"\n", "", 0},
        {"3,1,2,0", "0-3", 4},               // order and adjacency normalised
        {"0-3,2-5", "0-5", 6},               // overlaps merge
        {"7-7", "7", 1},
        {"0,2,4,6", "0,2,4,6", 4},
        {"1023", "1023", 1},
        {"0-1023", "0-1023", 1024},
    };
    for (const auto& c : cases) {
        CAPTURE(c.text);
        const auto set = parse_cpulist(c.text);
        REQUIRE(set);
        CHECK(set->to_string() == c.canonical);
        CHECK(set->count() == c.count);
        CHECK(set->empty() == (c.count == 0));
    }
    CHECK(parse_cpulist("0-3,8,10-11")->cpus() == std::vector<uint32_t>{0, 1, 2, 3, 8, 10, 11});
}

TEST_CASE("cpu set: malformed lists are refused with the piece that is wrong") {
    struct Case {
        std::string text, message;
    } cases[] = {
        {"0-3,x", "invalid CPU list '0-3,x': 'x' is not a number"},
        {"0,,2", "invalid CPU list '0,,2': an empty entry"},
        {",0", "invalid CPU list ',0': an empty entry"},
        {"0,", "invalid CPU list '0,': an empty entry"},
        {"3-1", "invalid CPU list '3-1': range '3-1' ends before it starts"},
        {"1-", "invalid CPU list '1-': '1-' is not a number or a range A-B"},
        {"-1", "invalid CPU list '-1': '-1' is not a number or a range A-B"},
        {"1-2-3", "invalid CPU list '1-2-3': '1-2-3' is not a number or a range A-B"},
        {"0 - 3", "invalid CPU list '0 - 3': '0 - 3' is not a number or a range A-B"},
        {"0-3:1/2", "invalid CPU list '0-3:1/2': '0-3:1/2' is not a number or a range A-B"},
        {"1024", "invalid CPU list '1024': CPU 1024 is beyond the 1024 CPUs kiln supports"},
        {"0-99999999999", "invalid CPU list '0-99999999999': '0-99999999999' is not a number or a range A-B"},
        {"+1", "invalid CPU list '+1': '+1' is not a number"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.text);
        const auto set = parse_cpulist(c.text);
        REQUIRE_FALSE(set);
        CHECK(set.error().message().starts_with(c.message));
        CHECK(set.error().message().ends_with("(expected numbers and ranges like 0-3,8,10-11)"));
    }
    const auto nodes = parse_id_list("0-1,x", 1024, "node");
    REQUIRE_FALSE(nodes);
    CHECK(nodes.error().message().starts_with("invalid node list '0-1,x': 'x' is not a number"));
}

TEST_CASE("cpu set: set operations") {
    const CpuSet a{0, 1, 2, 3};
    const CpuSet b{2, 3, 4, 5};
    CHECK((a & b) == CpuSet{2, 3});
    CHECK((a | b) == CpuSet{0, 1, 2, 3, 4, 5});
    CHECK((a - b) == CpuSet{0, 1});
    CHECK(CpuSet{2}.subset_of(a));
    CHECK_FALSE(b.subset_of(a));
    CHECK(CpuSet{}.subset_of(a));
    CHECK(a.contains(3));
    CHECK_FALSE(a.contains(4));
    CHECK_FALSE(a.contains(5000)); // out of range is simply not in the set
    CpuSet c = a;
    c.remove(0);
    c.add(9);
    CHECK(c.to_string() == "1-3,9");
}

TEST_CASE("cpu set: to and from cpu_set_t") {
    const CpuSet set{0, 5, 63, 64, 1023};
    const cpu_set_t raw = set.to_cpu_set();
    CHECK(CPU_COUNT(&raw) == 5);
    CHECK(CPU_ISSET(63, &raw));
    CHECK(CPU_ISSET(1023, &raw));
    CHECK_FALSE(CPU_ISSET(1, &raw));
    CHECK(CpuSet::from_cpu_set(raw) == set);
}

TEST_CASE("cpu set: allowed_cpus is this process's affinity") {
    const auto allowed = allowed_cpus();
    REQUIRE(allowed);
    MESSAGE("kiln may use CPUs " << allowed->to_string());
    CHECK_FALSE(allowed->empty());
    cpu_set_t raw;
    CPU_ZERO(&raw);
    REQUIRE(::sched_getaffinity(0, sizeof(raw), &raw) == 0);
    CHECK(allowed->count() == static_cast<uint32_t>(CPU_COUNT(&raw)));
}
