#include <doctest/doctest.h>

#include <vector>

#include "vmm/bus/bus.hpp"

using kiln::Bus;

namespace {
struct Recorder final : kiln::BusDevice {
    std::vector<std::pair<uint64_t, size_t>> reads, writes;
    uint8_t fill = 0xab;
    void read(uint64_t off, std::span<uint8_t> d) override {
        reads.emplace_back(off, d.size());
        for (auto& b : d) b = fill;
    }
    void write(uint64_t off, std::span<const uint8_t> d) override { writes.emplace_back(off, d.size()); }
};
} // namespace

TEST_CASE("bus: dispatches by range with offsets relative to the device") {
    Bus bus("test");
    Recorder a, b;
    REQUIRE(bus.insert(a, 0x3f8, 8, "com1"));
    REQUIRE(bus.insert(b, 0x60, 5, "i8042"));
    uint8_t byte = 0;
    CHECK(bus.read(0x3fd, {&byte, 1}));
    CHECK(byte == 0xab);
    REQUIRE(a.reads.size() == 1);
    CHECK(a.reads[0] == std::pair<uint64_t, size_t>{5, 1});
    CHECK(bus.write(0x64, {&byte, 1}));
    REQUIRE(b.writes.size() == 1);
    CHECK(b.writes[0].first == 4);
    // Ranges stay sorted whatever the insertion order.
    CHECK(bus.ranges().front().name == "i8042");
}

TEST_CASE("bus: unclaimed and straddling accesses are not dispatched") {
    Bus bus("test");
    Recorder a;
    REQUIRE(bus.insert(a, 0x1000, 0x10, "dev"));
    uint8_t buf[4];
    CHECK_FALSE(bus.read(0xfff, {buf, 1}));
    CHECK_FALSE(bus.read(0x1010, {buf, 1}));
    CHECK_FALSE(bus.read(0x100e, {buf, 4})); // runs past the end
    CHECK(bus.read(0x100c, {buf, 4}));       // the last four bytes
    CHECK_FALSE(bus.read(UINT64_MAX, {buf, 4}));
    CHECK(bus.find(0x1000) != nullptr);
    CHECK(bus.find(0x1000, 0) == nullptr);
}

TEST_CASE("bus: overlapping, empty and overflowing ranges are rejected") {
    Bus bus("test");
    Recorder a, b;
    REQUIRE(bus.insert(a, 0x100, 0x100, "first"));
    auto r = bus.insert(b, 0x1ff, 1, "second");
    REQUIRE_FALSE(r);
    CHECK(r.error().message().find("overlaps 'first'") != std::string::npos);
    CHECK_FALSE(bus.insert(b, 0x80, 0x81, "below"));
    CHECK_FALSE(bus.insert(b, 0x0, 0x1000, "around"));
    CHECK_FALSE(bus.insert(b, 0x150, 0x10, "inside"));
    CHECK_FALSE(bus.insert(b, 0x500, 0, "empty"));
    CHECK_FALSE(bus.insert(b, UINT64_MAX - 1, 4, "wraps"));
    CHECK(bus.insert(b, 0x200, 1, "adjacent"));
    CHECK(bus.insert(b, 0x80, 0x80, "adjacent below"));
    CHECK(bus.ranges().size() == 3);
}
