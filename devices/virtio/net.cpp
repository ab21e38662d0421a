#include "devices/virtio/net.hpp"

#include <cstddef>
#include <cstring>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <pthread.h>
#include <sys/uio.h>
#include <unistd.h>

#include <array>
#include <thread>

#include <liburing.h>
#include <spdlog/spdlog.h>

#include "devices/virtio/net_spec.hpp"
#include "devices/virtio/spec.hpp"
#include "devices/virtio/worker_thread.hpp"
#include "vmm/base/event_fd.hpp"
#include "vmm/base/mmap_region.hpp"

namespace kiln::virtio {

namespace {

// The virtio-net header of virtio 1.x (struct virtio_net_hdr_v1: num_buffers included,
// with or without MRG_RXBUF). The TAP is told the same size, so a frame's header passes
// between guest and TAP unchanged.
using netspec::kHdrSize;
constexpr size_t kNumBuffersOffset = netspec::kHdrNumBuffers;

// RX bounce buffers: reads in flight per queue pair. Each holds one frame with its
// header: 64 KiB when the guest takes GSO frames, else the MTU's worth (rx_buffer_size).
constexpr uint32_t kRxReads = 32;
constexpr uint32_t kMaxFrame = 65536 + kHdrSize + 64;
// TX: descriptors of one frame (Linux sends a header and up to 18 fragments).
constexpr uint32_t kMaxTxSegments = 64;
// Guest buffers one RX frame may take (MRG_RXBUF: a 64 KiB frame in 1.5 KiB buffers
// needs 44).
constexpr uint32_t kMaxRxSegments = 256;

constexpr uint64_t kTagPoll = 1ULL << 63;
constexpr uint64_t kTagRxKick = kTagPoll | 1, kTagTxKick = kTagPoll | 2, kTagCtrlKick = kTagPoll | 3,
                   kTagStop = kTagPoll | 4, kTagWake = kTagPoll | 5, kTagCancel = kTagPoll | 6,
                   kTagTapReadable = kTagPoll | 7, kTagReadMultishot = kTagPoll | 8;
// IORING_OP_READ_MULTISHOT (Linux 6.7), newer than Debian 12's headers: one armed read
// that takes a buffer from a provided-buffer ring for every frame, until the ring is empty.
constexpr uint8_t kOpReadMultishot = 49;
constexpr uint16_t kRxBufferGroup = 0;
constexpr uint64_t kTagRead = 1ULL << 62;  // | bounce buffer index
constexpr uint64_t kTagWrite = 1ULL << 61; // | TX slot index

template <class T>
void put_le(std::vector<uint8_t>& buf, size_t off, T v) {
    std::memcpy(buf.data() + off, &v, sizeof v); // x86-64 is little-endian, like virtio 1.x
}

// Copies `n` bytes from the segments of a chain into `out` (device-readable parts only).
size_t gather(std::span<const Segment> segs, uint8_t* out, size_t n) {
    size_t done = 0;
    for (const auto& s : segs) {
        if (done == n) break;
        const size_t take = std::min<size_t>(s.len, n - done);
        std::memcpy(out + done, s.host, take);
        done += take;
    }
    return done;
}

} // namespace

// One RX/TX queue pair (and, for pair 0, the control queue): its own thread, io_uring
// ring and TAP queue fd. The only thread that touches its queues.
class NetQueuePair {
public:
    struct Queues {
        Virtqueue* rx = nullptr;
        int rx_kick = -1;
        Virtqueue* tx = nullptr;
        int tx_kick = -1;
        Virtqueue* ctrl = nullptr; // pair 0 only, when the driver negotiated CTRL_VQ
        int ctrl_kick = -1;
    };

    // `rx_buffer`: the largest frame the TAP will hand over, header included.
    NetQueuePair(VirtioNet& dev, uint16_t index, int tap_fd, Queues q, bool mrg_rxbuf, uint32_t rx_buffer,
                 Interrupt& irq, NetCounters& counters, std::optional<cpu_set_t> cpus, bool try_multishot)
        : dev_(dev), index_(index), tap_fd_(tap_fd), q_(q), mrg_rxbuf_(mrg_rxbuf), rx_buffer_size_(rx_buffer),
          irq_(irq), counters_(counters), cpus_(cpus), try_multishot_(try_multishot) {}
    ~NetQueuePair() {
        stop();
        if (ring_ready_) io_uring_queue_exit(&ring_);
    }
    NetQueuePair(const NetQueuePair&) = delete;
    NetQueuePair& operator=(const NetQueuePair&) = delete;

    [[nodiscard]] Result<void> start(std::string thread_name, bool enabled) {
        enabled_.store(enabled, std::memory_order_relaxed);
        stop_fd_.emplace(KILN_TRY(EventFd::create()));
        wake_fd_.emplace(KILN_TRY(EventFd::create()));
        // Preallocated once: nothing on the packet path allocates.
        rx_buffers_ = std::make_unique<RxBuffer[]>(kRxReads);
        for (uint32_t i = 0; i < kRxReads; ++i) rx_buffers_[i].data = std::make_unique<uint8_t[]>(rx_buffer_size_);
        const uint32_t tx_slots = q_.tx ? q_.tx->size() : 0;
        tx_slots_ = std::make_unique<TxSlot[]>(std::max<uint32_t>(tx_slots, 1));
        for (uint32_t i = tx_slots; i-- > 0;) tx_free_.push_back(i);
        return start_worker(thread_, std::move(thread_name), cpus_, [this] { return init_ring(); }, [this] { run(); });
    }

