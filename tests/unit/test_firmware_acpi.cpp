// ACPI tables from the machine description: the AML encoder's bytes, the tables'
// checksums and pointers, and their content as the reference disassembler (`iasl -d`,
// acpica-tools) reads it; the loaders pointing the kernel at the RSDP; the MP table's
// virtio interrupt entries; the virtio_mmio.device= words.
#include <doctest/doctest.h>

#include <algorithm>
#include <regex>
#include <string>
#include <vector>

#include "firmware/acpi.hpp"
#include "firmware/acpi_aml.hpp"
#include "firmware/boot.hpp"
#include "firmware/boot_params.hpp"
#include "firmware/mptable.hpp"
#include "firmware/pvh_start_info.hpp"
#include "firmware/virtio_mmio_cmdline.hpp"
#include "test_firmware_acpi_tools.hpp"
#include "test_firmware_images.hpp"

using namespace kiln;
using namespace kiln::firmware;
using namespace kiln::test;

namespace {


uint64_t le(const std::vector<uint8_t>& b, size_t off, size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v |= uint64_t{b[off + i]} << (8 * i);
    return v;
}

// Dumps the tables to a scratch directory and disassembles `sig` with iasl -d.
std::string disassemble(const acpi::Tables& t, const ScratchDir& dir, const std::string& sig) {
    REQUIRE_MESSAGE(have_tool("iasl"), "iasl not found: install acpica-tools (scripts/install-deps)");
    REQUIRE(acpi::dump(t, dir.path.string()));
    const auto r = run_tool("cd '" + dir.path.string() + "' && iasl -d " + sig + ".aml");
    REQUIRE_MESSAGE(r.status == 0, r.out);
    return read_text(dir.path / (sig + ".dsl"));
}

// iasl's spelling of an integer constant in ASL.
std::string asl_int(uint64_t v) {
    if (v == 0) return "Zero";
    if (v == 1) return "One";
    return fmt::format("0x{:02X}", v);
}

// The DSDT text without comments and whitespace: a device compares as one string.
std::string asl_compact(const std::string& dsl) {
    std::string s = std::regex_replace(dsl, std::regex("/\\*[^]*?\\*/"), "");
    s = std::regex_replace(s, std::regex("//[^\n]*"), "");
    return std::regex_replace(s, std::regex("\\s+"), "");
}

std::vector<std::string> all_matches(const std::string& text, const std::string& re) {
    std::vector<std::string> out;
    const std::regex r(re);
    for (auto it = std::sregex_iterator(text.begin(), text.end(), r); it != std::sregex_iterator(); ++it)
        out.push_back((*it)[1].str());
    return out;
}

// Compiles `asl` (the terms of a DSDT's definition block) with iasl and returns the
// AML after the table header: what Kiln's encoder must produce for the same terms.
// -on: names stay as written (iasl would shorten \_SB to _SB at the root); integer
// and constant optimizations stay on, as Kiln's encoder picks the shortest form too.
aml::Bytes iasl_compile(const std::string& asl) {
    REQUIRE_MESSAGE(have_tool("iasl"), "iasl not found: install acpica-tools (scripts/install-deps)");
    ScratchDir dir;
    const std::string text = "DefinitionBlock (\"\", \"DSDT\", 2, \"KILN  \", \"KILNDSDT\", 1)\n{\n" + asl + "\n}\n";
    write_bytes(dir.path / "t.asl", std::vector<uint8_t>(text.begin(), text.end()));
    const auto r = run_tool("cd '" + dir.path.string() + "' && iasl -on -p out t.asl");
    REQUIRE_MESSAGE(r.status == 0, r.out);
    const auto aml = read_bytes(dir.path / "out.aml");
    REQUIRE(aml.size() >= aml::kSdtHeaderSize);
    return aml::Bytes(aml.begin() + aml::kSdtHeaderSize, aml.end());
}

// A data table's iasl -d text without the "[0F4h 0244  12]" offsets, squeezed: fields
// and the structures they hold compare as one line.
std::string table_fields(const std::string& dsl) {
    return squeeze(std::regex_replace(dsl, std::regex("\\[[0-9A-F]+h [0-9]+ +[0-9]+\\]"), ""));
}

std::string hex_diff(const aml::Bytes& kiln, const aml::Bytes& iasl) {
    std::string out = "kiln:";
    for (auto b : kiln) out += fmt::format(" {:02x}", b);
    out += "\niasl:";
    for (auto b : iasl) out += fmt::format(" {:02x}", b);
    return out;
}

aml::Bytes concat(const std::vector<aml::Bytes>& terms) {
    aml::Bytes out;
    for (const auto& t : terms) out.insert(out.end(), t.begin(), t.end());
    return out;
}

} // namespace

