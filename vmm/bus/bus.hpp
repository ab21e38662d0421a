// Bus: dispatches guest port-I/O or MMIO accesses to devices by address range.
//
// Ranges are kept sorted and may not overlap; the bus is built before the vCPUs start
// and is read-only afterwards, so vCPU threads dispatch without taking a lock (each
// device guards its own state).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "vmm/base/result.hpp"

namespace kiln {

// A device as the bus sees it: accesses at an offset from the start of its range.
class BusDevice {
public:
    virtual ~BusDevice() = default;
    virtual void read(uint64_t offset, std::span<uint8_t> data) = 0;
    virtual void write(uint64_t offset, std::span<const uint8_t> data) = 0;
};

class Bus {
public:
    struct Range {
        uint64_t base = 0;
        uint64_t size = 0;
        BusDevice* device = nullptr; // not owned: the DeviceManager owns devices
        std::string name;
        [[nodiscard]] uint64_t last() const { return base + size - 1; }
    };

    explicit Bus(std::string name) : name_(std::move(name)) {}

    // Registers [base, base+size); fails on an empty range, overflow or any overlap.
    [[nodiscard]] Result<void> insert(BusDevice& device, uint64_t base, uint64_t size, std::string name);

    // The range holding [addr, addr+len), or nullptr. An access that starts in one device
    // and runs past its end is not dispatched.
    [[nodiscard]] const Range* find(uint64_t addr, uint64_t len = 1) const;

    // Returns false when no device claims the access (the caller decides what an
    // unclaimed access means: reads of all-ones for ports, for example).
    bool read(uint64_t addr, std::span<uint8_t> data) const;
    bool write(uint64_t addr, std::span<const uint8_t> data) const;

    [[nodiscard]] const std::vector<Range>& ranges() const { return ranges_; }

private:
    std::string name_;
    std::vector<Range> ranges_; // sorted by base, disjoint
};

} // namespace kiln
