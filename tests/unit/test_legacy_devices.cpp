#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "devices/legacy/debug_exit.hpp"
#include "devices/legacy/i8042.hpp"
#include "devices/legacy/serial.hpp"

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
