// The virtio core against a driver played by the test: split virtqueues (chains,
// indirect tables, EVENT_IDX, hostile rings) and the virtio-mmio v2 register protocol.
#include <doctest/doctest.h>

#include <cstring>
#include <vector>

#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>

#include "devices/virtio/mmio.hpp"
#include "devices/virtio/spec.hpp"
#include "devices/virtio/virtqueue.hpp"
#include "vmm/memory/layout.hpp"
#include "virtio_driver.hpp"

using namespace kiln;
using namespace kiln::virtio;

namespace {

constexpr uint64_t kDesc = 0x200000, kAvail = 0x201000, kUsed = 0x202000, kData = 0x300000;

GuestMemory make_memory() {
    auto plan = MemoryPlan::for_ram_size(16ull << 20);
    REQUIRE(plan);
    auto mem = GuestMemory::create(*plan);
    REQUIRE(mem);
    return std::move(*mem);
}

// The driver's side of one split queue, written straight into guest memory.
struct Driver {
    const GuestMemory& mem;
    uint16_t size;
    uint16_t avail_idx = 0;

    void desc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next = 0) {
        test::write_desc(mem, kDesc, i, addr, len, flags, next);
    }
    void publish(uint16_t head) {
        REQUIRE(mem.write_obj<uint16_t>(GuestAddress(kAvail + 4 + 2 * (avail_idx % size)), head));
        ++avail_idx;
        REQUIRE(mem.write_obj<uint16_t>(GuestAddress(kAvail + 2), avail_idx));
    }
    void set_avail_flags(uint16_t f) { REQUIRE(mem.write_obj<uint16_t>(GuestAddress(kAvail), f)); }
    void set_used_event(uint16_t e) { REQUIRE(mem.write_obj<uint16_t>(GuestAddress(kAvail + 4 + 2 * size), e)); }
    uint16_t used_idx() { return *mem.read_obj<uint16_t>(GuestAddress(kUsed + 2)); }
    uint16_t avail_event() { return *mem.read_obj<uint16_t>(GuestAddress(kUsed + 4 + 8 * size)); }
    uint16_t used_flags() { return *mem.read_obj<uint16_t>(GuestAddress(kUsed)); }
    std::pair<uint32_t, uint32_t> used(uint16_t i) {
        return {*mem.read_obj<uint32_t>(GuestAddress(kUsed + 4 + 8 * i)),
                *mem.read_obj<uint32_t>(GuestAddress(kUsed + 8 + 8 * i))};
    }
};

Virtqueue make_queue(const GuestMemory& mem, uint16_t size, bool event_idx = false, bool indirect = false) {
    Virtqueue q;
    REQUIRE(q.configure(mem, {size, kDesc, kAvail, kUsed}, event_idx, indirect));
    return q;
}

} // namespace

TEST_CASE("virtqueue: a chain is popped with its segments in order, and returned on the used ring") {
    auto mem = make_memory();
    Driver d{mem, 8};
    auto q = make_queue(mem, 8);
    Chain c;
    CHECK(q.pop(c) == Virtqueue::Pop::Empty);
    d.desc(3, kData, 16, kDescFlagNext, 5);
    d.desc(5, kData + 0x1000, 512, kDescFlagNext | kDescFlagWrite, 1);
    d.desc(1, kData + 0x2000, 1, kDescFlagWrite);
    d.publish(3);
    REQUIRE(q.pop(c) == Virtqueue::Pop::Chain);
    CHECK(c.broken == nullptr);
    CHECK(c.head == 3);
    REQUIRE(c.count == 3);
    CHECK(c.segments[0].host == mem.slice(GuestAddress(kData), 16)->data());
    CHECK_FALSE(c.segments[0].writable);
    CHECK(c.segments[1].len == 512);
    CHECK(c.segments[1].writable);
    CHECK(c.segments[2].len == 1);
    CHECK(q.pop(c) == Virtqueue::Pop::Empty);
    q.push_used(3, 513);
    CHECK(d.used_idx() == 1);
    CHECK(d.used(0) == std::pair<uint32_t, uint32_t>{3, 513});
    CHECK(q.needs_interrupt());
    CHECK_FALSE(q.needs_interrupt()); // nothing new since
}

