// The contract between a virtio device model (virtio-blk, virtio-net, ...) and its
// transport (virtio-mmio today). The transport owns the register interface, feature
// negotiation, device status and the queues' configuration; the device owns what the
// queues carry and the threads that serve them.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "devices/virtio/virtqueue.hpp"
#include "vmm/base/result.hpp"
#include "vmm/memory/guest_memory.hpp"

namespace kiln::virtio {

// How a device signals the driver. Implemented by the transport; every call is
// thread-safe and cheap (an atomic and an eventfd write), so queue workers call it
// directly.
class Interrupt {
public:
    virtual ~Interrupt() = default;
    virtual void used_buffers() = 0;   // "used buffer notification"
    virtual void config_changed() = 0; // "configuration change notification"
    // The device met a queue it cannot serve (a broken ring): sets
    // DEVICE_NEEDS_RESET and tells the driver (virtio 1.2, 2.1.2). `why` is for the
    // VMM's error report (the control API's error event), not the guest.
    virtual void needs_reset(std::string_view why) = 0;
};

// A queue the driver made ready, handed to the device at DRIVER_OK.
struct QueueBinding {
    Virtqueue* queue = nullptr; // configured; used by one device thread only
    int kick_fd = -1;           // eventfd, readable when the driver notified the queue
};

class Device {
public:
    virtual ~Device() = default;
    [[nodiscard]] virtual std::string_view name() const = 0;       // for messages: "virtio-blk0"
    [[nodiscard]] virtual uint32_t device_id() const = 0;          // VIRTIO_ID_*
    [[nodiscard]] virtual uint64_t device_features() const = 0;    // offered, VERSION_1 included
    [[nodiscard]] virtual uint16_t num_queues() const = 0;
    // Device-specific configuration space (little-endian, any width and offset).
    virtual void read_config(uint64_t offset, std::span<uint8_t> data) const = 0;
    virtual void write_config(uint64_t offset, std::span<const uint8_t> data) = 0;
    // DRIVER_OK: serve `queues` (ready ones only; index i is queue i) until reset().
    [[nodiscard]] virtual Result<void> activate(const GuestMemory& mem, uint64_t features,
                                                std::span<const QueueBinding> queues, Interrupt& irq) = 0;
    // Driver reset or machine shutdown: stop serving and wait until no device thread
    // touches guest memory or the queues any more. Idempotent.
    virtual void reset() = 0;
};

} // namespace kiln::virtio
