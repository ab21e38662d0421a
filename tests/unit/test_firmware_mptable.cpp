// The MP table: checksums, entry counts and contents for several vCPU counts, and where
// it goes when it outgrows the last KiB of base memory.
#include <doctest/doctest.h>

#include <map>
#include <string>
#include <vector>

#include "firmware/mptable.hpp"
#include "test_firmware_images.hpp"

using namespace kiln;
using namespace kiln::firmware;
using namespace kiln::firmware::mptable;
using namespace kiln::test;

namespace {

std::vector<uint8_t> guest_bytes(const GuestMemory& mem, uint64_t addr, uint64_t len) {
    std::vector<uint8_t> b(len);
    REQUIRE(mem.read(GuestAddress(addr), b));
    return b;
}

// Walks the configuration table as a kernel would, by entry type and size.
struct ParsedTable {
    std::vector<ProcessorEntry> cpus;
    std::vector<BusEntry> buses;
    std::vector<IoApicEntry> ioapics;
    std::vector<InterruptEntry> io_ints, local_ints;
    bool well_formed = true;
};

ParsedTable parse(const std::vector<uint8_t>& table) {
    ParsedTable p;
    size_t at = sizeof(ConfigHeader);
    auto take = [&](auto& vec) {
        using T = typename std::remove_reference_t<decltype(vec)>::value_type;
        if (at + sizeof(T) > table.size()) {
            p.well_formed = false;
            at = table.size();
            return;
        }
        T e;
        std::memcpy(&e, table.data() + at, sizeof(T));
        vec.push_back(e);
        at += sizeof(T);
    };
    while (at < table.size()) {
        switch (table[at]) {
        case kProcessor: take(p.cpus); break;
        case kBus: take(p.buses); break;
        case kIoApic: take(p.ioapics); break;
        case kIoInterrupt: take(p.io_ints); break;
        case kLocalInterrupt: take(p.local_ints); break;
        default: p.well_formed = false; at = table.size(); break;
        }
    }
    return p;
}

} // namespace

TEST_CASE("MP table: checksums, counts and contents for 1, 2, 4, 40, 41, 64 and 254 vCPUs") {
    auto mem = make_memory(64 * MiB);
    for (uint32_t n : {1u, 2u, 4u, 40u, 41u, 64u, 254u}) {
        CAPTURE(n);
        auto placed = write(mem, n);
        REQUIRE(placed);

        const auto fp_bytes = guest_bytes(mem, layout::kMpTable, sizeof(FloatingPointer));
        FloatingPointer fp;
        std::memcpy(&fp, fp_bytes.data(), sizeof(fp));
        CHECK(std::string(fp.signature, 4) == "_MP_");
        CHECK(byte_sum(fp_bytes.data(), fp_bytes.size()) == 0);
        CHECK(fp.length == 1);
        CHECK(fp.spec_rev == 4);
        CHECK(fp.feature[0] == 0); // a configuration table follows, no default configuration
        CHECK(v(fp.config_table) == placed->config_table);

        // In the last KiB of base memory while it fits (40 vCPUs), else in the BIOS area.
        if (n <= 40) {
            CHECK(placed->config_table == layout::kMpTable + 16);
            CHECK(placed->config_table + placed->config_length <= 0xa0000);
        } else {
            CHECK(placed->config_table == 0xf0000);
            CHECK(placed->config_table + placed->config_length <= 0x100000);
        }

        const auto hdr_bytes = guest_bytes(mem, placed->config_table, sizeof(ConfigHeader));
        ConfigHeader h;
        std::memcpy(&h, hdr_bytes.data(), sizeof(h));
        CHECK(std::string(h.signature, 4) == "PCMP");
        CHECK(h.spec_rev == 4);
        CHECK(v(h.length) == config_table_size(n));
        CHECK(v(h.length) == placed->config_length);
        CHECK(v(h.lapic_address) == layout::kLapic);
        CHECK(v(h.entry_count) == n + 1 + 1 + 16 + 2);
        CHECK(v(h.ext_table_length) == 0);
        const auto table = guest_bytes(mem, placed->config_table, h.length);
        CHECK(byte_sum(table.data(), table.size()) == 0);

        const auto p = parse(table);
        REQUIRE(p.well_formed);
        REQUIRE(p.cpus.size() == n);
        for (uint32_t i = 0; i < n; ++i) {
            CHECK(p.cpus[i].lapic_id == i);
            CHECK(p.cpus[i].lapic_version == 0x14);
            CHECK((p.cpus[i].cpu_flags & kCpuEnabled) != 0);
            CHECK(((p.cpus[i].cpu_flags & kCpuBootProcessor) != 0) == (i == 0));
            CHECK(v(p.cpus[i].cpu_signature) == 0x600);
            CHECK(v(p.cpus[i].feature_flags) == 0x201);
        }
        REQUIRE(p.buses.size() == 1);
        CHECK(std::string(p.buses[0].bus_type, 6) == "ISA   ");
        REQUIRE(p.ioapics.size() == 1);
        CHECK(p.ioapics[0].id == n);
        CHECK(p.ioapics[0].version == 0x11);
        CHECK(p.ioapics[0].flags == kIoApicEnabled);
        CHECK(v(p.ioapics[0].address) == layout::kIoApic);
        REQUIRE(p.io_ints.size() == 16);
        for (uint8_t irq = 0; irq < 16; ++irq) {
            const auto& e = p.io_ints[irq];
            CHECK(e.interrupt_type == kInt);
            CHECK(v(e.flags) == 0);
            CHECK(e.source_bus == p.buses[0].bus_id);
            CHECK(e.source_irq == irq);
            CHECK(e.dest_id == n);
            CHECK(e.dest_pin == irq);
        }
        REQUIRE(p.local_ints.size() == 2);
        CHECK(p.local_ints[0].interrupt_type == kExtInt);
        CHECK(p.local_ints[0].dest_pin == 0);
        CHECK(p.local_ints[1].interrupt_type == kNmi);
        CHECK(p.local_ints[1].dest_pin == 1);
        CHECK(p.local_ints[0].dest_id == 0xff);
        CHECK(p.local_ints[1].dest_id == 0xff);
    }
}

TEST_CASE("MP table: vCPU count limits") {
    auto mem = make_memory(64 * MiB);
    CHECK_FALSE(write(mem, 0));
    auto r = write(mem, 255);
    REQUIRE_FALSE(r);
    CHECK(r.error().message() == "the MP table describes 1 to 254 vCPUs, not 255");
    CHECK(config_table_size(40) + 16 <= 1024);
    CHECK(config_table_size(41) + 16 > 1024);
}