    void stop() {
        if (!thread_.joinable()) return;
        stop_fd_->signal();
        thread_.join();
    }

    // Whether this pair reads from its TAP queue (the driver's VQ_PAIRS_SET).
    void set_enabled(bool on) {
        enabled_.store(on, std::memory_order_release);
        if (wake_fd_) wake_fd_->signal();
    }

private:
    struct RxBuffer {
        std::unique_ptr<uint8_t[]> data;
        uint32_t len = 0;
        bool in_flight = false; // a read into it is queued
        bool held = false;      // it holds a frame not yet given to the guest
    };
    struct TxSlot {
        uint16_t head = 0;
        uint32_t bytes = 0;
        std::array<iovec, kMaxTxSegments> iov;
    };
    struct RxTarget { // one guest buffer chain taken for the frame being delivered
        uint16_t head = 0;
        uint32_t first_seg = 0, segs = 0, capacity = 0;
    };

    [[nodiscard]] Result<void> init_ring() {
        const unsigned entries = 2 * (kRxReads + (q_.tx ? q_.tx->size() : 1u)) + 8;
        int rc = io_uring_queue_init(entries, &ring_, IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN);
        if (rc == -EINVAL) rc = io_uring_queue_init(entries, &ring_, 0);
        if (rc < 0) return fail_errno("io_uring_queue_init", -rc);
        ring_ready_ = true;
        if (q_.rx && try_multishot_) setup_multishot_reads();
        return {};
    }

    io_uring_sqe* next_sqe() {
        for (;;) {
            if (io_uring_sqe* sqe = io_uring_get_sqe(&ring_)) return sqe;
            io_uring_submit(&ring_);
        }
    }

    void arm_poll(int fd, uint64_t tag) {
        io_uring_sqe* sqe = next_sqe();
        io_uring_prep_poll_multishot(sqe, fd, POLLIN);
        io_uring_sqe_set_data64(sqe, tag);
    }

    void run();
    void reap(); // handles every completion there is, without waiting
    void on_cqe(const io_uring_cqe& cqe);
    void rearm_kick(const io_uring_cqe& cqe, int fd, uint64_t tag);
    void issue_reads();
    // The TAP's readability poll, armed once: single reads wait on it, and the
    // multishot read after an error until the TAP is readable again.
    void arm_tap_poll() {
        if (tap_poll_armed_) return;
        arm_poll(tap_fd_, kTagTapReadable);
        tap_poll_armed_ = true;
    }
    void setup_multishot_reads();
    void give_back(uint32_t index);
    void on_multishot_read(const io_uring_cqe& cqe);
    void take_frame(uint32_t index, int len);
    void tap_read_failed(int res);
    void deliver_rx();
    [[nodiscard]] bool deliver_frame(const RxBuffer& b);
    void serve_tx();
    void finish_tx(uint32_t slot, int result);
    void serve_ctrl();
    [[nodiscard]] bool work_ready();
    [[nodiscard]] bool work_waiting() const;
    void queue_broken(const char* which, const char* why);
    void interrupt_if_needed();

