// Virtqueue: the device side of one split virtqueue (virtio 1.2, section 2.7) in guest
// memory.
//
// Everything in the rings is written by the guest and may change under us at any time,
// so every index, address and length is checked before use, each value is read once
// (into a local) and then trusted only as that copy, and descriptor chains are walked
// with a hop limit: a chain that loops or is longer than the queue is reported as
// broken, never followed forever. A Virtqueue is used by one thread at a time (the
// device's queue worker); configure() and reset() happen while that worker is stopped.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string_view>

#include "vmm/base/result.hpp"
#include "vmm/memory/guest_memory.hpp"

namespace kiln::virtio {

// Largest queue Kiln offers (QueueNumMax) and the longest chain it accepts, indirect
// tables included. 256 segments covers Linux's default seg_max (254 data segments plus
// a header and a status descriptor).
inline constexpr uint16_t kMaxQueueSize = 256;
inline constexpr uint32_t kMaxChainSegments = 258;

// One guest buffer of a chain, already checked to lie inside guest RAM.
struct Segment {
    uint8_t* host = nullptr;
    uint32_t len = 0;
    bool writable = false; // device-writable (VRING_DESC_F_WRITE)
};

// A descriptor chain taken off the available ring. Fixed capacity: popping allocates
// nothing. When `broken` is set the chain could not be walked to its end (bad address,
// loop, too long, bad indirect table); `segments` then holds what was valid before the
// fault, and the device must still return `head` to the driver (with an error status
// where its protocol has one) so the driver does not wait forever.
struct Chain {
    uint16_t head = 0;
    uint32_t count = 0;
    std::array<Segment, kMaxChainSegments> segments;
    const char* broken = nullptr; // why the walk stopped early, or nullptr
    // When broken by a bad buffer in an otherwise well-formed chain: the last byte of
    // its last descriptor if that is device-writable (the request's status byte).
    uint8_t* status = nullptr;
    [[nodiscard]] std::span<const Segment> view() const { return {segments.data(), count}; }
};

class Virtqueue {
public:
    struct Layout {
        uint16_t size = 0;
        uint64_t desc = 0, avail = 0, used = 0; // guest-physical addresses
    };

    // Checks the layout against guest memory (sizes, alignment, every ring inside RAM)
    // and caches host pointers to the rings. `event_idx` / `indirect`: the negotiated
    // VIRTIO_RING_F_EVENT_IDX / VIRTIO_RING_F_INDIRECT_DESC.
    [[nodiscard]] Result<void> configure(const GuestMemory& mem, Layout layout, bool event_idx, bool indirect);
    void reset();
    [[nodiscard]] bool configured() const { return desc_ != nullptr; }
    [[nodiscard]] uint16_t size() const { return size_; }

    enum class Pop { Empty, Chain, QueueBroken };
    // Takes the next available chain. QueueBroken means the ring itself is nonsense (an
    // available index that ran ahead by more than the queue size, or a head index out
    // of range): nothing can be returned to the driver, and the device should report
    // DEVICE_NEEDS_RESET. `why` says what was wrong.
    [[nodiscard]] Pop pop(Chain& out, const char** why = nullptr);

    // Gives back the last `n` chains popped and not yet used, so the next pop() takes
    // them again (walked and checked afresh). For a device that popped buffers to see
    // whether a packet fits and found it does not (virtio-net RX).
    void unpop(uint16_t n) { last_avail_ = static_cast<uint16_t>(last_avail_ - n); }

    // Puts a finished chain on the used ring (`written`: bytes the device wrote).
    void push_used(uint16_t head, uint32_t written);

    // The same, but the used index the driver sees moves only at the next publish_used()
    // or needs_interrupt(): a device finishing many buffers in a burst then moves it once
    // per burst, not once per buffer (the driver polls that cache line; each store to it
    // is a cache-line transfer between the CPUs).
    void push_used_deferred(uint16_t head, uint32_t written);
    void publish_used();

    // After one or more push_used(): whether the driver asked to be interrupted now
    // (VRING_AVAIL_F_NO_INTERRUPT, or used_event with EVENT_IDX). Resets the batch.
    [[nodiscard]] bool needs_interrupt();

    // While the worker watches the ring itself: asks the driver not to kick (avail_event
    // behind every index the driver can reach with EVENT_IDX, VRING_USED_F_NO_NOTIFY
    // without), so buffers it catches cost the driver no VM exit and the worker no
    // wake-up. Only a hint to the driver: the worker must still look.
    void suppress_kicks();
    // Before the worker sleeps: asks for a kick on the driver's next buffer (avail_event
    // with EVENT_IDX; clears VRING_USED_F_NO_NOTIFY without). Returns true if buffers
    // arrived meanwhile (the worker must not sleep then).
    [[nodiscard]] bool prepare_to_sleep();
    // For a device waiting for the driver to add buffers beyond the ones it has seen
    // (virtio-net RX: a frame needs more than what is there): publishes avail_event at
    // `seen` so the driver kicks once it goes past it, and returns true if it already
    // has. Unlike prepare_to_sleep(), buffers that were popped and given back (unpop)
    // do not count as new.
    [[nodiscard]] bool prepare_to_wait_beyond(uint16_t seen);
    [[nodiscard]] uint16_t avail_index() const { return configured() ? load_avail_idx() : 0; }
    // Chains the driver has made available and the device has not popped.
    [[nodiscard]] uint16_t pending() const {
        return configured() ? static_cast<uint16_t>(load_avail_idx() - last_avail_) : 0;
    }

    // Whether the driver has added buffers not yet popped (a cheap look, for polling).
    [[nodiscard]] bool has_available() const { return configured() && load_avail_idx() != last_avail_; }

private:
    [[nodiscard]] uint16_t load_avail_idx() const;
    bool walk(const GuestMemory& mem, uint16_t head, Chain& out);
    bool add_segment(Chain& out, uint64_t addr, uint32_t len, bool writable);

    const GuestMemory* mem_ = nullptr;
    uint16_t size_ = 0;
    bool event_idx_ = false, indirect_ = false;
    uint8_t* desc_ = nullptr;   // struct vring_desc[size]
    uint8_t* avail_ = nullptr;  // flags, idx, ring[size], used_event
    uint8_t* used_ = nullptr;   // flags, idx, {id, len}[size], avail_event
    uint16_t last_avail_ = 0;   // next available entry to take
    uint16_t used_idx_ = 0;     // our copy of used->idx
    uint16_t signalled_used_ = 0; // used idx at the last needs_interrupt()
};

} // namespace kiln::virtio