TEST_CASE("AML: methods, control flow, operation regions and fields match iasl's bytes") {
    using aml::Bytes;
    // Every term the power button's AML uses, and the variants Kiln does not use yet
    // (SystemIO, a lock, a multi-byte field length, Arg, a Notify on a path).
    const std::string asl = R"(
        Device (PWRB) { Name (_HID, EisaId ("PNP0C0C")) }
        OperationRegion (PIOR, SystemIO, 0x03C0, 0x0400)
        Field (PIOR, ByteAcc, Lock, Preserve) { AAAA, 8, BBBB, 100, CCCC, 5000 }
        OperationRegion (MREG, SystemMemory, 0x1FEB00000, 0x04)
        Field (MREG, AnyAcc, NoLock, WriteAsOnes) { DDDD, 32 }
        Method (MTHD, 2, NotSerialized)
        {
            Local1 = Arg1
            If (((Local1 & 0x0100) == Arg0))
            {
                Notify (\PWRB, 0x02)
                Notify (PWRB, Local1)
            }
        }
        Method (MTH2, 0, Serialized) { If (One) {} }
    )";
    const Bytes expected = iasl_compile(asl);
    const Bytes local1 = aml::local(1);
    const Bytes got = concat({
        aml::device("PWRB", {aml::name("_HID", aml::eisa_id("PNP0C0C"))}),
        aml::operation_region("PIOR", aml::RegionSpace::SystemIO, 0x3c0, 0x400),
        aml::field("PIOR", aml::FieldAccess::Byte, true, aml::FieldUpdate::Preserve,
                   {{"AAAA", 8}, {"BBBB", 100}, {"CCCC", 5000}}),
        aml::operation_region("MREG", aml::RegionSpace::SystemMemory, 0x1feb00000, 4),
        aml::field("MREG", aml::FieldAccess::Any, false, aml::FieldUpdate::WriteAsOnes, {{"DDDD", 32}}),
        aml::method("MTHD", 2, false,
                    {aml::store(aml::arg(1), local1),
                     aml::if_(aml::lequal(aml::and_(local1, aml::integer(0x100)), aml::arg(0)),
                              {aml::notify(aml::name_string("\\PWRB"), aml::integer(2)),
                               aml::notify(aml::name_string("PWRB"), local1)})}),
        aml::method("MTH2", 0, true, {aml::if_(aml::integer(1), {})}),
    });
    CHECK_MESSAGE(got == expected, hex_diff(got, expected));
    CHECK(aml::local(0) == Bytes{0x60});
    CHECK(aml::local(7) == Bytes{0x67});
    CHECK(aml::arg(0) == Bytes{0x68});
    CHECK(aml::arg(6) == Bytes{0x6e});
}

TEST_CASE("ACPI: the power button's GED device is the AML iasl makes of its ASL") {
    const AcpiPowerDesc power;
    const std::string asl = fmt::format(R"(
        Scope (\_SB)
        {{
            Device (GED_)
            {{
                Name (_HID, "ACPI0013")
                Name (_UID, Zero)
                Name (_CRS, ResourceTemplate () {{ Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) {{{}}} }})
                OperationRegion (EREG, SystemMemory, 0x{:X}, 0x04)
                Field (EREG, DWordAcc, NoLock, WriteAsZeros) {{ ESEL, 32 }}
                Method (_EVT, 1, Serialized)
                {{
                    Local0 = ESEL
                    If (((Local0 & 0x02) == 0x02)) {{ Notify (PWRB, 0x80) }}
                }}
            }}
            Device (PWRB) {{ Name (_HID, EisaId ("PNP0C0C")) Name (_UID, Zero) }}
        }}
        Name (_S5, Package () {{ 0x05, Zero }})
    )",
                                        layout::kAcpiGedGsi, layout::kAcpiGedBase);
    const aml::Bytes expected = iasl_compile(asl);
    // Kiln's DSDT for a machine without COM1 and virtio devices is exactly that.
    auto p = Platform::standard(1);
    p.com1.reset();
    auto t = acpi::build(p);
    REQUIRE(t);
    const auto& dsdt = t->find("DSDT")->bytes;
    const aml::Bytes got(dsdt.begin() + aml::kSdtHeaderSize, dsdt.end());
    CHECK_MESSAGE(got == expected, hex_diff(got, expected));
    // And the device alone is a prefix of the scope's body.
    const aml::Bytes ged = acpi::ged_device(power);
    CHECK(std::search(expected.begin(), expected.end(), ged.begin(), ged.end()) != expected.end());
}