    VirtioNet& dev_;
    uint16_t index_;
    int tap_fd_;
    Queues q_;
    bool mrg_rxbuf_;
    uint32_t rx_buffer_size_;
    Interrupt& irq_;
    NetCounters& counters_;
    std::optional<cpu_set_t> cpus_;
    bool try_multishot_;
    std::atomic<bool> enabled_{true};
    std::optional<EventFd> stop_fd_, wake_fd_;
    io_uring ring_{};
    bool ring_ready_ = false;
    bool stopping_ = false, broken_ = false;
    std::unique_ptr<RxBuffer[]> rx_buffers_;
    // The provided-buffer ring for the multishot read (rx_multishot_): the bounce
    // buffers the kernel may fill, handed back as frames are delivered or dropped.
    MmapRegion buf_ring_;
    bool rx_multishot_ = false;     // reads go through one multishot read
    bool rx_multishot_armed_ = false;
    bool rx_multishot_cancelled_ = false;
    bool rx_seen_multishot_ = false; // a frame came through it: the kernel has the op
    uint32_t buf_ring_count_ = 0;   // bounce buffers in the ring, free for the kernel
    // Bounce buffers holding frames, in arrival order: a fixed ring (no allocation).
    std::array<uint32_t, kRxReads> rx_ready_{};
    uint32_t rx_ready_head_ = 0, rx_ready_count_ = 0;
    uint32_t reads_in_flight_ = 0;
    bool rx_starved_ = false;  // a frame waits for guest buffers
    bool tap_readable_ = true; // the TAP may have frames (until a read says EAGAIN)
    bool tap_poll_armed_ = false; // the multishot poll on the TAP is in place
    struct {
        uint64_t rx_packets = 0, rx_bytes = 0, tx_packets = 0, tx_bytes = 0;
    } local_; // this round's counts, added to counters_ in interrupt_if_needed()
    std::unique_ptr<TxSlot[]> tx_slots_;
    std::vector<uint32_t> tx_free_;
    uint32_t tx_in_flight_ = 0;
    bool delivered_ = false;
    std::array<Segment, kMaxRxSegments> rx_segs_{};
    std::array<RxTarget, kMaxRxSegments> rx_targets_{};
    std::array<uint16_t, kMaxQueueSize> rx_unusable_{};
    uint16_t rx_wait_idx_ = 0; // RX starved: the avail index it saw; waits for more
    std::thread thread_;
    Chain chain_; // scratch for pop(): 4 KiB, so not on the stack
};

void NetQueuePair::run() {
    arm_poll(stop_fd_->get(), kTagStop);
    arm_poll(wake_fd_->get(), kTagWake);
    if (q_.rx) arm_poll(q_.rx_kick, kTagRxKick);
    if (q_.tx) arm_poll(q_.tx_kick, kTagTxKick);
    if (q_.ctrl) arm_poll(q_.ctrl_kick, kTagCtrlKick);
    // The multishot read waits for frames itself; the TAP's poll serves single reads.
    if (q_.rx && !rx_multishot_) arm_tap_poll();
    for (;;) {
        reap();
        if (!stopping_ && !broken_) {
            if (q_.ctrl) serve_ctrl();
            serve_tx();
            deliver_rx();
            issue_reads();
        }
        interrupt_if_needed();
        if (stopping_ && reads_in_flight_ == 0 && tx_in_flight_ == 0) break;
        const bool serving = !stopping_ && !broken_;
        if (serving && delivered_) {
            // After giving buffers back, one look for work that is already there (the
            // guest's next frame to send, more RX buffers, a frame read) before
            // publishing avail_event: publishing it makes the guest kick (a VM exit)
            // for work the worker would have found anyway (TX 1472 B: 0.98M pps
            // without the look against 1.04M with the old 30 us spin, medians of 5;
            // with the look 1.07M, as the spin in the same rounds).
            // One look, not a spin: a worker spinning here takes the CPU the guest's
            // vCPU and the sender need on a busy host. 1472-byte datagrams offered at
            // 200,000 pps on two CPUs: with a 30 us spin the guest lost 9.9 % of them
            // and kiln used 5.8 CPU s per run; with one look 0.2 % and 5.0 s.
            delivered_ = false;
            io_uring_submit(&ring_);
            if (work_ready()) continue;
        }
        // Publish avail_event on the rings whose kicks we wait for; a buffer that
        // slipped in meanwhile is served first.
        if (serving) {
            // TX only counts when a slot is free: with every slot in flight the worker
            // waits for a write's completion, not for the driver.
            bool more = q_.tx && !tx_free_.empty() && q_.tx->prepare_to_sleep();
            if (q_.rx && rx_starved_) more = q_.rx->prepare_to_wait_beyond(rx_wait_idx_) || more;
            if (more) {
                // Work is there, but completions (the stop request among them) are only
                // posted when this thread enters the kernel (DEFER_TASKRUN).
                io_uring_submit_and_get_events(&ring_);
                continue;
            }
        }
        int rc = io_uring_submit_and_wait(&ring_, 1);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
            spdlog::error("virtio-net queue pair {}: io_uring: {}", index_, std::strerror(-rc));
            break;
        }
    }
}

void NetQueuePair::reap() {
    unsigned head, seen = 0;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(&ring_, head, cqe) {
        ++seen;
        on_cqe(*cqe);
    }
    io_uring_cq_advance(&ring_, seen);
}

void NetQueuePair::rearm_kick(const io_uring_cqe& cqe, int fd, uint64_t tag) {
    uint64_t n;
    [[maybe_unused]] auto r = ::read(fd, &n, sizeof n); // non-blocking eventfd
    if (!(cqe.flags & IORING_CQE_F_MORE)) arm_poll(fd, tag);
}

void NetQueuePair::on_cqe(const io_uring_cqe& cqe) {
    const uint64_t tag = io_uring_cqe_get_data64(&cqe);
    switch (tag) {
    case kTagStop:
        stopping_ = true;
        if (reads_in_flight_ > 0) {
            // Reads wait for frames that may never come: cancel them.
            io_uring_sqe* sqe = next_sqe();
            io_uring_prep_cancel_fd(sqe, tap_fd_, IORING_ASYNC_CANCEL_ALL);
            io_uring_sqe_set_data64(sqe, kTagCancel);
        }
        return;
    case kTagCancel: return;
    case kTagWake: rearm_kick(cqe, wake_fd_->get(), kTagWake); return;
    case kTagRxKick: rearm_kick(cqe, q_.rx_kick, kTagRxKick); return;
    case kTagTxKick: rearm_kick(cqe, q_.tx_kick, kTagTxKick); return;
    case kTagCtrlKick: rearm_kick(cqe, q_.ctrl_kick, kTagCtrlKick); return;
    case kTagTapReadable:
        // POLLERR/POLLHUP: the interface is gone; reading would only fail again.
        tap_readable_ = cqe.res > 0 && !(cqe.res & (POLLERR | POLLHUP | POLLNVAL));
        if (!(cqe.flags & IORING_CQE_F_MORE)) {
            tap_poll_armed_ = false;
            arm_tap_poll();
        }
        return;
    case kTagReadMultishot: on_multishot_read(cqe); return;
    default: break;
    }
    if (tag & kTagRead) {
        const auto i = static_cast<uint32_t>(tag & ~kTagRead);
        rx_buffers_[i].in_flight = false;
        --reads_in_flight_;
        if (cqe.res == -EAGAIN) {
            tap_readable_ = false; // drained: the next frame comes with a poll completion
        } else if (cqe.res >= 0) {
            take_frame(i, cqe.res);
        } else if (cqe.res != -EINTR && cqe.res != -ECANCELED) {
            tap_read_failed(cqe.res);
        }
    } else if (tag & kTagWrite) {
        finish_tx(static_cast<uint32_t>(tag & ~kTagWrite), cqe.res);
    }
}

