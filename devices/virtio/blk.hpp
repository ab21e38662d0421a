// VirtioBlk: a virtio-blk device (virtio 1.2, section 5.2) over a DiskImage, with its
// data path on io_uring.
//
// Each ready queue gets one worker thread ("blk0-q0", ...) with its own io_uring ring.
// The worker waits in one place, io_uring_submit_and_wait, for everything: I/O
// completions, the queue's kick eventfd (a poll request) and its stop eventfd. Requests
// use slots allocated when the queue starts (one per queue entry), so serving a request
// allocates nothing. The disk's files are registered with each ring.
//
// What a guest can get wrong, and what it gets back: a malformed chain (bad address,
// loop, no status byte) is returned with VIRTIO_BLK_S_IOERR where a status byte can be
// found, else with 0 bytes used; out-of-range sectors, writes to a read-only disk and
// host I/O errors (EIO, ENOSPC) are VIRTIO_BLK_S_IOERR; unknown request types are
// VIRTIO_BLK_S_UNSUPP. None of them stops the device or the VMM. A ring that is itself
// nonsense (see Virtqueue::pop) stops that queue and sets DEVICE_NEEDS_RESET.
#pragma once

#include <atomic>
#include <chrono>

#include <sched.h>

#include <optional>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "devices/block/disk_image.hpp"
#include "devices/virtio/device.hpp"
#include "vmm/base/event_fd.hpp"

namespace kiln::virtio {

class BlkQueueWorker;

// Per-disk counters of completed requests, updated by the queue workers (relaxed
// atomics) and read at any time (GET /vm/stats, --stats-json).
struct BlkCounters {
    std::atomic<uint64_t> read_requests{0}, read_bytes{0};
    std::atomic<uint64_t> write_requests{0}, write_bytes{0};
    std::atomic<uint64_t> flush_requests{0};
    std::atomic<uint64_t> discard_requests{0}; // discard and write-zeroes
    std::atomic<uint64_t> errors{0};           // completed with IOERR or UNSUPP, or malformed
};

class VirtioBlk final : public Device {
public:
    static constexpr std::chrono::microseconds kDefaultRingWatch{30};
    struct Options {
        std::string name = "virtio-blk0"; // also the worker threads' prefix
        std::string serial;               // VIRTIO_BLK_T_GET_ID, at most 20 bytes
        uint16_t queues = 1;
        // The CPUs the queue workers run on (the VM's I/O CPUs). Set explicitly because
        // the workers start at DRIVER_OK, from a vCPU thread, whose own pinning they
        // would otherwise inherit.
        std::optional<cpu_set_t> worker_cpus;
        // How long a worker watches the ring for the driver's next requests after it
        // delivers completions, before it sleeps and asks for a kick (0: one look). It
        // saves a kick and a wake-up per refill, but only with a CPU no vCPU needs: on a
        // CPU shared with the vCPU it takes the time the driver needs to refill (one
        // shared CPU, 4 KiB random reads: QD1 2.6k vs 3.4k IOPS, QD32 43k vs 57k).
        std::chrono::microseconds ring_watch = kDefaultRingWatch;
    };
    // The ring watch for a VM whose I/O threads may use `io_cpus` CPUs and which has
    // `vcpus` vCPUs: the default while a CPU is left over for the workers, else 0 (a
    // one-CPU batch slot).
    [[nodiscard]] static std::chrono::microseconds ring_watch_for(uint32_t io_cpus, uint32_t vcpus) {
        return io_cpus > vcpus ? kDefaultRingWatch : std::chrono::microseconds(0);
    }
    [[nodiscard]] static Result<std::unique_ptr<VirtioBlk>> create(std::unique_ptr<block::DiskImage> image,
                                                                   Options options);
    ~VirtioBlk() override;

    [[nodiscard]] std::string_view name() const override { return options_.name; }
    [[nodiscard]] uint32_t device_id() const override { return 2; } // VIRTIO_ID_BLOCK
    [[nodiscard]] uint64_t device_features() const override { return features_; }
    [[nodiscard]] uint16_t num_queues() const override { return options_.queues; }
    void read_config(uint64_t offset, std::span<uint8_t> data) const override;
    void write_config(uint64_t offset, std::span<const uint8_t> data) override;
    [[nodiscard]] Result<void> activate(const GuestMemory& mem, uint64_t features,
                                        std::span<const QueueBinding> queues, Interrupt& irq) override;
    void reset() override;

    [[nodiscard]] block::DiskImage& image() const { return *image_; }
    [[nodiscard]] const BlkCounters& counters() const { return counters_; }
    [[nodiscard]] const Options& options() const { return options_; }

private:
    VirtioBlk(std::unique_ptr<block::DiskImage> image, Options options);

    std::unique_ptr<block::DiskImage> image_;
    Options options_;
    uint64_t features_ = 0;
    std::vector<uint8_t> config_; // struct virtio_blk_config, little-endian
    std::vector<std::unique_ptr<BlkQueueWorker>> workers_;
    BlkCounters counters_;
};

} // namespace kiln::virtio
