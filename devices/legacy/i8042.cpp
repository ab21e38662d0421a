#include "devices/legacy/i8042.hpp"

#include <algorithm>

namespace kiln {

namespace {
constexpr uint64_t kDataOffset = 0, kCommandOffset = 4;
constexpr uint8_t kStatusOutputFull = 0x01, kStatusSystem = 0x04, kStatusCommand = 0x08;
constexpr uint8_t kCmdReadCommandByte = 0x20, kCmdWriteCommandByte = 0x60,
                  kCmdSelfTest = 0xaa, kCmdWriteOutputPort = 0xd1, kCmdPulseReset = 0xfe;
} // namespace

void I8042::read(uint64_t offset, std::span<uint8_t> data) {
    std::fill(data.begin(), data.end(), 0xff);
    if (data.empty()) return;
    std::lock_guard lk(mu_);
    if (offset == kCommandOffset) {
        data[0] = static_cast<uint8_t>(kStatusSystem | (has_output_ ? kStatusOutputFull : 0) |
                                       (pending_command_ ? kStatusCommand : 0));
    } else if (offset == kDataOffset) {
        data[0] = has_output_ ? output_ : 0;
        has_output_ = false;
    }
}

void I8042::write(uint64_t offset, std::span<const uint8_t> data) {
    if (data.empty()) return;
    uint8_t v = data[0];
    bool reset = false;
    {
        std::lock_guard lk(mu_);
        if (offset == kCommandOffset) {
            switch (v) {
            case kCmdReadCommandByte: output_ = command_byte_; has_output_ = true; break;
            case kCmdWriteCommandByte:
            case kCmdWriteOutputPort: pending_command_ = v; break;
            case kCmdSelfTest: output_ = 0x55; has_output_ = true; break; // test passed
            case kCmdPulseReset: reset = true; break;
            default: break; // other commands have no effect without a keyboard
            }
        } else if (offset == kDataOffset) {
            if (pending_command_ == kCmdWriteCommandByte) command_byte_ = v;
            // Output port bit 0 low is the CPU reset line.
            if (pending_command_ == kCmdWriteOutputPort && !(v & 0x01)) reset = true;
            pending_command_ = 0;
        }
    }
    if (reset) exits_.request_exit({ExitReason::Reset, 0, "the guest reset the machine (i8042)"});
}

} // namespace kiln