TEST_CASE("AML: encodings of lengths, integers, names, EISA IDs and resources") {
    using aml::Bytes;
    CHECK(aml::pkg_length(0) == Bytes{0x01});
    CHECK(aml::pkg_length(62) == Bytes{0x3f});            // 63 total: the largest 1-byte length
    CHECK(aml::pkg_length(63) == Bytes{0x41, 0x04});      // 65 = 0x41: lead 0x40 | 1, then 0x04
    CHECK(aml::pkg_length(0xffd) == Bytes{0x4f, 0xff});   // 0xfff total: the largest 2-byte length
    CHECK(aml::pkg_length(0xffe) == Bytes{0x81, 0x00, 0x01}); // 0x1001 total
    CHECK(aml::pkg_length(5000) == Bytes{0x8b, 0x38, 0x01});  // 5003 = 0x138b

    CHECK(aml::integer(0) == Bytes{0x00});
    CHECK(aml::integer(1) == Bytes{0x01});
    CHECK(aml::integer(2) == Bytes{0x0a, 0x02});
    CHECK(aml::integer(0x1234) == Bytes{0x0b, 0x34, 0x12});
    CHECK(aml::integer(0xd0000000) == Bytes{0x0c, 0x00, 0x00, 0x00, 0xd0});
    CHECK(aml::integer(0x100000000) == Bytes{0x0e, 0, 0, 0, 0, 1, 0, 0, 0});
    CHECK(aml::integer(UINT64_MAX) == Bytes{0xff});

    CHECK(aml::string("AB") == Bytes{0x0d, 'A', 'B', 0});
    CHECK(aml::eisa_id("PNP0501") == Bytes{0x0c, 0x41, 0xd0, 0x05, 0x01}); // 0x0105D041
    CHECK(aml::name_string("_SB") == Bytes{'_', 'S', 'B', '_'});
    CHECK(aml::name_string("\\_SB_") == Bytes{'\\', '_', 'S', 'B', '_'});
    CHECK(aml::name_string("\\_SB_.VR00") == Bytes{'\\', 0x2e, '_', 'S', 'B', '_', 'V', 'R', '0', '0'});
    CHECK(aml::name_string("A.B.C") == Bytes{0x2f, 3, 'A', '_', '_', '_', 'B', '_', '_', '_', 'C', '_', '_', '_'});
    CHECK(aml::name("_UID", aml::integer(1)) == Bytes{0x08, '_', 'U', 'I', 'D', 0x01});
    CHECK(aml::package({aml::integer(5), aml::integer(0)}) == Bytes{0x12, 0x05, 0x02, 0x0a, 0x05, 0x00});
    CHECK(aml::device("VR00", {}) == Bytes{0x5b, 0x82, 0x05, 'V', 'R', '0', '0'});

    aml::ResourceTemplate rt;
    rt.memory32_fixed(true, 0xd0000000, 0x1000).interrupt(true, true, false, false, 5).io(0x3f8, 0x3f8, 8, 8)
        .irq_no_flags(4);
    const Bytes expected_body = {
        0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xd0, 0x00, 0x10, 0x00, 0x00, // Memory32Fixed
        0x89, 0x06, 0x00, 0x03, 0x01, 0x05, 0x00, 0x00, 0x00,                   // Interrupt
        0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x08, 0x08,                         // IO
        0x22, 0x10, 0x00,                                                       // IRQNoFlags {4}
        0x79, 0x00};                                                            // End tag
    // BufferOp, PkgLength (itself + the BufferSize term + the bytes), BufferSize, bytes.
    Bytes expected{0x11, static_cast<uint8_t>(1 + 2 + expected_body.size()), 0x0a,
                   static_cast<uint8_t>(expected_body.size())};
    expected.insert(expected.end(), expected_body.begin(), expected_body.end());
    CHECK(rt.buffer() == expected);
}

