// VirtioNet: a virtio-net device (virtio 1.2, section 5.1) on a TAP interface, its queues
// served through io_uring.
//
// One worker thread per queue pair, each with its own io_uring ring and its own TAP
// queue fd (IFF_MULTI_QUEUE when there are several pairs). Pair 0's worker also serves
// the control queue (VIRTIO_NET_CTRL_MQ, which MQ requires).
//
// RX: the worker reads frames from the TAP into 32 preallocated bounce buffers (a
// frame's size is only known once read; one multishot read on Linux 6.7+, batches of
// single reads before), then copies each frame into as many guest buffers as it needs
// (MRG_RXBUF) and sets num_buffers. When the guest has posted too few buffers, frames
// wait in their bounce buffers; once all 32 hold one (or, with single reads, once the
// batch is in) nothing more is read, so further frames wait in the TAP's own queue,
// which the kernel bounds (txqueuelen) and drops from: the VMM neither spins nor
// queues without bound.
// TX: guest buffers go to the TAP as they are (writev from guest memory: the virtio-net
// header the guest wrote is the TAP's vnet header), one io_uring write per frame.
// Nothing is allocated per frame. A malformed chain is returned to the guest unsent and
// counted; a broken ring sets DEVICE_NEEDS_RESET.
#pragma once

#include <sched.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "devices/net/tap.hpp"
#include "devices/virtio/device.hpp"

namespace kiln::virtio {

class NetQueuePair;

// Per-device counters, updated by the workers (relaxed atomics) and read at any time.
struct NetCounters {
    std::atomic<uint64_t> rx_packets{0}, rx_bytes{0};
    std::atomic<uint64_t> rx_dropped{0}; // frames too large for the guest's buffers
    std::atomic<uint64_t> tx_packets{0}, tx_bytes{0};
    std::atomic<uint64_t> tx_errors{0}; // malformed chains, or frames the TAP refused
};

class VirtioNet final : public Device {
public:
    struct Options {
        std::string name = "virtio-net0";
        net::MacAddress mac;
        uint32_t mtu = 0; // offered as VIRTIO_NET_F_MTU; 0: the TAP's
        // Where the workers run (they start from a vCPU thread at DRIVER_OK and would
        // otherwise inherit its pinning).
        std::optional<cpu_set_t> worker_cpus;
        // Frames from the TAP through one multishot read where the kernel has it
        // (6.7+); false: single reads, the path of older kernels (kept testable).
        bool rx_multishot = true;
    };
    // One queue pair per TAP queue fd.
    [[nodiscard]] static Result<std::unique_ptr<VirtioNet>> create(net::Tap tap, Options options);
    ~VirtioNet() override;

    [[nodiscard]] std::string_view name() const override { return options_.name; }
    [[nodiscard]] uint32_t device_id() const override { return 1; } // VIRTIO_ID_NET
    [[nodiscard]] uint64_t device_features() const override { return features_; }
    [[nodiscard]] uint16_t num_queues() const override;
    void read_config(uint64_t offset, std::span<uint8_t> data) const override;
    void write_config(uint64_t offset, std::span<const uint8_t> data) override;
    [[nodiscard]] Result<void> activate(const GuestMemory& mem, uint64_t features,
                                        std::span<const QueueBinding> queues, Interrupt& irq) override;
    void reset() override;

    [[nodiscard]] const net::Tap& tap() const { return tap_; }
    [[nodiscard]] const NetCounters& counters() const { return counters_; }
    [[nodiscard]] const net::MacAddress& mac() const { return options_.mac; }
    [[nodiscard]] uint16_t pairs() const { return static_cast<uint16_t>(tap_.queues()); }

    // VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET from the control queue: how many pairs the driver
    // uses. Returns false for a number out of range (the driver gets VIRTIO_NET_ERR).
    bool set_active_pairs(uint16_t n);

private:
    VirtioNet(net::Tap tap, Options options);
    [[nodiscard]] Result<void> start_pairs(const GuestMemory& mem, uint64_t features,
                                           std::span<const QueueBinding> queues, Interrupt& irq);

    net::Tap tap_;
    Options options_;
    uint64_t features_ = 0;
    std::vector<uint8_t> config_; // struct virtio_net_config, little-endian
    NetCounters counters_;
    std::mutex pairs_mu_; // set_active_pairs vs activate/reset
    std::vector<std::unique_ptr<NetQueuePair>> workers_;
};

} // namespace kiln::virtio
