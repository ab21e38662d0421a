#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "devices/acpi/power.hpp"
#include "devices/legacy/debug_exit.hpp"
#include "devices/legacy/i8042.hpp"
#include "devices/legacy/serial.hpp"
#include "vmm/memory/layout.hpp"

using namespace kiln;

namespace {
struct FakeIrq final : IrqLine {
    std::vector<bool> levels;
    void set_level(bool a) override { levels.push_back(a); }
    void trigger() override { levels.push_back(true); levels.push_back(false); }
    [[nodiscard]] bool asserted() const { return !levels.empty() && levels.back(); }
};
struct StringSink final : ByteSink {
    std::string text;
    void put(std::span<const uint8_t> b) override { text.append(b.begin(), b.end()); }
};
struct Exits final : VmExitSink {
    std::vector<VmExit> got;
    void request_exit(VmExit e) override { got.push_back(std::move(e)); }
};
uint8_t rd(BusDevice& d, uint64_t off) {
    uint8_t v = 0;
    d.read(off, {&v, 1});
    return v;
}
void wr(BusDevice& d, uint64_t off, uint8_t v) { d.write(off, {&v, 1}); }
} // namespace

TEST_CASE("serial: transmit goes to the sink, LSR always reports THR empty") {
    FakeIrq irq;
    StringSink sink;
    Serial8250 uart(irq, sink);
    for (char c : std::string("hi\n")) wr(uart, 0, static_cast<uint8_t>(c));
    CHECK(sink.text == "hi\n");
    CHECK((rd(uart, 5) & 0x60) == 0x60);
    CHECK((rd(uart, 5) & 0x01) == 0); // no data ready
}

TEST_CASE("serial: divisor latch does not transmit") {
    FakeIrq irq;
    StringSink sink;
    Serial8250 uart(irq, sink);
    wr(uart, 3, 0x80); // DLAB
    wr(uart, 0, 0x01);
    wr(uart, 1, 0x00);
    CHECK(rd(uart, 0) == 0x01);
    wr(uart, 3, 0x03);
    CHECK(sink.text.empty());
}

TEST_CASE("serial: receive raises the interrupt, reading drains it") {
    FakeIrq irq;
    StringSink sink;
    Serial8250 uart(irq, sink);
    wr(uart, 4, 0x08); // OUT2: route the interrupt
    wr(uart, 1, 0x01); // RX data interrupt
    const uint8_t in[] = {'a', 'b'};
    CHECK(uart.enqueue_input(in) == 2);
    CHECK(irq.asserted());
    CHECK((rd(uart, 2) & 0x0f) == 0x04);
    CHECK((rd(uart, 5) & 0x01) == 1);
    CHECK(rd(uart, 0) == 'a');
    CHECK(irq.asserted());
    CHECK(rd(uart, 0) == 'b');
    CHECK_FALSE(irq.asserted());
    CHECK((rd(uart, 2) & 0x01) == 0x01); // no interrupt pending
}

TEST_CASE("serial: THRE interrupt on enable and after transmit, cleared by IIR read") {
    FakeIrq irq;
    StringSink sink;
    Serial8250 uart(irq, sink);
    wr(uart, 4, 0x08);
    wr(uart, 1, 0x02);
    CHECK(irq.asserted());
    CHECK((rd(uart, 2) & 0x0f) == 0x02);
    CHECK_FALSE(irq.asserted());
    wr(uart, 0, 'x');
    CHECK(irq.asserted());
}

TEST_CASE("serial: loopback mode returns what is sent and prints nothing") {
    FakeIrq irq;
    StringSink sink;
    Serial8250 uart(irq, sink);
    wr(uart, 4, 0x10);
    wr(uart, 0, 0x5a);
    CHECK(rd(uart, 0) == 0x5a);
    CHECK(sink.text.empty());
}

TEST_CASE("serial: the receive buffer is bounded") {
    FakeIrq irq;
    StringSink sink;
    Serial8250 uart(irq, sink);
    std::vector<uint8_t> lots(Serial8250::kRxBufferSize + 100, 'z');
    CHECK(uart.enqueue_input(lots) == Serial8250::kRxBufferSize);
    CHECK(uart.input_space() == 0);
}