TEST_CASE("ACPI: layout, pointers and checksums of every table") {
    for (auto [cpus, devices] : {std::pair{1u, 0u}, std::pair{2u, 1u}, std::pair{4u, 3u}, std::pair{254u, 19u}}) {
        CAPTURE(cpus);
        CAPTURE(devices);
        const auto p = platform_with(cpus, devices);
        auto r = acpi::build(p);
        REQUIRE_MESSAGE(r, r.error().message());
        const auto& t = *r;
        REQUIRE(t.tables.size() == 5);
        CHECK(t.rsdp_address == layout::kAcpiTables);
        CHECK(t.end() <= layout::kAcpiTablesEnd);
        uint64_t prev_end = layout::kAcpiTables;
        for (const auto& tab : t.tables) {
            CAPTURE(tab.signature);
            CHECK(tab.address % 16 == 0);
            CHECK(tab.address >= prev_end); // in address order, no overlap
            prev_end = tab.address + tab.bytes.size();
            if (tab.signature == "RSDP") continue;
            CHECK(std::string(tab.bytes.begin(), tab.bytes.begin() + 4) == tab.signature);
            CHECK(le(tab.bytes, 4, 4) == tab.bytes.size()); // header length
            CHECK(acpi::byte_sum(tab.bytes) == 0);
            CHECK(std::string(tab.bytes.begin() + 10, tab.bytes.begin() + 16) == "KILN  ");
        }

        const auto* rsdp = t.find("RSDP");
        const auto* xsdt = t.find("XSDT");
        const auto* fadt = t.find("FACP");
        const auto* dsdt = t.find("DSDT");
        const auto* madt = t.find("APIC");
        REQUIRE((rsdp && xsdt && fadt && dsdt && madt));
        CHECK(rsdp->address == layout::kAcpiTables);
        REQUIRE(rsdp->bytes.size() == 36);
        CHECK(std::string(rsdp->bytes.begin(), rsdp->bytes.begin() + 8) == "RSD PTR ");
        CHECK(acpi::byte_sum(rsdp->bytes, 20) == 0); // ACPI 1.0 checksum
        CHECK(acpi::byte_sum(rsdp->bytes) == 0);     // extended checksum
        CHECK(rsdp->bytes[15] == 2);                 // revision
        CHECK(le(rsdp->bytes, 20, 4) == 36);
        CHECK(le(rsdp->bytes, 24, 8) == xsdt->address);

        REQUIRE(xsdt->bytes.size() == 36 + 16);
        CHECK(le(xsdt->bytes, 36, 8) == fadt->address);
        CHECK(le(xsdt->bytes, 44, 8) == madt->address);
        REQUIRE(fadt->bytes.size() == 276);
        CHECK(fadt->bytes[8] == 6);
        CHECK(le(fadt->bytes, 40, 4) == 0);              // 32-bit DSDT: unused
        CHECK(le(fadt->bytes, 140, 8) == dsdt->address); // X_DSDT
        CHECK((le(fadt->bytes, 112, 4) & acpi::kFadtHwReducedAcpi) != 0);
        CHECK(le(fadt->bytes, 36, 4) == 0);              // no FACS in a hardware-reduced machine
        CHECK(le(fadt->bytes, 132, 8) == 0);
        CHECK(madt->bytes.size() == 44 + 8 * cpus + 12 + 6);
    }
}

TEST_CASE("ACPI: a clear error when the tables do not fit, or the machine is inconsistent") {
    const auto p = platform_with(4, 2);
    auto r = acpi::build(p, layout::kAcpiTables, layout::kAcpiTables + 0x100);
    REQUIRE_FALSE(r);
    CHECK(r.error().message().find("ACPI tables for 4 vCPUs and 2 virtio-mmio devices need") == 0);
    CHECK(r.error().message().find("[0xe0000, 0xe0100) holds 256") != std::string::npos);

    auto bad = platform_with(1, 1);
    bad.virtio_mmio[0].gsi = layout::kCom1Irq;
    auto r2 = acpi::build(bad);
    REQUIRE_FALSE(r2);
    CHECK(r2.error().message() == "ACPI tables: virtio-mmio device 0: GSI 4 is COM1's interrupt");

    auto full = platform_with(1, layout::kVirtioMmioMaxDevices);
    auto extra = full.add_virtio_mmio();
    REQUIRE_FALSE(extra);
    CHECK(extra.error().message() == "at most 19 virtio-mmio devices fit the machine's interrupt lines");

    auto overlap = platform_with(1, 2);
    overlap.virtio_mmio[1].base = overlap.virtio_mmio[0].base + 0x800;
    REQUIRE_FALSE(overlap.validate());
    CHECK(overlap.validate().error().message() == "virtio-mmio devices 0 and 1 overlap at 0xd0000800");
    auto shared = platform_with(1, 2);
    shared.virtio_mmio[1].gsi = shared.virtio_mmio[0].gsi;
    CHECK(shared.validate().error().message() == "virtio-mmio devices 0 and 1 share GSI 5");
    auto high = platform_with(1, 1);
    high.virtio_mmio[0].gsi = 24;
    CHECK(high.validate().error().message() == "virtio-mmio device 0: GSI 24 is not an IOAPIC pin");
    CHECK(Platform::standard(255).validate().error().message() == "the machine describes 1 to 254 vCPUs, not 255");
}

