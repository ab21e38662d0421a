#include "devices/legacy/serial.hpp"

namespace kiln {

namespace {
// Register offsets (DLAB=0 unless noted).
constexpr uint64_t kData = 0, kIer = 1, kIir = 2 /* read */, kLcr = 3, kMcr = 4, kLsr = 5,
                   kMsr = 6, kScr = 7;
constexpr uint8_t kIerRxData = 0x01, kIerThre = 0x02;
constexpr uint8_t kIirNone = 0x01, kIirThre = 0x02, kIirRxData = 0x04, kIirFifo = 0xc0;
constexpr uint8_t kLsrDataReady = 0x01, kLsrThre = 0x20, kLsrTemt = 0x40;
constexpr uint8_t kMcrLoop = 0x10, kMcrOut2 = 0x08;
} // namespace

void Serial8250::read(uint64_t offset, std::span<uint8_t> data) {
    // Byte registers; a wider access reads the first register and pads with ones.
    std::lock_guard lk(mu_);
    for (size_t i = 0; i < data.size(); ++i) data[i] = i == 0 ? read_reg(offset) : 0xff;
}

void Serial8250::write(uint64_t offset, std::span<const uint8_t> data) {
    if (data.empty()) return;
    uint8_t out = 0;
    bool emit = false;
    {
        std::lock_guard lk(mu_);
        if (offset == kData && !dlab()) {
            if (mcr_ & kMcrLoop) {
                // Loopback: what is sent comes back as received (the 8250 driver's probe).
                if (rx_.size() < kRxBufferSize) rx_.push_back(data[0]);
            } else {
                out = data[0];
                emit = true;
            }
            thr_interrupt_pending_ = true; // transmitted at once: THR empty again
            update_irq();
        } else {
            write_reg(offset, data[0]);
        }
    }
    // Outside the lock: the sink may block on a slow terminal or file.
    if (emit) out_.put({&out, 1});
}

uint8_t Serial8250::read_reg(uint64_t reg) {
    switch (reg) {
    case kData:
        if (dlab()) return dll_;
        if (rx_.empty()) return 0;
        {
            uint8_t b = rx_.front();
            rx_.pop_front();
            update_irq();
            return b;
        }
    case kIer: return dlab() ? dlm_ : ier_;
    case kIir: {
        uint8_t v = iir_ | ((fcr_ & 0x01) ? kIirFifo : 0);
        // Reading IIR while it reports THRE clears that source (8250 semantics).
        if ((iir_ & 0x0f) == kIirThre) {
            thr_interrupt_pending_ = false;
            update_irq();
        }
        return v;
    }
    case kLcr: return lcr_;
    case kMcr: return mcr_;
    case kLsr: return static_cast<uint8_t>(lsr_ | kLsrThre | kLsrTemt | (rx_.empty() ? 0 : kLsrDataReady));
    case kMsr:
        if (mcr_ & kMcrLoop) {
            // Loopback wires MCR outputs to MSR inputs: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD.
            return static_cast<uint8_t>(((mcr_ & 0x01) << 5) | ((mcr_ & 0x02) << 3) |
                                        ((mcr_ & 0x04) << 4) | ((mcr_ & 0x08) << 4));
        }
        return msr_;
    case kScr: return scr_;
    default: return 0xff;
    }
}

void Serial8250::write_reg(uint64_t reg, uint8_t v) {
    switch (reg) {
    case kData: dll_ = v; break; // DLAB set (DLAB clear is handled by write())
    case kIer:
        if (dlab()) {
            dlm_ = v;
        } else {
            uint8_t old = ier_;
            ier_ = v & 0x0f;
            // Enabling THRE interrupts with THR empty raises one at once.
            if (!(old & kIerThre) && (ier_ & kIerThre)) thr_interrupt_pending_ = true;
            update_irq();
        }
        break;
    case kIir: // FCR on write
        fcr_ = v;
        if (v & 0x02) rx_.clear(); // clear receive FIFO
        update_irq();
        break;
    case kLcr: lcr_ = v; break;
    case kMcr:
        mcr_ = v & 0x1f;
        update_irq();
        break;
    case kLsr: break; // read-only on real hardware; writes ignored
    case kMsr: break;
    case kScr: scr_ = v; break;
    default: break;
    }
}

void Serial8250::update_irq() {
    uint8_t iir = kIirNone;
    if ((ier_ & kIerRxData) && !rx_.empty())
        iir = kIirRxData;
    else if ((ier_ & kIerThre) && thr_interrupt_pending_)
        iir = kIirThre;
    iir_ = iir;
    // OUT2 gates the interrupt line to the PIC on PC hardware; Linux sets it.
    bool assert_line = iir != kIirNone && (mcr_ & kMcrOut2);
    if (assert_line != irq_asserted_) {
        irq_asserted_ = assert_line;
        irq_.set_level(assert_line);
    }
}

size_t Serial8250::enqueue_input(std::span<const uint8_t> bytes) {
    std::lock_guard lk(mu_);
    size_t n = 0;
    while (n < bytes.size() && rx_.size() < kRxBufferSize) rx_.push_back(bytes[n++]);
    if (n) update_irq();
    return n;
}

size_t Serial8250::input_space() const {
    std::lock_guard lk(mu_);
    return kRxBufferSize - rx_.size();
}

} // namespace kiln