// Frames come in through one multishot read (Linux 6.7+) when the kernel has it: one
// armed request takes a bounce buffer from a provided-buffer ring for each frame, with
// no request per frame and none parked on the TAP's wait queue. Single reads, below,
// on older kernels. A ring that cannot be registered leaves the single reads.
void NetQueuePair::setup_multishot_reads() {
    auto mem = MmapRegion::anonymous(kRxReads * sizeof(io_uring_buf));
    if (!mem) return;
    buf_ring_ = std::move(*mem);
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<uint64_t>(buf_ring_.data());
    reg.ring_entries = kRxReads;
    reg.bgid = kRxBufferGroup;
    if (io_uring_register_buf_ring(&ring_, &reg, 0) != 0) return;
    io_uring_buf_ring_init(reinterpret_cast<io_uring_buf_ring*>(buf_ring_.data()));
    rx_multishot_ = true;
    for (uint32_t i = 0; i < kRxReads; ++i) give_back(i);
}

// A bounce buffer is free again: for the multishot read, back into the kernel's ring
// (published at once: the read may be waiting for it).
void NetQueuePair::give_back(uint32_t index) {
    rx_buffers_[index].held = false;
    if (!rx_multishot_) return;
    auto* br = reinterpret_cast<io_uring_buf_ring*>(buf_ring_.data());
    io_uring_buf_ring_add(br, rx_buffers_[index].data.get(), rx_buffer_size_, static_cast<uint16_t>(index),
                          io_uring_buf_ring_mask(kRxReads), 0);
    io_uring_buf_ring_advance(br, 1);
    ++buf_ring_count_;
}

void NetQueuePair::on_multishot_read(const io_uring_cqe& cqe) {
    if (!(cqe.flags & IORING_CQE_F_MORE)) {
        rx_multishot_armed_ = false;
        --reads_in_flight_;
    }
    if (cqe.flags & IORING_CQE_F_BUFFER) {
        const uint32_t i = cqe.flags >> IORING_CQE_BUFFER_SHIFT;
        if (i >= kRxReads) return; // not ours: cannot happen with one group of kRxReads
        --buf_ring_count_;
        rx_seen_multishot_ = true;
        take_frame(i, cqe.res);
        return;
    }
    if (cqe.res == -EINVAL && !rx_seen_multishot_) {
        // A kernel without IORING_OP_READ_MULTISHOT: single reads from now on.
        spdlog::debug("virtio-net queue pair {}: no multishot reads here, single reads", index_);
        (void)io_uring_unregister_buf_ring(&ring_, kRxBufferGroup);
        rx_multishot_ = false;
        arm_tap_poll();
        return;
    }
    if (cqe.res < 0 && cqe.res != -ENOBUFS && cqe.res != -ECANCELED && cqe.res != -EINTR && cqe.res != -EAGAIN)
        tap_read_failed(cqe.res);
    // -ENOBUFS: every bounce buffer holds a frame; issue_reads() arms the read again
    // once enough are back.
}

// A read (single or multishot) put `len` bytes into bounce buffer `i`: a frame to hand
// to the guest, or one dropped and the buffer free again.
void NetQueuePair::take_frame(uint32_t i, int len) {
    if (len >= static_cast<int>(rx_buffer_size_)) {
        // Filled to the brim: a frame larger than the MTU the guest was told (the rest
        // was cut off). Dropped, not delivered half.
        counters_.rx_dropped.fetch_add(1, std::memory_order_relaxed);
        give_back(i);
    } else if (len > static_cast<int>(kHdrSize)) {
        RxBuffer& b = rx_buffers_[i];
        b.len = static_cast<uint32_t>(len);
        b.held = true;
        rx_ready_[(rx_ready_head_ + rx_ready_count_++) % kRxReads] = i;
    } else {
        give_back(i); // a runt: not even a virtio-net header
    }
}

// The TAP went away or this queue was detached: no more reads until the poll says it
// is readable again (a detached queue never is).
void NetQueuePair::tap_read_failed(int res) {
    tap_readable_ = false;
    arm_tap_poll();
    spdlog::debug("virtio-net queue pair {}: reading the TAP: {}", index_, std::strerror(-res));
}