TEST_CASE("ACPI: iasl -d reads the DSDT's LNRO0005 devices, COM1 and the power button as built") {
    const auto p = platform_with(2, layout::kVirtioMmioMaxDevices);
    auto t = acpi::build(p);
    REQUIRE(t);
    ScratchDir dir;
    const std::string dsl = disassemble(*t, dir, "DSDT");
    CHECK(dsl.find("Incorrect checksum") == std::string::npos);
    CHECK(dsl.find("DefinitionBlock (\"\", \"DSDT\", 2, \"KILN  \", \"KILNDSDT\", 0x00000001)") != std::string::npos);
    const std::string asl = asl_compact(dsl);
    CHECK(asl.find("Scope(\\_SB){") != std::string::npos);

    CHECK(all_matches(dsl, "Name \\(_HID, \"(LNRO0005)\"\\)").size() == layout::kVirtioMmioMaxDevices);
    for (uint32_t i = 0; i < layout::kVirtioMmioMaxDevices; ++i) {
        CAPTURE(i);
        const auto expected = fmt::format(
            "Device(VR{:02}){{Name(_HID,\"LNRO0005\")Name(_UID,{})Name(_CCA,One)"
            "Name(_CRS,ResourceTemplate(){{Memory32Fixed(ReadWrite,0x{:08X},0x00001000,)"
            "Interrupt(ResourceConsumer,Edge,ActiveHigh,Exclusive,,,){{0x{:08X},}}}})}}",
            i, asl_int(i), 0xd0000000 + i * 0x1000, 5 + i);
        CHECK_MESSAGE(asl.find(expected) != std::string::npos, expected);
    }
    const std::string com1 = "Device(COM1){Name(_HID,EisaId(\"PNP0501\"))Name(_UID,One)"
                             "Name(_CRS,ResourceTemplate(){IO(Decode16,0x03F8,0x03F8,0x08,0x08,)IRQNoFlags(){4}})}";
    CHECK_MESSAGE(asl.find(com1) != std::string::npos, asl);

    // The power button: the GED with its interrupt, event register and _EVT, PWRB, _S5.
    const std::string ged = fmt::format(
        "Device(GED){{Name(_HID,\"ACPI0013\")Name(_UID,Zero)"
        "Name(_CRS,ResourceTemplate(){{Interrupt(ResourceConsumer,Edge,ActiveHigh,Exclusive,,,){{0x{:08X},}}}})"
        "OperationRegion(EREG,SystemMemory,0x{:08X},0x04)Field(EREG,DWordAcc,NoLock,WriteAsZeros){{ESEL,32}}"
        "Method(_EVT,1,Serialized){{Local0=ESELIf(((Local0&0x02)==0x02)){{Notify(PWRB,0x80)}}}}}}",
        layout::kAcpiGedGsi, layout::kAcpiGedBase);
    CHECK_MESSAGE(asl.find(ged) != std::string::npos, asl);
    CHECK(asl.find("Device(PWRB){Name(_HID,EisaId(\"PNP0C0C\"))Name(_UID,Zero)}") != std::string::npos);
    CHECK(asl.find("Name(_S5,Package(0x02){0x05,Zero})") != std::string::npos);
}

TEST_CASE("ACPI: a machine without the power button has no GED, no _S5 and no sleep registers") {
    auto p = platform_with(1, 1);
    p.acpi_power.reset();
    auto t = acpi::build(p);
    REQUIRE(t);
    ScratchDir dir;
    const std::string asl = asl_compact(disassemble(*t, dir, "DSDT"));
    CHECK(asl.find("ACPI0013") == std::string::npos);
    CHECK(asl.find("PNP0C0C") == std::string::npos);
    CHECK(asl.find("_S5") == std::string::npos);
    const std::string fadt = table_fields(disassemble(*t, dir, "FACP"));
    CHECK(fadt.find("Sleep Control Register : [Generic Address Structure] Space ID : 00 [SystemMemory] "
                    "Bit Width : 00") != std::string::npos);
}

