// MmioTransport: the virtio-mmio transport, version 2 (virtio 1.2, section 4.2.2), in
// front of one virtio Device.
//
// Register accesses arrive on vCPU threads (serialized here by a mutex). Queue
// notifications go to one eventfd per queue: the machine registers those as KVM
// ioeventfds on QueueNotify (datamatch = queue index), so a kick reaches the device's
// worker without a trip through userspace; a write that still arrives here (no
// ioeventfd, unit tests) signals the same eventfd. Interrupts go out through an
// IrqLine (an irqfd on the machine), edge-triggered, with InterruptStatus telling the
// driver why.
#pragma once

#include <functional>
#include <string>

#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

#include "devices/virtio/device.hpp"
#include "vmm/base/event_fd.hpp"
#include "vmm/bus/bus.hpp"
#include "vmm/bus/irq_line.hpp"

namespace kiln::virtio {

// Registers 0x000..0x0ff, device config from 0x100; the window is a whole page so that
// stray accesses anywhere in it reach this device (and read as zero).
inline constexpr uint64_t kMmioWindowSize = 0x1000;
inline constexpr uint32_t kMmioVendorId = 0x4e4c494b; // "KILN"

class MmioTransport final : public BusDevice, private Interrupt {
public:
    [[nodiscard]] static Result<std::unique_ptr<MmioTransport>> create(std::unique_ptr<Device> device,
                                                                       const GuestMemory& mem, IrqLine& irq);
    ~MmioTransport() override;

    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;

    // One eventfd per queue, for KVM_IOEVENTFD at base + VIRTIO_MMIO_QUEUE_NOTIFY.
    [[nodiscard]] int kick_fd(uint16_t queue) const { return queues_[queue].kick.get(); }
    [[nodiscard]] uint16_t num_queues() const { return static_cast<uint16_t>(queues_.size()); }
    [[nodiscard]] Device& device() const { return *device_; }
    [[nodiscard]] uint32_t status() const { return status_.load(std::memory_order_acquire); }
    // Told once each time the device enters DEVICE_NEEDS_RESET, with the reason ("virtio-
    // blk0: queue 0: ..."), from whichever thread found it. Set before the guest runs.
    void set_error_sink(std::function<void(const std::string&)> sink) { error_sink_ = std::move(sink); }

private:
    struct Queue {
        explicit Queue(EventFd k) : kick(std::move(k)) {}
        Virtqueue vq;
        EventFd kick;
        uint16_t num = 0;
        bool ready = false;
        uint64_t desc = 0, avail = 0, used = 0;
    };

    MmioTransport(std::unique_ptr<Device> device, const GuestMemory& mem, IrqLine& irq,
                  std::vector<Queue> queues);

    // Interrupt
    void used_buffers() override;
    void config_changed() override;
    void needs_reset(std::string_view why) override;

    uint32_t read_register(uint64_t offset);
    void write_register(uint64_t offset, uint32_t value);
    void write_status(uint32_t value);
    void set_queue_ready(Queue& q, bool ready);
    void reset_locked();
    [[nodiscard]] Queue* selected() { return queue_sel_ < queues_.size() ? &queues_[queue_sel_] : nullptr; }

    std::unique_ptr<Device> device_;
    const GuestMemory& mem_;
    IrqLine& irq_;
    std::mutex mu_; // register state below; the device's workers never take it
    std::vector<Queue> queues_;
    uint32_t device_features_sel_ = 0, driver_features_sel_ = 0, queue_sel_ = 0;
    uint64_t driver_features_ = 0;
    bool active_ = false;
    std::atomic<uint32_t> status_{0};
    std::atomic<uint32_t> interrupt_status_{0};
    std::atomic<uint32_t> config_generation_{0};
    std::function<void(const std::string&)> error_sink_;
};

} // namespace kiln::virtio
