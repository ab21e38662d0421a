#include "firmware/acpi.hpp"

#include "vmm/base/file_io.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "firmware/acpi_aml.hpp"
#include "firmware/bytes.hpp"

namespace kiln::firmware::acpi {

namespace {

using aml::Bytes;

constexpr uint8_t kRsdpRevision = 2; // ACPI 2.0+: XSDT address and extended checksum
constexpr uint64_t kTableAlign = 16;

template <class T>
void put(Bytes& b, size_t off, T v) {
    for (size_t i = 0; i < sizeof(T); ++i) b[off + i] = static_cast<uint8_t>(static_cast<uint64_t>(v) >> (8 * i));
}
template <class T>
void push(Bytes& b, T v) {
    b.resize(b.size() + sizeof(T));
    put(b, b.size() - sizeof(T), v);
}

} // namespace

aml::Bytes ged_device(const AcpiPowerDesc& power) {
    aml::ResourceTemplate crs;
    crs.interrupt(/*consumer=*/true, /*edge=*/true, /*active_low=*/false, /*shared=*/false, power.ged_gsi);
    // _EVT (called by the OS's GED driver on the interrupt, Arg0 the GSI): read the
    // event register (reading clears it) and notify whoever each set bit stands for.
    const aml::Bytes events = aml::local(0);
    return aml::device(
        "GED_",
        {aml::name("_HID", aml::string("ACPI0013")), aml::name("_UID", aml::integer(0)),
         aml::name("_CRS", crs.buffer()),
         aml::operation_region("EREG", aml::RegionSpace::SystemMemory, power.ged_base, 4),
         aml::field("EREG", aml::FieldAccess::DWord, /*lock=*/false, aml::FieldUpdate::WriteAsZeros,
                    {{"ESEL", 32}}),
         aml::method("_EVT", 1, /*serialized=*/true,
                     {aml::store(aml::name_string("ESEL"), events),
                      aml::if_(aml::lequal(aml::and_(events, aml::integer(layout::kAcpiGedPowerButton)),
                                           aml::integer(layout::kAcpiGedPowerButton)),
                               {aml::notify(aml::name_string("PWRB"), aml::integer(kNotifyPowerButton))})})});
}

namespace {

// The DSDT's definition block: \_SB_ with COM1 and one LNRO0005 device per virtio-mmio
// device, named VR00.. by index (_UID the index, so /sys/bus/acpi names are stable).
Bytes dsdt(const Platform& p) {
    std::vector<Bytes> devices;
    if (p.com1) {
        aml::ResourceTemplate crs;
        crs.io(p.com1->port, p.com1->port, 8, 8).irq_no_flags(static_cast<uint8_t>(p.com1->irq));
        devices.push_back(aml::device("COM1", {aml::name("_HID", aml::eisa_id("PNP0501")),
                                               aml::name("_UID", aml::integer(1)),
                                               aml::name("_CRS", crs.buffer())}));
    }
    for (size_t i = 0; i < p.virtio_mmio.size(); ++i) {
        const auto& d = p.virtio_mmio[i];
        aml::ResourceTemplate crs;
        crs.memory32_fixed(true, static_cast<uint32_t>(d.base), static_cast<uint32_t>(d.size))
            .interrupt(/*consumer=*/true, /*edge=*/true, /*active_low=*/false, /*shared=*/false, d.gsi);
        const char seg[5] = {'V', 'R', static_cast<char>('0' + i / 10), static_cast<char>('0' + i % 10), 0};
        devices.push_back(aml::device(seg, {aml::name("_HID", aml::string("LNRO0005")),
                                            aml::name("_UID", aml::integer(i)),
                                            aml::name("_CCA", aml::integer(1)), // DMA is cache-coherent
                                            aml::name("_CRS", crs.buffer())}));
    }
    if (p.acpi_power) {
        devices.push_back(ged_device(*p.acpi_power));
        devices.push_back(aml::device("PWRB", {aml::name("_HID", aml::eisa_id("PNP0C0C")),
                                               aml::name("_UID", aml::integer(0))}));
    }
    Bytes body = aml::scope("\\_SB_", devices);
    if (p.acpi_power) {
        // \_S5: the SLP_TYP values for S5 (soft off); the second is for a separate
        // SLP_TYPb register, which a hardware-reduced machine does not have.
        const Bytes s5 = aml::name("_S5_", aml::package({aml::integer(layout::kAcpiS5SleepType), aml::integer(0)}));
        body.insert(body.end(), s5.begin(), s5.end());
    }
    return aml::sdt("DSDT", kDsdtRevision, "KILNDSDT", body);
}

Bytes madt(const Platform& p) {
    Bytes body;
    push(body, static_cast<uint32_t>(p.lapic_address));
    push(body, p.has_pic ? kMadtPcatCompat : uint32_t{0});
    for (uint32_t id = 0; id < p.num_cpus; ++id) {
        if (id < 0xff) { // Processor Local APIC
            push(body, uint8_t{0});
            push(body, uint8_t{8});
            push(body, static_cast<uint8_t>(id)); // ACPI processor UID
            push(body, static_cast<uint8_t>(id)); // APIC ID
            push(body, uint32_t{1});              // enabled
        } else {                                  // Processor Local x2APIC
            push(body, uint8_t{9});
            push(body, uint8_t{16});
            push(body, uint16_t{0});
            push(body, id);                       // x2APIC ID
            push(body, uint32_t{1});              // enabled
            push(body, id);                       // ACPI processor UID
        }
    }
    // I/O APIC
    push(body, uint8_t{1});
    push(body, uint8_t{12});
    push(body, p.ioapic.id);
    push(body, uint8_t{0});
    push(body, static_cast<uint32_t>(p.ioapic.address));
    push(body, p.ioapic.gsi_base);
    // Local APIC NMI: LINT1 of every processor, polarity and trigger as the bus says,
    // the virtual-wire wiring the machine programs into every LAPIC (and the MP table's
    // local interrupt entry says).
    push(body, uint8_t{4});
    push(body, uint8_t{6});
    push(body, uint8_t{0xff}); // all processors
    push(body, uint16_t{0});
    push(body, uint8_t{1});    // LINT1
    return aml::sdt("APIC", kMadtRevision, "KILNAPIC", body);
}

Bytes fadt(const Platform& p, uint64_t dsdt_address) {
    Bytes body(kFadtSize - aml::kSdtHeaderSize, 0);
    auto at = [](size_t table_offset) { return table_offset - aml::kSdtHeaderSize; };
    uint16_t iapc = kIapcVgaNotPresent | kIapcMsiNotSupported | kIapcPcieAspmControls;
    if (!p.has_cmos_rtc) iapc |= kIapcCmosRtcNotPresent;
    put(body, at(109), iapc);
    put(body, at(112), kFadtHwReducedAcpi | kFadtPowerButton | kFadtSleepButton);
    put(body, at(131), kFadtMinorRevision);
    put(body, at(140), dsdt_address); // X_DSDT; the 32-bit DSDT field stays 0
    if (p.acpi_power) {
        // SLEEP_CONTROL_REG and SLEEP_STATUS_REG: Generic Address Structures for one
        // byte-wide I/O port.
        for (size_t off : {kFadtSleepControlOffset, kFadtSleepStatusOffset}) {
            body[at(off)] = kGasSystemIo;
            body[at(off) + 1] = 8;        // register bit width
            body[at(off) + 2] = 0;        // bit offset
            body[at(off) + 3] = kGasByteAccess;
            put(body, at(off) + 4, uint64_t{p.acpi_power->sleep_port});
        }
    }
    std::memcpy(body.data() + at(268), "KILNVMM ", 8); // hypervisor vendor identity
    return aml::sdt("FACP", kFadtRevision, "KILNFACP", body);
}

Bytes xsdt(const std::vector<uint64_t>& entries) {
    Bytes body;
    for (auto a : entries) push(body, a);
    return aml::sdt("XSDT", kXsdtRevision, "KILNXSDT", body);
}

Bytes rsdp(uint64_t xsdt_address) {
    Bytes b(kRsdpSize, 0);
    std::memcpy(b.data(), "RSD PTR ", 8);
    std::memcpy(b.data() + 9, aml::kOemId, 6);
    b[15] = kRsdpRevision;
    put(b, 16, uint32_t{0}); // RsdtAddress: none, the XSDT serves every ACPI 2.0+ OS
    put(b, 20, static_cast<uint32_t>(kRsdpSize));
    put(b, 24, xsdt_address);
    b[8] = aml::checksum(b.data(), 20);          // the ACPI 1.0 part
    b[32] = aml::checksum(b.data(), kRsdpSize);  // the whole structure
    return b;
}

} // namespace

const Table* Tables::find(std::string_view signature) const {
    for (const auto& t : tables)
        if (t.signature == signature) return &t;
    return nullptr;
}

uint64_t Tables::end() const {
    uint64_t e = 0;
    for (const auto& t : tables) e = std::max(e, t.address + t.bytes.size());
    return e;
}

uint8_t byte_sum(const std::vector<uint8_t>& bytes, size_t len) {
    uint8_t sum = 0;
    for (size_t i = 0; i < std::min(len, bytes.size()); ++i) sum = static_cast<uint8_t>(sum + bytes[i]);
    return sum;
}

Result<Tables> build(const Platform& platform, uint64_t base, uint64_t limit) {
    KILN_TRY_CTX(platform.validate(), "ACPI tables");
    if (base % kTableAlign != 0) return fail("ACPI tables: base {:#x} is not 16-byte aligned", base);

    // Sizes are known before addresses: the DSDT and MADT do not point anywhere, the
    // FADT and XSDT have fixed sizes. Lay out, then fill the pointers.
    Bytes dsdt_bytes = dsdt(platform);
    Bytes madt_bytes = madt(platform);
    const uint64_t rsdp_at = base;
    const uint64_t xsdt_at = align_up(rsdp_at + kRsdpSize, kTableAlign);
    const uint64_t fadt_at = align_up(xsdt_at + aml::kSdtHeaderSize + 2 * 8, kTableAlign);
    const uint64_t dsdt_at = align_up(fadt_at + kFadtSize, kTableAlign);
    const uint64_t madt_at = align_up(dsdt_at + dsdt_bytes.size(), kTableAlign);
    const uint64_t end = madt_at + madt_bytes.size();
    if (end > limit)
        return fail("ACPI tables for {} vCPUs and {} virtio-mmio devices need {} bytes; [{:#x}, {:#x}) holds {}",
                    platform.num_cpus, platform.virtio_mmio.size(), end - base, base, limit, limit - base);

    Tables t;
    t.rsdp_address = rsdp_at;
    t.tables.push_back(Table{"RSDP", rsdp_at, rsdp(xsdt_at)});
    t.tables.push_back(Table{"XSDT", xsdt_at, xsdt({fadt_at, madt_at})});
    t.tables.push_back(Table{"FACP", fadt_at, fadt(platform, dsdt_at)});
    t.tables.push_back(Table{"DSDT", dsdt_at, std::move(dsdt_bytes)});
    t.tables.push_back(Table{"APIC", madt_at, std::move(madt_bytes)});
    return t;
}

Result<void> write(const GuestMemory& mem, const Tables& tables) {
    for (const auto& t : tables.tables)
        KILN_TRY_CTX(mem.write(GuestAddress(t.address), t.bytes), "writing the ACPI {} at {:#x}", t.signature,
                     t.address);
    return {};
}

Result<uint64_t> build_and_write(const GuestMemory& mem, const Platform& platform) {
    const Tables t = KILN_TRY(build(platform));
    KILN_TRY(write(mem, t));
    return t.rsdp_address;
}

Result<void> dump(const Tables& tables, const std::string& dir) {
    if (::mkdir(dir.c_str(), 0777) != 0 && errno != EEXIST)
        return fail_errno(fmt::format("creating the ACPI dump directory '{}'", dir));
    for (const auto& t : tables.tables) {
        const std::string path = fmt::format("{}/{}.aml", dir, t.signature);
        KILN_TRY(write_whole_file(path, t.bytes));
    }
    return {};
}

} // namespace kiln::firmware::acpi