TEST_CASE("ACPI: the FADT's sleep control and status registers name the sleep port") {
    const auto p = platform_with(1, 0);
    auto t = acpi::build(p);
    REQUIRE(t);
    const auto& fadt = t->find("FACP")->bytes;
    for (size_t off : {acpi::kFadtSleepControlOffset, acpi::kFadtSleepStatusOffset}) {
        CAPTURE(off);
        CHECK(fadt[off] == 1);     // SystemIO
        CHECK(fadt[off + 1] == 8); // bit width
        CHECK(fadt[off + 2] == 0); // bit offset
        CHECK(fadt[off + 3] == 1); // byte access
        CHECK(le(fadt, off + 4, 8) == layout::kAcpiSleepPort);
    }
    ScratchDir dir;
    const std::string dsl = table_fields(disassemble(*t, dir, "FACP"));
    for (const char* reg : {"Sleep Control Register", "Sleep Status Register"}) {
        CAPTURE(reg);
        CHECK(dsl.find(fmt::format("{} : [Generic Address Structure] Space ID : 01 [SystemIO] Bit Width : 08 "
                                   "Bit Offset : 00 Encoded Access Width : 01 [Byte Access:8] "
                                   "Address : 00000000000003C0",
                                   reg)) != std::string::npos);
    }
}

TEST_CASE("ACPI: the power button's place in the machine is checked like every device's") {
    auto p = platform_with(1, 1);
    p.acpi_power->ged_gsi = layout::kCom1Irq;
    CHECK(p.validate().error().message() == "ACPI GED: GSI 4 is COM1's interrupt");
    p = platform_with(1, 1);
    p.acpi_power->ged_gsi = 24;
    CHECK(p.validate().error().message() == "ACPI GED: GSI 24 is not an IOAPIC pin");
    p = platform_with(1, 1);
    p.acpi_power->ged_gsi = p.virtio_mmio[0].gsi;
    CHECK(p.validate().error().message() == "virtio-mmio device 0: GSI 5 is the ACPI GED's interrupt");
    p = platform_with(1, 1);
    p.acpi_power->ged_base = p.virtio_mmio[0].base;
    CHECK(p.validate().error().message() == "virtio-mmio device 0 overlaps the ACPI GED at 0xd0000000");
    p = platform_with(1, 1);
    p.acpi_power->ged_base = layout::kIoApic;
    CHECK(p.validate().error().message() ==
          "ACPI GED: window [0xfec00000, +0x1000) is not inside the MMIO hole below the IOAPIC");
    p = platform_with(1, 1);
    p.acpi_power->sleep_port = layout::kCom1Port + 5;
    CHECK(p.validate().error().message() == "ACPI sleep port 0x3fd is inside COM1's ports");
    CHECK(platform_with(4, layout::kVirtioMmioMaxDevices).validate());
}