// Single reads (kernels without IORING_OP_READ_MULTISHOT): while the TAP has frames,
// reads them into every free bounce buffer, one submission for all. A read that finds
// the TAP empty does not fail with EAGAIN although the fd is non-blocking: io_uring
// parks it on the TAP's poll queue and it completes with a later frame (so stopping
// cancels them). Tried: RWF_NOWAIT, which makes such a read fail at once and leaves the
// waiting to the TAP's multishot poll alone; with a sender flat out on two CPUs the
// guest then took fewer frames (75k against 87k pps, medians of 4), so reads stay
// parked. Nothing is read while a frame waits for guest buffers: the TAP's own
// (bounded) queue holds the rest.
void NetQueuePair::issue_reads() {
    if (rx_multishot_) {
        const bool enabled = enabled_.load(std::memory_order_acquire);
        if (rx_multishot_armed_) {
            // A pair the driver stopped using reads nothing more (its frames would only
            // be dropped): cancel the read; it is armed again once the pair is enabled.
            if (!enabled && !rx_multishot_cancelled_ && !stopping_) {
                io_uring_sqe* sqe = next_sqe();
                io_uring_prep_cancel64(sqe, kTagReadMultishot, 0);
                io_uring_sqe_set_data64(sqe, kTagCancel);
                rx_multishot_cancelled_ = true;
            }
            return;
        }
        // Armed again only with half the buffers back: a guest short of RX buffers
        // holds frames (and so bounce buffers), and re-arming for every buffer it
        // frees would take one frame per submission.
        if (!q_.rx || stopping_ || !tap_readable_ || !enabled || buf_ring_count_ < kRxReads / 2) return;
        io_uring_sqe* sqe = next_sqe();
        io_uring_prep_rw(kOpReadMultishot, sqe, tap_fd_, nullptr, 0, 0);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = kRxBufferGroup;
        io_uring_sqe_set_data64(sqe, kTagReadMultishot);
        rx_multishot_armed_ = true;
        rx_multishot_cancelled_ = false;
        ++reads_in_flight_;
        return;
    }
    if (!q_.rx || stopping_ || rx_starved_ || !tap_readable_ || reads_in_flight_ > 0 ||
        !enabled_.load(std::memory_order_acquire))
        return;
    for (uint32_t i = 0; i < kRxReads; ++i) {
        RxBuffer& b = rx_buffers_[i];
        if (b.in_flight || b.held) continue;
        io_uring_sqe* sqe = next_sqe();
        io_uring_prep_read(sqe, tap_fd_, b.data.get(), rx_buffer_size_, 0);
        io_uring_sqe_set_data64(sqe, kTagRead | i);
        b.in_flight = true;
        ++reads_in_flight_;
    }
}

void NetQueuePair::deliver_rx() {
    if (!enabled_.load(std::memory_order_acquire)) {
        // The driver no longer uses this pair (VQ_PAIRS_SET): held frames are dropped,
        // not delivered to queues it stopped watching.
        for (; rx_ready_count_ != 0; --rx_ready_count_, rx_ready_head_ = (rx_ready_head_ + 1) % kRxReads) {
            give_back(rx_ready_[rx_ready_head_]);
            counters_.rx_dropped.fetch_add(1, std::memory_order_relaxed);
        }
        rx_starved_ = false;
        return;
    }
    while (rx_ready_count_ != 0) {
        RxBuffer& b = rx_buffers_[rx_ready_[rx_ready_head_]];
        if (!deliver_frame(b)) {
            rx_starved_ = true; // waits for the guest's next RX kick
            return;
        }
        give_back(rx_ready_[rx_ready_head_]);
        rx_ready_head_ = (rx_ready_head_ + 1) % kRxReads;
        --rx_ready_count_;
    }
    rx_starved_ = false;
}

