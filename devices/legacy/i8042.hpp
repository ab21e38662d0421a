// I8042: just enough of the PC keyboard controller for a guest to reset the machine
// (command 0xfe on port 0x64, Linux's reboot=k) and for drivers probing it to find
// no keyboard. Registered at ports 0x60 (data) and 0x64 (status/command).
#pragma once

#include <mutex>

#include "vmm/base/vm_exit.hpp"
#include "vmm/bus/bus.hpp"

namespace kiln {

class I8042 final : public BusDevice {
public:
    explicit I8042(VmExitSink& exits) : exits_(exits) {}
    // Offsets: 0 = data port 0x60, 4 = status/command port 0x64 (one range 0x60..0x64).
    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;

private:
    VmExitSink& exits_;
    std::mutex mu_;
    uint8_t command_byte_ = 0x61; // translate, system flag, keyboard interrupt enabled
    uint8_t pending_command_ = 0; // a command waiting for its data byte
    bool has_output_ = false;
    uint8_t output_ = 0;
};

} // namespace kiln
