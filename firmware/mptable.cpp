#include "firmware/mptable.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

#include "vmm/memory/layout.hpp"

namespace kiln::firmware::mptable {

namespace {

// The configuration table is assembled on the host, then checksummed and written whole.
class TableBuilder {
public:
    template <class T>
    void add(const T& entry) {
        const auto* p = reinterpret_cast<const uint8_t*>(&entry);
        bytes_.insert(bytes_.end(), p, p + sizeof(T));
        ++count_;
    }
    [[nodiscard]] std::vector<uint8_t>& bytes() { return bytes_; }
    [[nodiscard]] uint16_t count() const { return count_; }

private:
    std::vector<uint8_t> bytes_ = std::vector<uint8_t>(sizeof(ConfigHeader), 0);
    uint16_t count_ = 0;
};

template <size_t N>
void copy_text(char (&dst)[N], const char* src) {
    std::memcpy(dst, src, N); // fixed-width, space-padded fields: no NUL
}

uint8_t checksum_for(const uint8_t* data, size_t len) { return static_cast<uint8_t>(-byte_sum(data, len)); }

// The virtio-mmio GSIs the 16 ISA entries do not already cover, sorted, once each.
std::vector<uint32_t> extra_gsis(const Platform& p) {
    std::vector<uint32_t> gsis;
    for (const auto& d : p.virtio_mmio)
        if (d.gsi >= kIsaIrqs) gsis.push_back(d.gsi);
    std::sort(gsis.begin(), gsis.end());
    gsis.erase(std::unique(gsis.begin(), gsis.end()), gsis.end());
    return gsis;
}

} // namespace

uint8_t byte_sum(const uint8_t* data, size_t len) {
    uint8_t sum = 0;
    for (size_t i = 0; i < len; ++i) sum = static_cast<uint8_t>(sum + data[i]);
    return sum;
}

uint64_t config_table_size(uint32_t num_cpus) { return config_table_size(Platform::standard(num_cpus)); }

uint64_t config_table_size(const Platform& platform) {
    return sizeof(ConfigHeader) + uint64_t{platform.num_cpus} * sizeof(ProcessorEntry) + sizeof(BusEntry) +
           sizeof(IoApicEntry) + (kIsaIrqs + extra_gsis(platform).size()) * sizeof(InterruptEntry) +
           2 * sizeof(InterruptEntry);
}

Result<Placement> write(const GuestMemory& mem, uint32_t num_cpus) {
    if (num_cpus == 0 || num_cpus > kMaxCpus)
        return fail("the MP table describes 1 to {} vCPUs, not {}", kMaxCpus, num_cpus);
    return write(mem, Platform::standard(num_cpus));
}

Result<Placement> write(const GuestMemory& mem, const Platform& platform) {
    KILN_TRY_CTX(platform.validate(), "MP table");
    const uint32_t num_cpus = platform.num_cpus;
    const uint8_t ioapic_id = platform.ioapic.id;

    TableBuilder t;
    for (uint32_t i = 0; i < num_cpus; ++i) {
        ProcessorEntry e{};
        e.type = kProcessor;
        e.lapic_id = static_cast<uint8_t>(i);
        e.lapic_version = kLapicVersion;
        e.cpu_flags = static_cast<uint8_t>(kCpuEnabled | (i == 0 ? kCpuBootProcessor : 0));
        e.cpu_signature = kCpuSignature;
        e.feature_flags = kCpuFeatures;
        t.add(e);
    }
    BusEntry bus{};
    bus.type = kBus;
    bus.bus_id = kIsaBusId;
    copy_text(bus.bus_type, "ISA   ");
    t.add(bus);

    IoApicEntry ioapic{};
    ioapic.type = kIoApic;
    ioapic.id = ioapic_id;
    ioapic.version = kIoApicVersion;
    ioapic.flags = kIoApicEnabled;
    ioapic.address = static_cast<uint32_t>(platform.ioapic.address);
    t.add(ioapic);

    // KVM's default GSI routing sends ISA IRQ n to IOAPIC pin n (and PIC input n), so
    // the table says exactly that: no source overrides.
    for (uint8_t irq = 0; irq < kIsaIrqs; ++irq) {
        InterruptEntry e{};
        e.type = kIoInterrupt;
        e.interrupt_type = kInt;
        e.source_bus = kIsaBusId;
        e.source_irq = irq;
        e.dest_id = ioapic_id;
        e.dest_pin = irq;
        t.add(e);
    }
    // Virtio-mmio interrupts above the ISA range, each on its own IOAPIC pin.
    for (uint32_t gsi : extra_gsis(platform)) {
        InterruptEntry e{};
        e.type = kIoInterrupt;
        e.interrupt_type = kInt;
        e.source_bus = kIsaBusId;
        e.source_irq = static_cast<uint8_t>(gsi);
        e.dest_id = ioapic_id;
        e.dest_pin = static_cast<uint8_t>(gsi - platform.ioapic.gsi_base);
        t.add(e);
    }
    // The PC's virtual-wire wiring: the PIC on LINT0 (ExtINT), NMI on LINT1, on every
    // local APIC. The machine programs the LAPICs' LVTs the same way.
    for (auto [kind, lint] : {std::pair{kExtInt, uint8_t{0}}, std::pair{kNmi, uint8_t{1}}}) {
        InterruptEntry e{};
        e.type = kLocalInterrupt;
        e.interrupt_type = kind;
        e.source_bus = kIsaBusId;
        e.source_irq = 0;
        e.dest_id = kAllLocalApics;
        e.dest_pin = lint;
        t.add(e);
    }

    auto& bytes = t.bytes();
    ConfigHeader h{};
    copy_text(h.signature, "PCMP");
    h.length = static_cast<uint16_t>(bytes.size());
    h.spec_rev = kSpecRev;
    copy_text(h.oem_id, "KILN    ");
    copy_text(h.product_id, "KILN VMM    ");
    h.entry_count = t.count();
    h.lapic_address = static_cast<uint32_t>(platform.lapic_address);
    std::memcpy(bytes.data(), &h, sizeof(h));
    bytes[offsetof(ConfigHeader, checksum)] = checksum_for(bytes.data(), bytes.size());

    Placement p;
    p.floating_pointer = layout::kMpTable;
    p.config_length = bytes.size();
    p.entry_count = t.count();
    const uint64_t after_pointer = layout::kMpTable + sizeof(FloatingPointer);
    p.config_table = after_pointer + bytes.size() <= kMpAreaEnd ? after_pointer : kMpConfigHigh;
    if (p.config_table == kMpConfigHigh && kMpConfigHigh + bytes.size() > kMpConfigHighEnd)
        return fail("the MP table for {} vCPUs does not fit below 1 MiB", num_cpus); // not at 254: 5.3 KiB

    FloatingPointer fp{};
    copy_text(fp.signature, "_MP_");
    fp.config_table = static_cast<uint32_t>(p.config_table);
    fp.length = 1;
    fp.spec_rev = kSpecRev;
    fp.checksum = checksum_for(reinterpret_cast<const uint8_t*>(&fp), sizeof(fp));

    KILN_TRY_CTX(mem.write_obj(GuestAddress(p.floating_pointer), fp), "writing the MP floating pointer");
    KILN_TRY_CTX(mem.write(GuestAddress(p.config_table), bytes), "writing the MP configuration table");
    return p;
}

} // namespace kiln::firmware::mptable