// Copies one frame into the guest's RX buffers. False when the guest has not posted
// enough buffers yet: nothing is consumed then, and the worker waits until the guest
// posts beyond what it has seen (rx_wait_idx_). A frame that can never fit (larger than
// one buffer without MRG_RXBUF, or than the whole ring) is dropped and counted.
// Unusable chains met on the way (broken, read-only, too small) are returned empty,
// but only once the frame is delivered or dropped: until then they may be given back
// with the rest (unpop counts every chain popped, in order).
bool NetQueuePair::deliver_frame(const RxBuffer& b) {
    uint32_t targets = 0, segs = 0, capacity = 0, unusable = 0;
    uint16_t popped = 0;
    const auto drop = [&] {
        q_.rx->unpop(popped);
        counters_.rx_dropped.fetch_add(1, std::memory_order_relaxed);
        return true;
    };
    while (capacity < b.len) {
        if (targets == kMaxRxSegments || (!mrg_rxbuf_ && targets == 1) || popped == q_.rx->size())
            return drop(); // buffers too small for this frame, however many are posted
        const char* why = nullptr;
        switch (q_.rx->pop(chain_, &why)) {
        case Virtqueue::Pop::Empty:
            q_.rx->unpop(popped);
            rx_wait_idx_ = q_.rx->avail_index();
            // Everything the ring can hold is posted and still too little: never fits.
            if (q_.rx->pending() == q_.rx->size()) return drop();
            return false;
        case Virtqueue::Pop::QueueBroken:
            q_.rx->unpop(popped);
            queue_broken("RX", why);
            return true;
        case Virtqueue::Pop::Chain: break;
        }
        ++popped;
        RxTarget t{chain_.head, segs, 0, 0};
        bool usable = !chain_.broken;
        for (const Segment& s : chain_.view()) {
            if (!s.writable) usable = false;
            if (!usable) break;
            if (segs + t.segs == kMaxRxSegments) return drop(); // more pieces than Kiln takes
            rx_segs_[segs + t.segs++] = s;
            t.capacity += s.len;
        }
        if (!usable || t.capacity < kHdrSize) {
            spdlog::debug("virtio-net: RX buffer {} is unusable ({})", t.head,
                          chain_.broken ? chain_.broken : "too small or not device-writable");
            rx_unusable_[unusable++] = t.head;
            continue;
        }
        segs += t.segs;
        rx_targets_[targets++] = t;
        capacity += t.capacity;
    }
    // Committed: the unusable chains go back empty, then the frame is copied - the
    // header (num_buffers set) and the payload across the buffers, in order.
    for (uint32_t k = 0; k < unusable; ++k) q_.rx->push_used_deferred(rx_unusable_[k], 0);
    const uint8_t* src = b.data.get();
    uint32_t left = b.len;
    for (uint32_t k = 0; k < targets; ++k) {
        const RxTarget& t = rx_targets_[k];
        uint32_t written = 0;
        for (uint32_t j = 0; j < t.segs && left > 0; ++j) {
            const Segment& s = rx_segs_[t.first_seg + j];
            const uint32_t n = std::min(s.len, left);
            std::memcpy(s.host, src, n);
            src += n;
            left -= n;
            written += n;
        }
        q_.rx->push_used_deferred(t.head, written);
    }
    // num_buffers (header bytes 10-11): the chains this frame took, 1 without MRG_RXBUF.
    // The first chain holds the whole header (capacity >= 12), but not necessarily in
    // its first segment: written through the segments, never past one.
    const auto nb = static_cast<uint16_t>(targets);
    const uint8_t nb_bytes[2] = {static_cast<uint8_t>(nb), static_cast<uint8_t>(nb >> 8)};
    const RxTarget& first = rx_targets_[0];
    uint32_t at = 0;
    for (uint32_t j = 0; j < first.segs; ++j) {
        const Segment& s = rx_segs_[first.first_seg + j];
        for (uint32_t i = 0; i < 2; ++i) {
            const uint32_t off = kNumBuffersOffset + i;
            if (off >= at && off < at + s.len) s.host[off - at] = nb_bytes[i];
        }
        at += s.len;
        if (at >= kHdrSize) break;
    }
    delivered_ = true;
    ++local_.rx_packets;
    local_.rx_bytes += b.len - kHdrSize;
    return true;
}

void NetQueuePair::serve_tx() {
    if (!q_.tx) return;
    while (!tx_free_.empty()) {
        const char* why = nullptr;
        switch (q_.tx->pop(chain_, &why)) {
        case Virtqueue::Pop::Empty: return;
        case Virtqueue::Pop::QueueBroken: queue_broken("TX", why); return;
        case Virtqueue::Pop::Chain: break;
        }
        const char* bad = chain_.broken;
        uint64_t bytes = 0; // 64 guest lengths of up to 4 GiB each: no wrap-around
        if (!bad && chain_.count > kMaxTxSegments) bad = "more than 64 descriptors";
        for (uint32_t i = 0; !bad && i < chain_.count; ++i) {
            if (chain_.segments[i].writable) bad = "a device-writable descriptor in a TX chain";
            bytes += chain_.segments[i].len;
        }
        if (!bad && bytes <= kHdrSize) bad = "shorter than the virtio-net header";
        if (!bad && bytes > kMaxFrame) bad = "longer than 64 KiB";
        if (bad) {
            spdlog::debug("virtio-net: TX chain {} dropped: {}", chain_.head, bad);
            counters_.tx_errors.fetch_add(1, std::memory_order_relaxed);
            q_.tx->push_used_deferred(chain_.head, 0);
            delivered_ = true;
            continue;
        }
        const uint32_t slot = tx_free_.back();
        tx_free_.pop_back();
        TxSlot& s = tx_slots_[slot];
        s.head = chain_.head;
        s.bytes = static_cast<uint32_t>(bytes); // checked: at most kMaxFrame
        for (uint32_t i = 0; i < chain_.count; ++i) s.iov[i] = {chain_.segments[i].host, chain_.segments[i].len};
        io_uring_sqe* sqe = next_sqe();
        io_uring_prep_writev(sqe, tap_fd_, s.iov.data(), chain_.count, 0);
        io_uring_sqe_set_data64(sqe, kTagWrite | slot);
        ++tx_in_flight_;
    }
}

void NetQueuePair::finish_tx(uint32_t slot, int result) {
    TxSlot& s = tx_slots_[slot];
    --tx_in_flight_;
    if (result < 0) {
        // The TAP refused the frame (a header the kernel rejects, an interface that is
        // down): the frame is lost, as on a wire; the guest gets its buffer back.
        spdlog::debug("virtio-net: TX to the TAP: {}", std::strerror(-result));
        counters_.tx_errors.fetch_add(1, std::memory_order_relaxed);
    } else {
        ++local_.tx_packets;
        local_.tx_bytes += s.bytes - kHdrSize;
    }
    q_.tx->push_used_deferred(s.head, 0);
    delivered_ = true;
    tx_free_.push_back(slot);
}