TEST_CASE("virtqueue: hostile chains are reported broken, never followed forever") {
    auto mem = make_memory();
    Driver d{mem, 8};
    auto q = make_queue(mem, 8, false, true);
    Chain c;
    SUBCASE("a loop") {
        d.desc(0, kData, 16, kDescFlagNext, 1);
        d.desc(1, kData, 16, kDescFlagNext, 0);
        d.publish(0);
        REQUIRE(q.pop(c) == Virtqueue::Pop::Chain);
        REQUIRE(c.broken);
        CHECK(std::string(c.broken).find("loops") != std::string::npos);
        CHECK(c.head == 0);
    }
    SUBCASE("next beyond the queue") {
        d.desc(0, kData, 16, kDescFlagNext, 200);
        d.publish(0);
        REQUIRE(q.pop(c) == Virtqueue::Pop::Chain);
        CHECK(c.broken);
    }
    SUBCASE("a buffer outside guest RAM, or wrapping the address space") {
        d.desc(0, 0xfffffffffffff000ULL, 0x2000, 0);
        d.publish(0);
        REQUIRE(q.pop(c) == Virtqueue::Pop::Chain);
        CHECK(c.broken);
        d.desc(1, layout::kMmioHoleStart, 16, 0);
        d.publish(1);
        REQUIRE(q.pop(c) == Virtqueue::Pop::Chain);
        CHECK(c.broken);
    }
    SUBCASE("a bad buffer mid-chain: broken, but the chain's last byte is found for a status") {
        d.desc(0, kData, 16, kDescFlagNext, 1);                                   // header
        d.desc(1, 0x7ff000000000ULL, 4096, kDescFlagNext | kDescFlagWrite, 2);      // outside RAM
        d.desc(2, kData + 0x800, 1, kDescFlagWrite);                              // status
        d.publish(0);
        REQUIRE(q.pop(c) == Virtqueue::Pop::Chain);
        REQUIRE(c.broken);
        CHECK(std::string(c.broken) == "descriptor points outside guest RAM");
        CHECK(c.status == mem.slice(GuestAddress(kData + 0x800), 1)->data());
        // A loop after a bad buffer: no status byte is trusted.
        d.desc(3, 0x7ff000000000ULL, 16, kDescFlagNext, 4);
        d.desc(4, kData, 16, kDescFlagNext | kDescFlagWrite, 3);
        d.publish(3);
        REQUIRE(q.pop(c) == Virtqueue::Pop::Chain);
        CHECK(std::string(c.broken).find("loops") != std::string::npos);
        CHECK(c.status == nullptr);
    }
    SUBCASE("indirect tables: bad length, nested, looping") {
        d.desc(0, kData, 24, kDescFlagIndirect);
        d.publish(0);
        REQUIRE(q.pop(c) == Virtqueue::Pop::Chain);
        CHECK(c.broken);
        // A table at kData whose entry 0 points to itself.
        uint8_t e[16] = {};
        uint64_t addr = kData + 0x100;
        uint32_t len = 8;
        uint16_t flags = kDescFlagNext, next = 0;
        std::memcpy(e, &addr, 8);
        std::memcpy(e + 8, &len, 4);
        std::memcpy(e + 12, &flags, 2);
        std::memcpy(e + 14, &next, 2);
        REQUIRE(mem.write(GuestAddress(kData), e));
        d.desc(1, kData, 16, kDescFlagIndirect);
        d.publish(1);
        REQUIRE(q.pop(c) == Virtqueue::Pop::Chain);
        CHECK(c.broken);
        flags = kDescFlagIndirect;
        std::memcpy(e + 12, &flags, 2);
        REQUIRE(mem.write(GuestAddress(kData), e));
        d.publish(1);
        REQUIRE(q.pop(c) == Virtqueue::Pop::Chain);
        CHECK(std::string(c.broken) == "nested indirect descriptor");
    }
    SUBCASE("indirect without the feature") {
        auto plain = make_queue(mem, 8, false, false);
        d.desc(0, kData, 32, kDescFlagIndirect);
        d.publish(0);
        REQUIRE(plain.pop(c) == Virtqueue::Pop::Chain);
        CHECK(c.broken);
    }
    SUBCASE("a ring whose index runs ahead, or names a head beyond the queue") {
        REQUIRE(mem.write_obj<uint16_t>(GuestAddress(kAvail + 2), 100));
        const char* why = nullptr;
        CHECK(q.pop(c, &why) == Virtqueue::Pop::QueueBroken);
        CHECK(why);
        auto q2 = make_queue(mem, 8);
        REQUIRE(mem.write_obj<uint16_t>(GuestAddress(kAvail + 2), 1));
        REQUIRE(mem.write_obj<uint16_t>(GuestAddress(kAvail + 4), 9));
        CHECK(q2.pop(c) == Virtqueue::Pop::QueueBroken);
    }
}