TEST_CASE("ACPI: iasl -d reads the MADT's vCPUs and IOAPIC, the FADT's flags and the XSDT's pointers") {
    for (uint32_t cpus : {1u, 3u, 64u}) {
        CAPTURE(cpus);
        const auto p = platform_with(cpus, 2);
        auto t = acpi::build(p);
        REQUIRE(t);
        ScratchDir dir;

        const std::string madt = disassemble(*t, dir, "APIC");
        CHECK(madt.find("Incorrect checksum") == std::string::npos);
        CHECK(squeeze(madt).find("Local Apic Address : FEE00000") != std::string::npos);
        CHECK(squeeze(madt).find("PC-AT Compatibility : 1") != std::string::npos);
        CHECK(all_matches(madt, "Subtable Type : (00) \\[Processor Local APIC\\]").size() == cpus);
        const auto ids = all_matches(madt, "Local Apic ID : ([0-9A-F]+)");
        REQUIRE(ids.size() == cpus);
        for (uint32_t i = 0; i < cpus; ++i) CHECK(ids[i] == fmt::format("{:02X}", i));
        CHECK(all_matches(madt, "Processor Enabled : (1)").size() == cpus);
        CHECK(all_matches(madt, "Subtable Type : (01) \\[I/O APIC\\]").size() == 1);
        CHECK(all_matches(madt, "I/O Apic ID : ([0-9A-F]+)") == std::vector<std::string>{fmt::format("{:02X}", cpus)});
        CHECK(all_matches(madt, "\\] +Address : ([0-9A-F]+)") == std::vector<std::string>{"FEC00000"});
        CHECK(all_matches(madt, "\\] +Interrupt : ([0-9A-F]+)") == std::vector<std::string>{"00000000"});
        CHECK(all_matches(madt, "Subtable Type : (02)").empty()); // no source overrides: identity routing
        CHECK(all_matches(madt, "Interrupt Input LINT : ([0-9A-F]+)") == std::vector<std::string>{"01"});

        const std::string fadt = squeeze(disassemble(*t, dir, "FACP"));
        CHECK(fadt.find("Incorrect checksum") == std::string::npos);
        CHECK(fadt.find("Revision : 06") != std::string::npos);
        CHECK(fadt.find("FADT Minor Revision : 03") != std::string::npos);
        CHECK(fadt.find("Hardware Reduced (V5) : 1") != std::string::npos);
        CHECK(fadt.find("Control Method Power Button (V1) : 1") != std::string::npos);
        CHECK(fadt.find("CMOS RTC Not Present (V5) : 1") != std::string::npos);
        CHECK(fadt.find("FACS Address : 00000000") != std::string::npos);
        CHECK(fadt.find(fmt::format("DSDT Address : {:016X}", t->find("DSDT")->address)) != std::string::npos);

        const std::string xsdt = disassemble(*t, dir, "XSDT");
        CHECK(xsdt.find("Incorrect checksum") == std::string::npos);
        CHECK(all_matches(xsdt, "ACPI Table Address +[0-9]+ : ([0-9A-F]+)") ==
              std::vector<std::string>{fmt::format("{:016X}", t->find("FACP")->address),
                                       fmt::format("{:016X}", t->find("APIC")->address)});
    }
}

TEST_CASE("ACPI: --dump-acpi writes one file per table, named as iasl and acpixtract name them") {
    const auto p = platform_with(2, 1);
    auto t = acpi::build(p);
    REQUIRE(t);
    ScratchDir dir;
    const auto sub = dir.path / "tables"; // created by dump
    REQUIRE(acpi::dump(*t, sub.string()));
    for (const auto& tab : t->tables) {
        const std::string bytes = read_text(sub / (tab.signature + ".aml"));
        CHECK(bytes == std::string(tab.bytes.begin(), tab.bytes.end()));
    }
    auto r = acpi::dump(*t, "/proc/no-such-dir/x");
    REQUIRE_FALSE(r);
    CHECK(r.error().message().find("creating the ACPI dump directory '/proc/no-such-dir/x'") == 0);
}