// The control queue: {class, command} + data, then one device-writable ack byte.
void NetQueuePair::serve_ctrl() {
    for (;;) {
        const char* why = nullptr;
        switch (q_.ctrl->pop(chain_, &why)) {
        case Virtqueue::Pop::Empty: return;
        case Virtqueue::Pop::QueueBroken: queue_broken("control", why); return;
        case Virtqueue::Pop::Chain: break;
        }
        uint8_t ack = netspec::kCtrlErr;
        uint32_t readable = 0;
        while (readable < chain_.count && !chain_.segments[readable].writable) ++readable;
        const bool ack_ok = !chain_.broken && readable + 1 == chain_.count && chain_.segments[readable].len >= 1;
        std::array<uint8_t, 4> cmd{};
        const size_t got = gather({chain_.segments.data(), readable}, cmd.data(), cmd.size());
        if (ack_ok && got >= 4 && cmd[0] == netspec::kCtrlClassMq && cmd[1] == netspec::kCtrlMqVqPairsSet) {
            uint16_t pairs = 0;
            std::memcpy(&pairs, cmd.data() + 2, sizeof pairs);
            if (dev_.set_active_pairs(pairs)) ack = netspec::kCtrlOk;
        }
        if (ack_ok) {
            *chain_.segments[readable].host = ack;
            q_.ctrl->push_used(chain_.head, 1);
        } else {
            spdlog::debug("virtio-net: malformed control request {}", chain_.head);
            q_.ctrl->push_used(chain_.head, 0);
        }
        delivered_ = true;
    }
}

bool NetQueuePair::work_waiting() const {
    if (q_.tx && !tx_free_.empty() && q_.tx->has_available()) return true;
    if (q_.rx && rx_starved_ && q_.rx->avail_index() != rx_wait_idx_) return true;
    return q_.ctrl && q_.ctrl->has_available();
}

bool NetQueuePair::work_ready() {
    if (work_waiting()) return true;
    // Completions (a frame read, a write done, the TAP readable) are posted only when
    // this thread asks the kernel (DEFER_TASKRUN): ask, without waiting.
    if (tx_in_flight_ > 0 || (q_.rx && !rx_starved_)) {
        (void)io_uring_get_events(&ring_);
        if (io_uring_cq_ready(&ring_) > 0) return true;
    }
    return false;
}

void NetQueuePair::queue_broken(const char* which, const char* why) {
    spdlog::warn("virtio-net: {} queue of pair {} stopped: {}", which, index_, why);
    broken_ = true;
    irq_.needs_reset(fmt::format("{} queue of pair {} stopped: {}", which, index_, why));
}

void NetQueuePair::interrupt_if_needed() {
    // The shared counters once per round, not per frame (locked adds).
    if (local_.rx_packets) {
        counters_.rx_packets.fetch_add(local_.rx_packets, std::memory_order_relaxed);
        counters_.rx_bytes.fetch_add(local_.rx_bytes, std::memory_order_relaxed);
    }
    if (local_.tx_packets) {
        counters_.tx_packets.fetch_add(local_.tx_packets, std::memory_order_relaxed);
        counters_.tx_bytes.fetch_add(local_.tx_bytes, std::memory_order_relaxed);
    }
    local_ = {};
    bool any = false;
    if (q_.rx) any = q_.rx->needs_interrupt() || any;
    if (q_.tx) any = q_.tx->needs_interrupt() || any;
    if (q_.ctrl) any = q_.ctrl->needs_interrupt() || any;
    if (any) irq_.used_buffers();
}

// ---------------------------------------------------------------------------------------

VirtioNet::VirtioNet(net::Tap tap, Options options) : tap_(std::move(tap)), options_(std::move(options)) {}

VirtioNet::~VirtioNet() { reset(); }

Result<std::unique_ptr<VirtioNet>> VirtioNet::create(net::Tap tap, Options options) {
    if (tap.queues() == 0) return fail("{}: a TAP without queues", options.name);
    KILN_TRY_CTX(tap.set_vnet_header_size(static_cast<int>(kHdrSize)), "{}", options.name);
    uint32_t mtu = options.mtu;
    if (mtu == 0) mtu = KILN_TRY_CTX(tap.mtu(), "{}", options.name);
    if (mtu < 68 || mtu > 65535) return fail("{}: MTU {} (68..65535)", options.name, mtu);
    std::unique_ptr<VirtioNet> d(new VirtioNet(std::move(tap), std::move(options)));
    d->options_.mtu = mtu;
    // Offloads both ways: the TAP takes partial checksums and TSO frames from the guest
    // (the kernel finishes them), and gives them to a guest that negotiated them.
    d->features_ = feature(kFeatureVersion1) | feature(kFeatureEventIdx) | feature(kFeatureIndirectDesc) |
                   feature(netspec::kMac) | feature(netspec::kStatus) | feature(netspec::kMtu) |
                   feature(netspec::kMrgRxbuf) | feature(netspec::kCsum) | feature(netspec::kGuestCsum) |
                   feature(netspec::kHostTso4) | feature(netspec::kHostTso6) |
                   feature(netspec::kGuestTso4) | feature(netspec::kGuestTso6);
    // MQ needs the control queue (the driver says there how many pairs it uses).
    if (d->pairs() > 1) d->features_ |= feature(netspec::kMq) | feature(netspec::kCtrlVq);
    auto& c = d->config_;
    c.assign(netspec::kConfigSize, 0);
    std::memcpy(c.data() + netspec::kConfigMac, d->options_.mac.bytes.data(), 6);
    put_le<uint16_t>(c, netspec::kConfigStatus, netspec::kStatusLinkUp);
    put_le<uint16_t>(c, netspec::kConfigMaxPairs, d->pairs());
    put_le<uint16_t>(c, netspec::kConfigMtu, static_cast<uint16_t>(mtu));
    return d;
}

