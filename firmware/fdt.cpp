#include "firmware/fdt.hpp"

#include "vmm/base/file_io.hpp"

#include <fcntl.h>
#include <libfdt.h>
#include <unistd.h>

#include <cerrno>
#include <initializer_list>

namespace kiln::firmware::fdt {

namespace {

// Big-endian cells, as the device tree stores them.
void push_cell(std::string& out, uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xff));
}
// A (2-cell address, 2-cell size) pair: the root's #address-cells / #size-cells.
std::string reg64(uint64_t addr, uint64_t size) {
    std::string r;
    push_cell(r, static_cast<uint32_t>(addr >> 32));
    push_cell(r, static_cast<uint32_t>(addr));
    push_cell(r, static_cast<uint32_t>(size >> 32));
    push_cell(r, static_cast<uint32_t>(size));
    return r;
}
std::string cells(std::initializer_list<uint32_t> vs) {
    std::string r;
    for (auto v : vs) push_cell(r, v);
    return r;
}

// The sequential-write libfdt API, each call checked; the first error sticks and is
// reported once by finish().
class Writer {
public:
    explicit Writer(size_t size) : buf_(size) { check(fdt_create(buf_.data(), static_cast<int>(buf_.size()))); }

    void begin(const std::string& name) { check(fdt_begin_node(buf_.data(), name.c_str())); }
    void end() { check(fdt_end_node(buf_.data())); }
    void prop(const char* name, std::string_view bytes) {
        check(fdt_property(buf_.data(), name, bytes.data(), static_cast<int>(bytes.size())));
    }
    void prop_cell(const char* name, uint32_t v) { check(fdt_property_cell(buf_.data(), name, v)); }
    void prop_string(const char* name, std::string_view s) { prop(name, std::string(s) + '\0'); }
    void prop_empty(const char* name) { check(fdt_property(buf_.data(), name, nullptr, 0)); }
    void finish_reservemap() { check(fdt_finish_reservemap(buf_.data())); }

    // 0 when everything went in; else the first libfdt error code.
    int finish() {
        check(fdt_finish(buf_.data()));
        if (err_ == 0) buf_.resize(fdt_totalsize(buf_.data()));
        return err_;
    }
    std::vector<uint8_t>& bytes() { return buf_; }

private:
    void check(int rc) {
        if (rc < 0 && err_ == 0) err_ = rc;
    }
    std::vector<uint8_t> buf_;
    int err_ = 0;
};

void write_tree(Writer& w, const Platform& p, std::span<const MemoryRange> memory_map, std::string_view bootargs) {
    w.finish_reservemap();
    w.begin("");
    using namespace std::string_view_literals;
    w.prop("compatible", "kiln,microvm\0linux,microvm\0"sv); // a string list: each NUL-terminated
    w.prop_string("model", "Kiln microVM");
    w.prop_cell("#address-cells", 2);
    w.prop_cell("#size-cells", 2);
    w.prop_cell("interrupt-parent", kIoApicPhandle);

    w.begin("chosen");
    if (!bootargs.empty()) w.prop_string("bootargs", bootargs);
    if (p.com1) w.prop_string("stdout-path", fmt::format("/serial@{:x}", p.com1->port));
    w.end();

    w.begin("cpus");
    w.prop_cell("#address-cells", 1);
    w.prop_cell("#size-cells", 0);
    for (uint32_t id = 0; id < p.num_cpus; ++id) {
        w.begin(fmt::format("cpu@{:x}", id));
        w.prop_string("device_type", "cpu");
        w.prop_cell("reg", id); // the local APIC ID
        w.end();
    }
    w.end();

    for (const auto& r : memory_map) {
        if (r.kind != MemoryRange::Kind::Ram) continue;
        w.begin(fmt::format("memory@{:x}", r.start));
        w.prop_string("device_type", "memory");
        w.prop("reg", reg64(r.start, r.size));
        w.end();
    }

    w.begin(fmt::format("lapic@{:x}", p.lapic_address));
    w.prop_string("compatible", "intel,ce4100-lapic");
    w.prop("reg", reg64(p.lapic_address, 0x1000));
    w.end();

    w.begin(fmt::format("ioapic@{:x}", p.ioapic.address));
    w.prop_string("compatible", "intel,ce4100-ioapic");
    w.prop_empty("interrupt-controller");
    w.prop_cell("#interrupt-cells", 2);
    w.prop_cell("#address-cells", 0); // an interrupt provider without interrupt-map parents
    w.prop("reg", reg64(p.ioapic.address, 0x1000));
    w.prop_cell("phandle", kIoApicPhandle);
    w.end();

    if (p.com1) {
        w.begin(fmt::format("serial@{:x}", p.com1->port));
        w.prop_string("compatible", "ns16550a");
        w.prop("reg", reg64(p.com1->port, 8));
        w.prop_cell("clock-frequency", 1843200);
        w.prop("interrupts", cells({p.com1->irq, kIrqEdgeRising}));
        w.end();
    }

    for (const auto& d : p.virtio_mmio) {
        w.begin(fmt::format("virtio_mmio@{:x}", d.base));
        w.prop_string("compatible", "virtio,mmio");
        w.prop("reg", reg64(d.base, d.size));
        w.prop("interrupts", cells({d.gsi - p.ioapic.gsi_base, kIrqEdgeRising}));
        w.prop_cell("interrupt-parent", kIoApicPhandle);
        w.prop_empty("dma-coherent");
        w.end();
    }
    w.end();
}

} // namespace

Result<std::vector<uint8_t>> build(const Platform& platform, std::span<const MemoryRange> memory_map,
                                   std::string_view bootargs) {
    KILN_TRY_CTX(platform.validate(), "device tree");
    // A few KiB for Kiln's machines; grow on FDT_ERR_NOSPACE (many vCPUs, long bootargs).
    for (size_t size = 16 * 1024; size <= 16 * 1024 * 1024; size *= 2) {
        Writer w(size);
        write_tree(w, platform, memory_map, bootargs);
        const int err = w.finish();
        if (err == 0) return std::move(w.bytes());
        if (err != -FDT_ERR_NOSPACE) return fail("building the device tree: libfdt: {}", fdt_strerror(err));
    }
    return fail("building the device tree: it does not fit in 16 MiB");
}

Result<void> dump(std::span<const uint8_t> dtb, const std::string& path) { return write_whole_file(path, dtb); }

} // namespace kiln::firmware::fdt
