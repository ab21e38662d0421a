// DebugExit: the port through which a guest reports its exit status (port 0x501, the
// iobase of QEMU's isa-debug-exit, so one guest image runs under both). Writing a value
// ends the VM; `kiln run` exits with the low 8 bits of the value written, of any width.
// (QEMU exits with (value << 1) | 1 instead; Kiln passes the status through unchanged,
// which is what a batch system wants from `kiln run`.)
#pragma once

#include "vmm/base/vm_exit.hpp"
#include "vmm/bus/bus.hpp"

namespace kiln {

class DebugExit final : public BusDevice {
public:
    explicit DebugExit(VmExitSink& exits) : exits_(exits) {}
    void read(uint64_t, std::span<uint8_t> data) override {
        for (auto& b : data) b = 0xff;
    }
    void write(uint64_t, std::span<const uint8_t> data) override {
        if (data.empty()) return;
        exits_.request_exit({ExitReason::GuestStatus, data[0],
                             fmt::format("the guest reported exit status {}", data[0])});
    }

private:
    VmExitSink& exits_;
};

} // namespace kiln