TEST_CASE("virtqueue: a valid indirect table is walked like a chain") {
    auto mem = make_memory();
    Driver d{mem, 4};
    auto q = make_queue(mem, 4, false, true);
    std::vector<uint8_t> table(3 * 16);
    auto put = [&](int i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
        std::memcpy(&table[16 * i], &addr, 8);
        std::memcpy(&table[16 * i + 8], &len, 4);
        std::memcpy(&table[16 * i + 12], &flags, 2);
        std::memcpy(&table[16 * i + 14], &next, 2);
    };
    put(0, kData + 0x1000, 16, kDescFlagNext, 2);
    put(2, kData + 0x2000, 4096, kDescFlagNext | kDescFlagWrite, 1);
    put(1, kData + 0x3000, 1, kDescFlagWrite, 0);
    REQUIRE(mem.write(GuestAddress(kData), table));
    d.desc(2, kData, 48, kDescFlagIndirect);
    d.publish(2);
    Chain c;
    REQUIRE(q.pop(c) == Virtqueue::Pop::Chain);
    CHECK(c.broken == nullptr);
    CHECK(c.head == 2);
    REQUIRE(c.count == 3);
    CHECK(c.segments[1].len == 4096);
    CHECK(c.segments[2].writable);
}

TEST_CASE("virtqueue: interrupt suppression, with and without EVENT_IDX") {
    auto mem = make_memory();
    Driver d{mem, 8};
    SUBCASE("NO_INTERRUPT flag") {
        auto q = make_queue(mem, 8);
        d.set_avail_flags(kAvailFlagNoInterrupt);
        q.push_used(0, 0);
        CHECK_FALSE(q.needs_interrupt());
    }
    SUBCASE("used_event: interrupt only when the used index passes it") {
        auto q = make_queue(mem, 8, true);
        d.set_used_event(1); // "interrupt me when entry 1 is used", i.e. at idx 2
        q.push_used(0, 0);
        CHECK_FALSE(q.needs_interrupt());
        q.push_used(1, 0);
        CHECK(q.needs_interrupt());
        q.push_used(2, 0);
        CHECK_FALSE(q.needs_interrupt());
    }
    SUBCASE("avail_event is published before sleeping, and a late buffer is noticed") {
        auto q = make_queue(mem, 8, true);
        d.desc(0, kData, 8, 0);
        d.publish(0);
        Chain c;
        REQUIRE(q.pop(c) == Virtqueue::Pop::Chain);
        CHECK_FALSE(q.prepare_to_sleep());
        CHECK(d.avail_event() == 1);
        d.publish(0);
        CHECK(q.prepare_to_sleep());
    }
    SUBCASE("kicks suppressed while the device watches the ring, asked for again before it sleeps") {
        // The driver's side of it (virtio 1.2, 2.7.10): kick when avail_event lies in
        // [old, new) of the index it just moved.
        auto kicks = [&d](uint16_t old_idx) {
            return static_cast<uint16_t>(d.avail_idx - d.avail_event() - 1) <
                   static_cast<uint16_t>(d.avail_idx - old_idx);
        };
        auto q = make_queue(mem, 8, true);
        d.desc(0, kData, 8, 0);
        Chain c;
        for (int round = 0; round < 3; ++round) { // the index moves on; the rule holds
            q.suppress_kicks();
            uint16_t old_idx = d.avail_idx;
            d.publish(0);
            CHECK_FALSE(kicks(old_idx));
            old_idx = d.avail_idx;
            d.publish(0); // a second buffer before the device took the first
            CHECK_FALSE(kicks(old_idx));
            REQUIRE(q.pop(c) == Virtqueue::Pop::Chain);
            REQUIRE(q.pop(c) == Virtqueue::Pop::Chain);
            CHECK_FALSE(q.prepare_to_sleep());
            old_idx = d.avail_idx;
            d.publish(0);
            CHECK(kicks(old_idx));
            REQUIRE(q.pop(c) == Virtqueue::Pop::Chain);
        }
    }
    SUBCASE("without EVENT_IDX: VRING_USED_F_NO_NOTIFY while watching, cleared before sleeping") {
        auto q = make_queue(mem, 8);
        q.suppress_kicks();
        CHECK(d.used_flags() == kUsedFlagNoNotify);
        CHECK_FALSE(q.prepare_to_sleep());
        CHECK(d.used_flags() == 0);
    }
}