TEST_CASE("i8042: reset command ends the VM with Reset") {
    Exits exits;
    I8042 kbd(exits);
    CHECK((rd(kbd, 4) & 0x01) == 0);
    wr(kbd, 4, 0xaa); // self test
    CHECK(rd(kbd, 0) == 0x55);
    CHECK(exits.got.empty());
    wr(kbd, 4, 0xfe);
    REQUIRE(exits.got.size() == 1);
    CHECK(exits.got[0].reason == ExitReason::Reset);
}

TEST_CASE("debug-exit: the byte written is the guest's status") {
    Exits exits;
    DebugExit port(exits);
    wr(port, 0, 42);
    REQUIRE(exits.got.size() == 1);
    CHECK(exits.got[0].reason == ExitReason::GuestStatus);
    CHECK(to_exit_status(exits.got[0]) == 42);
}

TEST_CASE("exit statuses are distinct for each way a VM ends") {
    std::vector<int> codes;
    for (auto r : {ExitReason::Reset, ExitReason::PowerOff, ExitReason::TripleFault, ExitReason::InternalError,
                   ExitReason::FailOnMatched, ExitReason::Timeout, ExitReason::HostError})
        codes.push_back(to_exit_status({r, 0, ""}));
    std::sort(codes.begin(), codes.end());
    CHECK(std::adjacent_find(codes.begin(), codes.end()) == codes.end());
    CHECK(to_exit_status({ExitReason::Timeout, 0, ""}) == 124);
    CHECK(to_exit_status({ExitReason::ExpectMatched, 0, ""}) == 0);
    CHECK(to_exit_status({ExitReason::GuestStatus, 255, ""}) == 255);
    CHECK(to_exit_status({ExitReason::Signal, 15, ""}) == 143);
}

TEST_CASE("ACPI GED: a press sets the power button bit and pulses the interrupt, reading clears what it read") {
    FakeIrq irq;
    AcpiGed ged(irq);
    uint32_t reg = 0xffffffff;
    ged.read(0, {reinterpret_cast<uint8_t*>(&reg), 4});
    CHECK(reg == 0);
    CHECK(irq.levels.empty());

    ged.press_power_button();
    CHECK(irq.levels == std::vector<bool>{true, false}); // one edge
    CHECK(ged.pending() == layout::kAcpiGedPowerButton);
    ged.notify(1u << 16);
    CHECK(rd(ged, 2) == 1);                               // a byte read clears only its byte
    CHECK(ged.pending() == layout::kAcpiGedPowerButton);
    ged.read(0, {reinterpret_cast<uint8_t*>(&reg), 4});
    CHECK(reg == layout::kAcpiGedPowerButton);
    CHECK(ged.pending() == 0);
    ged.read(0, {reinterpret_cast<uint8_t*>(&reg), 4});
    CHECK(reg == 0);
    CHECK(rd(ged, 8) == 0);                               // past the register
    wr(ged, 0, 0xff);                                     // writes do nothing
    CHECK(ged.pending() == 0);
}

TEST_CASE("ACPI sleep control: SLP_EN with SLP_TYP 5 powers off, other types and no SLP_EN do not") {
    using R = AcpiSleepControl::Request;
    CHECK(AcpiSleepControl::decode(0x20 | (5 << 2)) == R::PowerOff); // 0x34, what Linux writes for S5
    CHECK(AcpiSleepControl::decode(0x34 | 0xc3) == R::PowerOff);     // reserved bits do not matter
    CHECK(AcpiSleepControl::decode(5 << 2) == R::None);              // no SLP_EN
    CHECK(AcpiSleepControl::decode(0x80) == R::None);                // WAK_STS to the status register
    for (int type : {0, 1, 2, 3, 4, 6, 7}) {
        CAPTURE(type);
        CHECK(AcpiSleepControl::decode(static_cast<uint8_t>(0x20 | (type << 2))) == R::Unsupported);
    }

    Exits exits;
    AcpiSleepControl port(exits);
    CHECK(rd(port, 0) == 0); // WAK_STS never set
    wr(port, 0, 0x80);
    wr(port, 0, 0x20 | (3 << 2)); // S3: not here, the guest runs on (one warning)
    wr(port, 0, 0x20 | (3 << 2));
    CHECK(exits.got.empty());
    wr(port, 0, 0x34);
    REQUIRE(exits.got.size() == 1);
    CHECK(exits.got[0].reason == ExitReason::PowerOff);
    CHECK(exits.got[0].detail == "the guest powered off (ACPI S5)");
    CHECK(to_exit_status(exits.got[0]) == 120);
}