TEST_CASE("ACPI: load_kernel writes the tables and points bzImage and PVH kernels at the RSDP") {
    const auto p = platform_with(2, 2);
    const auto expected = acpi::build(p);
    REQUIRE(expected);
    auto check_tables_in = [&](const GuestMemory& mem) {
        for (const auto& tab : expected->tables) {
            std::vector<uint8_t> got(tab.bytes.size());
            REQUIRE(mem.read(GuestAddress(tab.address), got));
            CHECK_MESSAGE(got == tab.bytes, tab.signature);
        }
    };

    SUBCASE("bzImage, boot protocol 2.15: boot_params.acpi_rsdp_addr") {
        auto mem = make_memory(64 * MiB);
        const auto img = make_bzimage();
        auto r = load_kernel(mem, BootRequest{img, {}, "x", 2, &p, true});
        REQUIRE_MESSAGE(r, r.error().message());
        CHECK(r->acpi_rsdp == 0xe0000);
        CHECK(v(guest_read<linux_boot::BootParams>(mem, layout::kZeroPage).acpi_rsdp_addr) == 0xe0000);
        check_tables_in(mem);
    }
    SUBCASE("bzImage, boot protocol 2.13: no field, the kernel scans 0xe0000-0xfffff") {
        auto mem = make_memory(64 * MiB);
        BzOptions o;
        o.version = 0x020d;
        const auto img = make_bzimage(o);
        auto r = load_kernel(mem, BootRequest{img, {}, "x", 2, &p, true});
        REQUIRE_MESSAGE(r, r.error().message());
        CHECK(v(guest_read<linux_boot::BootParams>(mem, layout::kZeroPage).acpi_rsdp_addr) == 0);
        check_tables_in(mem);
    }
    SUBCASE("PVH: hvm_start_info.rsdp_paddr") {
        auto mem = make_memory(64 * MiB);
        const auto elf = make_pvh_elf();
        auto r = load_kernel(mem, BootRequest{elf, {}, "x", 2, &p, true});
        REQUIRE_MESSAGE(r, r.error().message());
        const auto si = guest_read<pvh::StartInfo>(mem, pvh::kStartInfoAddr);
        CHECK(v(si.rsdp_paddr) == 0xe0000);
        CHECK(v(si.version) == 1);
        check_tables_in(mem);
    }
    SUBCASE("acpi = false (the default): no tables, no pointers") {
        for (const auto& img : {make_bzimage(), make_pvh_elf()}) {
            auto mem = make_memory(64 * MiB);
            BootRequest req{img, {}, "x", 2, &p};
            auto r = load_kernel(mem, req);
            REQUIRE_MESSAGE(r, r.error().message());
            CHECK(r->acpi_rsdp == 0);
            CHECK(guest_read<uint64_t>(mem, layout::kAcpiTables) == 0);
            if (r->format == KernelFormat::BzImage)
                CHECK(v(guest_read<linux_boot::BootParams>(mem, layout::kZeroPage).acpi_rsdp_addr) == 0);
            else
                CHECK(v(guest_read<pvh::StartInfo>(mem, pvh::kStartInfoAddr).rsdp_paddr) == 0);
        }
    }
    SUBCASE("a platform that disagrees with the vCPU count is refused before anything is written") {
        auto mem = make_memory(64 * MiB);
        const auto img = make_bzimage();
        auto r = load_kernel(mem, BootRequest{img, {}, "x", 3, &p, true});
        REQUIRE_FALSE(r);
        CHECK(r.error().message() == "the boot request has 3 vCPUs but its platform describes 2");
        CHECK(guest_read<uint64_t>(mem, layout::kHighMemory) == 0);
    }
}

TEST_CASE("MP table: virtio-mmio GSIs above 15 get I/O interrupt entries of their own") {
    auto mem = make_memory(64 * MiB);
    const auto p = platform_with(2, layout::kVirtioMmioMaxDevices); // GSIs 5..23
    auto placed = mptable::write(mem, p);
    REQUIRE(placed);
    CHECK(placed->entry_count == 2 + 1 + 1 + 16 + 8 + 2);
    CHECK(placed->config_length == mptable::config_table_size(p));
    std::vector<uint8_t> table(placed->config_length);
    REQUIRE(mem.read(GuestAddress(placed->config_table), table));
    CHECK(mptable::byte_sum(table.data(), table.size()) == 0);
    // Entries in order: 2 processors (20 bytes each), bus, IOAPIC, 16 ISA + 8 virtio
    // I/O interrupts, 2 local interrupts (8 bytes each).
    size_t at = sizeof(mptable::ConfigHeader) + 2 * 20 + 8 + 8;
    for (uint32_t irq = 0; irq < 24; ++irq, at += 8) {
        CAPTURE(irq);
        CHECK(table[at] == mptable::kIoInterrupt);
        CHECK(le(table, at + 2, 2) == 0); // conforming: ISA edge, active high
        CHECK(table[at + 5] == irq);      // source IRQ
        CHECK(table[at + 6] == 2);        // IOAPIC ID
        CHECK(table[at + 7] == irq);      // pin
    }
    CHECK(table[at] == mptable::kLocalInterrupt);
}

TEST_CASE("virtio_mmio.device= words, exact") {
    auto p = platform_with(1, 2);
    CHECK(virtio_mmio_cmdline_words(p) ==
          std::vector<std::string>{"virtio_mmio.device=4K@0xd0000000:5", "virtio_mmio.device=4K@0xd0001000:6"});
    CHECK(virtio_mmio_cmdline(p) == "virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6");
    p.virtio_mmio[0].size = 0x200;
    p.virtio_mmio[1].size = 2 * MiB;
    CHECK(virtio_mmio_cmdline_words(p) ==
          std::vector<std::string>{"virtio_mmio.device=512@0xd0000000:5", "virtio_mmio.device=2M@0xd0001000:6"});
    CHECK(virtio_mmio_cmdline_words(Platform::standard(1)).empty());
    CHECK(virtio_mmio_cmdline(Platform::standard(1)).empty());
    auto full = platform_with(1, layout::kVirtioMmioMaxDevices);
    CHECK(virtio_mmio_cmdline_words(full).back() == "virtio_mmio.device=4K@0xd0012000:23");
}