TEST_CASE("virtqueue: layouts outside RAM, misaligned or oversized are refused") {
    auto mem = make_memory();
    Virtqueue q;
    CHECK_FALSE(q.configure(mem, {0, kDesc, kAvail, kUsed}, false, false));
    CHECK_FALSE(q.configure(mem, {512, kDesc, kAvail, kUsed}, false, false));
    CHECK_FALSE(q.configure(mem, {8, kDesc + 8, kAvail, kUsed}, false, false));
    CHECK_FALSE(q.configure(mem, {8, kDesc, kAvail, layout::kMmioHoleStart}, false, false));
    CHECK_FALSE(q.configured());
}

namespace {

struct FakeIrq final : IrqLine {
    int edges = 0;
    void set_level(bool) override {}
    void trigger() override { ++edges; }
};

struct FakeDevice final : Device {
    int activations = 0, resets = 0;
    std::vector<QueueBinding> bound;
    Interrupt* irq = nullptr;
    uint8_t config[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    std::string_view name() const override { return "fake"; }
    uint32_t device_id() const override { return 2; }
    uint64_t device_features() const override { return feature(kFeatureVersion1) | feature(kFeatureEventIdx) | 0x40; }
    uint16_t num_queues() const override { return 2; }
    void read_config(uint64_t off, std::span<uint8_t> data) const override {
        for (size_t i = 0; i < data.size(); ++i) data[i] = off + i < sizeof config ? config[off + i] : 0;
    }
    void write_config(uint64_t, std::span<const uint8_t>) override {}
    Result<void> activate(const GuestMemory&, uint64_t, std::span<const QueueBinding> q, Interrupt& i) override {
        ++activations;
        bound.assign(q.begin(), q.end());
        irq = &i;
        return {};
    }
    void reset() override { ++resets; }
};

uint32_t rd(MmioTransport& t, uint64_t off) {
    uint8_t b[4];
    t.read(off, b);
    uint32_t v;
    std::memcpy(&v, b, 4);
    return v;
}
void wr(MmioTransport& t, uint64_t off, uint32_t v) {
    uint8_t b[4];
    std::memcpy(b, &v, 4);
    t.write(off, b);
}

// The driver initialization sequence of virtio 1.2, 3.1.1, for queue 0 only.
void bring_up(MmioTransport& t, uint64_t features) {
    wr(t, VIRTIO_MMIO_STATUS, 0);
    wr(t, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
    wr(t, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    wr(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    wr(t, VIRTIO_MMIO_DRIVER_FEATURES, static_cast<uint32_t>(features));
    wr(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    wr(t, VIRTIO_MMIO_DRIVER_FEATURES, static_cast<uint32_t>(features >> 32));
    wr(t, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK);
    wr(t, VIRTIO_MMIO_QUEUE_SEL, 0);
    wr(t, VIRTIO_MMIO_QUEUE_NUM, 8);
    wr(t, VIRTIO_MMIO_QUEUE_DESC_LOW, static_cast<uint32_t>(kDesc));
    wr(t, VIRTIO_MMIO_QUEUE_AVAIL_LOW, static_cast<uint32_t>(kAvail));
    wr(t, VIRTIO_MMIO_QUEUE_USED_LOW, static_cast<uint32_t>(kUsed));
    wr(t, VIRTIO_MMIO_QUEUE_READY, 1);
}

} // namespace

TEST_CASE("virtio-mmio: identification, features, bring-up, kicks, interrupts and reset") {
    auto mem = make_memory();
    FakeIrq irq;
    auto dev = std::make_unique<FakeDevice>();
    FakeDevice& fake = *dev;
    auto t = MmioTransport::create(std::move(dev), mem, irq);
    REQUIRE(t);
    MmioTransport& m = **t;
    CHECK(rd(m, VIRTIO_MMIO_MAGIC_VALUE) == 0x74726976);
    CHECK(rd(m, VIRTIO_MMIO_VERSION) == 2);
    CHECK(rd(m, VIRTIO_MMIO_DEVICE_ID) == 2);
    wr(m, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    CHECK(rd(m, VIRTIO_MMIO_DEVICE_FEATURES) == 1); // VERSION_1 is bit 32
    wr(m, VIRTIO_MMIO_QUEUE_SEL, 5);
    CHECK(rd(m, VIRTIO_MMIO_QUEUE_NUM_MAX) == 0);   // no such queue
    wr(m, VIRTIO_MMIO_QUEUE_SEL, 1);
    CHECK(rd(m, VIRTIO_MMIO_QUEUE_NUM_MAX) == kMaxQueueSize);

    SUBCASE("a driver without VERSION_1 or with unoffered features does not get FEATURES_OK") {
        bring_up(m, 0x40);
        CHECK((rd(m, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK) == 0);
        bring_up(m, feature(kFeatureVersion1) | 0x80);
        CHECK((rd(m, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK) == 0);
    }
    SUBCASE("DRIVER_OK activates the device with the ready queues; kicks and interrupts flow") {
        bring_up(m, feature(kFeatureVersion1) | feature(kFeatureEventIdx));
        CHECK(rd(m, VIRTIO_MMIO_QUEUE_READY) == 0 + 1);
        wr(m, VIRTIO_MMIO_STATUS, 0xf & ~VIRTIO_CONFIG_S_FAILED);
        REQUIRE(fake.activations == 1);
        REQUIRE(fake.bound.size() == 2);
        CHECK(fake.bound[0].queue != nullptr);
        CHECK(fake.bound[1].queue == nullptr); // never made ready
        // Layout registers are frozen while the queue is ready.
        wr(m, VIRTIO_MMIO_QUEUE_SEL, 0);
        wr(m, VIRTIO_MMIO_QUEUE_DESC_LOW, 0x1234);
        CHECK(fake.bound[0].queue->size() == 8);
        // A notify without ioeventfd lands on the queue's eventfd.
        wr(m, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
        uint64_t n = 0;
        CHECK(::read(m.kick_fd(0), &n, 8) == 8);
        CHECK(n == 1);
        fake.irq->used_buffers();
        CHECK(irq.edges == 1);
        CHECK(rd(m, VIRTIO_MMIO_INTERRUPT_STATUS) == VIRTIO_MMIO_INT_VRING);
        wr(m, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
        CHECK(rd(m, VIRTIO_MMIO_INTERRUPT_STATUS) == 0);
        // The device reports a broken queue: NEEDS_RESET plus a config interrupt.
        const uint32_t gen = rd(m, VIRTIO_MMIO_CONFIG_GENERATION);
        std::vector<std::string> errors; // what the VMM reports (the API's error event)
        m.set_error_sink([&](const std::string& e) { errors.push_back(e); });
        fake.irq->needs_reset("a test");
        fake.irq->needs_reset("once is enough");
        REQUIRE(errors.size() == 1);
        CHECK(errors[0].find(": a test (the device needs a reset)") != std::string::npos);
        CHECK((rd(m, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET) != 0);
        CHECK((rd(m, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG) != 0);
        CHECK(rd(m, VIRTIO_MMIO_CONFIG_GENERATION) != gen);
        // Reset: the device stops, everything is forgotten.
        const int resets = fake.resets;
        wr(m, VIRTIO_MMIO_STATUS, 0);
        CHECK(fake.resets == resets + 1);
        CHECK(rd(m, VIRTIO_MMIO_STATUS) == 0);
        CHECK(rd(m, VIRTIO_MMIO_QUEUE_READY) == 0);
    }
    SUBCASE("a queue laid out outside RAM is not made ready; the device asks for a reset") {
        wr(m, VIRTIO_MMIO_QUEUE_SEL, 0);
        wr(m, VIRTIO_MMIO_QUEUE_NUM, 8);
        wr(m, VIRTIO_MMIO_QUEUE_DESC_LOW, 0xf0000000);
        wr(m, VIRTIO_MMIO_QUEUE_READY, 1);
        CHECK(rd(m, VIRTIO_MMIO_QUEUE_READY) == 0);
        CHECK((rd(m, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET) != 0);
    }
    SUBCASE("config space reads any width; odd-sized register accesses are ignored") {
        uint8_t b[2];
        m.read(VIRTIO_MMIO_CONFIG + 2, b);
        CHECK(b[0] == 3);
        CHECK(b[1] == 4);
        uint8_t one[1] = {0xff};
        m.read(VIRTIO_MMIO_MAGIC_VALUE, one);
        CHECK(one[0] == 0);
    }
}