uint16_t VirtioNet::num_queues() const {
    // RX/TX per pair, plus the control queue when offered.
    return static_cast<uint16_t>(2 * pairs() + (pairs() > 1 ? 1 : 0));
}

void VirtioNet::read_config(uint64_t offset, std::span<uint8_t> data) const {
    for (size_t i = 0; i < data.size(); ++i) data[i] = offset + i < config_.size() ? config_[offset + i] : 0;
}

void VirtioNet::write_config(uint64_t, std::span<const uint8_t>) {
    // The MAC is writable only in legacy devices; virtio 1.x config is read-only here.
}

Result<void> VirtioNet::activate(const GuestMemory& mem, uint64_t features, std::span<const QueueBinding> queues,
                                 Interrupt& irq) {
    reset();
    auto r = start_pairs(mem, features, queues, irq);
    // No half-started device: a worker left running would serve queues the transport
    // considers inactive (and may reset under it).
    if (!r) reset();
    return r;
}

Result<void> VirtioNet::start_pairs(const GuestMemory&, uint64_t features, std::span<const QueueBinding> queues,
                                    Interrupt& irq) {
    std::lock_guard lk(pairs_mu_);
    unsigned offload = 0;
    if (features & feature(netspec::kGuestCsum)) {
        offload |= TUN_F_CSUM;
        if (features & feature(netspec::kGuestTso4)) offload |= TUN_F_TSO4;
        if (features & feature(netspec::kGuestTso6)) offload |= TUN_F_TSO6;
    }
    KILN_TRY_CTX(tap_.set_offload(offload), "{}", options_.name);
    const bool mq = features & feature(netspec::kMq);
    const bool ctrl = features & feature(netspec::kCtrlVq);
    const bool mrg = features & feature(netspec::kMrgRxbuf);
    // The TAP gives GSO frames (up to 64 KiB) only to a guest that took them; otherwise
    // frames are at most the MTU plus an Ethernet header with a VLAN tag.
    const bool gso = offload & (TUN_F_TSO4 | TUN_F_TSO6);
    // One byte more than the largest frame, so a longer one shows (see on_cqe).
    const uint32_t rx_buffer = gso ? kMaxFrame : (kHdrSize + options_.mtu + 18 + 64) / 64 * 64;
    // Without MQ the driver uses pair 0 only; with it, one pair until it says more.
    const uint16_t usable = mq ? pairs() : 1;
    const size_t ctrl_index = mq ? 2u * pairs() : 2u; // virtio 1.2, 5.1.2
    const auto binding = [&](size_t i) { return i < queues.size() ? queues[i] : QueueBinding{}; };
    for (uint16_t p = 0; p < pairs(); ++p) {
        KILN_TRY_CTX(tap_.set_queue_enabled(p, p == 0), "{}", options_.name);
        if (p >= usable) continue;
        NetQueuePair::Queues q{binding(2u * p).queue, binding(2u * p).kick_fd, binding(2u * p + 1).queue,
                               binding(2u * p + 1).kick_fd};
        if (p == 0 && ctrl) {
            q.ctrl = binding(ctrl_index).queue;
            q.ctrl_kick = binding(ctrl_index).kick_fd;
        }
        auto w = std::make_unique<NetQueuePair>(*this, p, tap_.fd(p), q, mrg, rx_buffer, irq, counters_,
                                                options_.worker_cpus, options_.rx_multishot);
        const std::string prefix = options_.name.starts_with("virtio-") ? options_.name.substr(7) : options_.name;
        KILN_TRY_CTX(w->start(fmt::format("{}-q{}", prefix, p), p == 0), "{} queue pair {}", options_.name, p);
        workers_.push_back(std::move(w));
    }
    return {};
}

bool VirtioNet::set_active_pairs(uint16_t n) {
    std::lock_guard lk(pairs_mu_);
    if (n < 1 || n > workers_.size()) return false;
    for (uint16_t p = 0; p < workers_.size(); ++p) {
        // A worker stops reading before its TAP queue is detached, and the queue is
        // attached before its worker reads.
        if (p >= n) workers_[p]->set_enabled(false);
        if (auto r = tap_.set_queue_enabled(p, p < n); !r) {
            spdlog::warn("{}: {}", options_.name, r.error().message());
            return false;
        }
        if (p < n) workers_[p]->set_enabled(true);
    }
    return true;
}

void VirtioNet::reset() {
    std::vector<std::unique_ptr<NetQueuePair>> old;
    {
        std::lock_guard lk(pairs_mu_);
        old.swap(workers_);
    }
    for (auto& w : old) w->stop(); // outside the lock: pair 0 may be in set_active_pairs
}

} // namespace kiln::virtio
