// Serial8250: a 16550A UART as Linux's 8250 driver and the test guest drive it.
//
// Output goes to a ByteSink (the console); input bytes are queued by the host side
// (the event loop feeding stdin) and raise the RX interrupt. The FIFO is the 16550A's
// 16 bytes deep for receive; transmit is immediate, so THR is always empty.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <mutex>
#include <span>

#include "vmm/bus/bus.hpp"
#include "vmm/bus/irq_line.hpp"

namespace kiln {

class ByteSink {
public:
    virtual ~ByteSink() = default;
    virtual void put(std::span<const uint8_t> bytes) = 0;
};

class Serial8250 final : public BusDevice {
public:
    Serial8250(IrqLine& irq, ByteSink& out) : irq_(irq), out_(out) {}

    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;

    // Host side: queue received bytes. Returns how many were taken (the rest do not
    // fit in the receive buffer; the caller keeps them, nothing is dropped silently).
    size_t enqueue_input(std::span<const uint8_t> bytes);
    [[nodiscard]] size_t input_space() const;

    static constexpr size_t kRxBufferSize = 4096; // host-side buffer behind the FIFO

private:
    uint8_t read_reg(uint64_t reg);
    void write_reg(uint64_t reg, uint8_t v);
    void update_irq();           // recompute IIR and the line; lock held
    [[nodiscard]] bool dlab() const { return lcr_ & 0x80; }

    IrqLine& irq_;
    ByteSink& out_;
    mutable std::mutex mu_;
    std::deque<uint8_t> rx_;
    uint8_t ier_ = 0, iir_ = 0x01, fcr_ = 0, lcr_ = 0x03, mcr_ = 0x08, lsr_ = 0x60, msr_ = 0xb0,
            scr_ = 0, dll_ = 0x0c, dlm_ = 0;
    bool thr_interrupt_pending_ = false; // THRE interrupt, cleared by reading IIR or writing THR
    bool irq_asserted_ = false;
};

} // namespace kiln
