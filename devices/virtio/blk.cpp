#include "devices/virtio/blk.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <future>
#include <optional>

#include <liburing.h>
#include <linux/virtio_blk.h>
#include <poll.h>
#include <pthread.h>
#include <spdlog/spdlog.h>
#include <sys/uio.h>

#include "devices/block/aligned_buffer.hpp"
#include "devices/block/cluster_inflater.hpp"
#include "devices/virtio/spec.hpp"
#include "devices/virtio/worker_thread.hpp"

namespace kiln::virtio {
namespace {

constexpr uint64_t kSector = 512;
constexpr size_t kHeaderBytes = 16; // struct virtio_blk_outhdr: type, reserved, sector
constexpr size_t kIdBytes = 20;     // VIRTIO_BLK_ID_BYTES
constexpr size_t kMaxExtents = 64;  // extents mapped per round of one request
constexpr uint32_t kSegMax = kMaxChainSegments - 2; // the header and status take two
constexpr unsigned kRegisteredFiles = 16;
// From how many requests in flight the worker stops asking for kicks (see
// BlkQueueWorker::run).
constexpr uint32_t kBusyInflight = 4;
constexpr uint32_t kBatchFrom = 16; // requests in flight from which completions are batched

// user_data of a completion: a request slot and the bytes its SQE should move, or one
// of the two poll tags (top bit set).
constexpr uint64_t kTagPoll = 1ULL << 63;
constexpr uint64_t kTagKick = kTagPoll | 1, kTagStop = kTagPoll | 2;
uint64_t io_tag(uint32_t slot, uint64_t bytes) { return (bytes << 16) | slot; }
// A compressed cluster's bytes read for a request: the slot and the CompressedRead.
constexpr uint64_t kTagCompressed = 1ULL << 62;
uint64_t compressed_tag(uint32_t slot, size_t read) { return kTagCompressed | (uint64_t{read} << 16) | slot; }
constexpr uint32_t kNoType = 0xffffffff; // a request whose header was never read

template <class T>
void put_le(std::vector<uint8_t>& buf, size_t off, T v) {
    std::memcpy(buf.data() + off, &v, sizeof v); // x86-64 is little-endian, like virtio 1.x
}

} // namespace

// One queue's server. Lives from DRIVER_OK to reset; its thread is the only one that
// touches the queue and the request slots.
class BlkQueueWorker {
public:
    // `options` (serial, CPUs, ring watch) belong to the device, which outlives its workers.
    BlkQueueWorker(block::DiskImage& image, const VirtioBlk::Options& options, Virtqueue& vq, int kick_fd,
                   Interrupt& irq, BlkCounters& counters)
        : image_(image), options_(options), vq_(vq), kick_fd_(kick_fd), irq_(irq), counters_(counters) {}
    ~BlkQueueWorker() {
        stop();
        if (ring_ready_) io_uring_queue_exit(&ring_);
    }
    BlkQueueWorker(const BlkQueueWorker&) = delete;
    BlkQueueWorker& operator=(const BlkQueueWorker&) = delete;

    [[nodiscard]] Result<void> start(std::string thread_name) {
        stop_fd_.emplace(KILN_TRY(EventFd::create()));
        slots_ = std::make_unique<Slot[]>(vq_.size());
        free_.reserve(vq_.size());
        for (uint32_t i = vq_.size(); i-- > 0;) free_.push_back(i);
        return start_worker(thread_, std::move(thread_name), options_.worker_cpus, [this] { return init_ring(); }, [this] {
            run();
            // Drop the ring's references to the disk's files now, on the ring's own
            // thread: closing a ring releases them from a kernel worker some time later,
            // and until then the image's OFD locks outlive kiln, so the next VM on the
            // same image would be refused.
            if (files_registered_) io_uring_unregister_files(&ring_);
        });
    }

    [[nodiscard]] Result<void> init_ring() {
        const unsigned entries = 2u * vq_.size();
        int rc = io_uring_queue_init(entries, &ring_, IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN);
        if (rc == -EINVAL) rc = io_uring_queue_init(entries, &ring_, 0); // kernels before 6.1
        if (rc < 0) return fail_errno("io_uring_queue_init", -rc);
        ring_ready_ = true;
        // Registered files spare the kernel an fd lookup per request; without them
        // (an old kernel) requests simply use plain fds.
        registered_.fill(-1);
        files_registered_ = io_uring_register_files_sparse(&ring_, kRegisteredFiles) == 0;
        return {};
    }

    void stop() {
        if (!thread_.joinable()) return;
        stop_fd_->signal();
        thread_.join();
    }

private:
    struct Slot {
        uint16_t head = 0;
        uint8_t* status = nullptr;
        uint32_t used_len = 0;
        uint32_t pending = 0; // SQEs in flight
        bool failed = false;
        uint32_t type = kNoType; // VIRTIO_BLK_T_*, for the counters
        uint64_t bytes = 0;      // data bytes of the request
        uint32_t data_count = 0;
        std::array<iovec, kMaxChainSegments> data;                 // the request's data buffers
        std::array<iovec, kMaxChainSegments + 2 * kMaxExtents> sub; // slices of `data` per extent
        std::array<block::Extent, kMaxExtents> extents;
    };

    void run();
    [[nodiscard]] bool poll_available(std::chrono::steady_clock::time_point until);
    void arm_poll(int fd, uint64_t tag);
    io_uring_sqe* next_sqe();
    void drain_queue();
    void start_request(const Chain& chain);
    void finish_broken(const Chain& chain, const char* why);
    [[nodiscard]] uint8_t start_rw(Slot& s, uint32_t slot, bool write, uint64_t sector);
    [[nodiscard]] uint8_t discard_or_zero(const Slot& s, bool zero);
    void complete(uint32_t slot, uint8_t status);
    void count(const Slot& s, uint8_t status);
    void on_io(const io_uring_cqe& cqe);
    // nullopt: the request fails; true: a read is in flight; false: done already.
    [[nodiscard]] std::optional<bool> start_compressed(Slot& s, uint32_t slot, const block::Extent& x, size_t first,
                                                       unsigned count);
    void on_compressed(const io_uring_cqe& cqe);
    void interrupt_if_needed();
    [[nodiscard]] int file_index(int fd);

    block::DiskImage& image_;
    const VirtioBlk::Options& options_;
    Virtqueue& vq_;
    int kick_fd_;
    Interrupt& irq_;
    BlkCounters& counters_;
    std::optional<EventFd> stop_fd_;
    io_uring ring_{};
    bool ring_ready_ = false;
    bool files_registered_ = false;
    std::array<int, kRegisteredFiles> registered_{};
    std::unique_ptr<Slot[]> slots_;
    std::vector<uint32_t> free_;
    // Compressed qcow2 clusters being read for requests: the worker reads their bytes
    // through the ring, so reads overlap with each other and with inflating (on this
    // thread) what has come. 32, a guest's usual queue depth: with 8, 4 KiB random reads
    // of a compressed image at QD32 made 3.9k IOPS, with 32 7.0k (QEMU: 4.4k). Each
    // buffer is made when first needed, so only compressed images pay: 128 KiB for
    // clusters up to 64 KiB (4 MiB a queue at most), up to twice the cluster above that;
    // a cluster whose compressed bytes pass 1 MiB is read synchronously.
    struct CompressedRead {
        block::AlignedBuffer buf;
        block::Extent extent;
        uint32_t slot = 0, sub_first = 0, sub_count = 0;
        block::StoredRead read; // where buf's bytes come from
        bool busy = false;
    };
    static constexpr uint64_t kCompressedReadMax = 1 << 20; // beyond (2 MiB clusters): synchronous
    std::array<CompressedRead, 32> compressed_;
    block::InflateScratch inflate_; // this worker's, so queues inflate in parallel
    uint32_t inflight_ = 0;
    bool stopping_ = false, queue_broken_ = false;
    // Completions delivered that the driver has not yet answered with new requests.
    // Never more than free_.size(): each delivery frees a slot, each new request takes one.
    uint32_t refill_due_ = 0;
    std::thread thread_;
    Chain chain_; // scratch for pop(): 4 KiB, so not on the stack
};

void BlkQueueWorker::arm_poll(int fd, uint64_t tag) {
    io_uring_sqe* sqe = next_sqe();
    io_uring_prep_poll_multishot(sqe, fd, POLLIN);
    io_uring_sqe_set_data64(sqe, tag);
}

io_uring_sqe* BlkQueueWorker::next_sqe() {
    // The submission ring holds two entries per queue slot; when a burst of multi-extent
    // requests fills it, hand what is there to the kernel and take the next.
    for (;;) {
        if (io_uring_sqe* sqe = io_uring_get_sqe(&ring_)) return sqe;
        io_uring_submit(&ring_);
    }
}

int BlkQueueWorker::file_index(int fd) {
    if (!files_registered_) return -1;
    for (unsigned i = 0; i < kRegisteredFiles; ++i) {
        if (registered_[i] == fd) return static_cast<int>(i);
        if (registered_[i] == -1) {
            if (io_uring_register_files_update(&ring_, i, &fd, 1) != 1) return -1;
            registered_[i] = fd;
            return static_cast<int>(i);
        }
    }
    return -1; // a backing chain deeper than the table: plain fds for the rest
}

bool BlkQueueWorker::poll_available(std::chrono::steady_clock::time_point until) {
    do {
        if (vq_.has_available()) return true;
        __builtin_ia32_pause();
    } while (std::chrono::steady_clock::now() < until);
    return false;
}

void BlkQueueWorker::run() {
    arm_poll(kick_fd_, kTagKick);
    arm_poll(stop_fd_->get(), kTagStop);
    std::optional<std::chrono::steady_clock::time_point> watch_until;
    for (;;) {
        if (!stopping_ && !queue_broken_) drain_queue();
        interrupt_if_needed();
        if (stopping_ && inflight_ == 0) break;
        const bool serving = !stopping_ && !queue_broken_;
        if (serving && !free_.empty() && (inflight_ == 0 || refill_due_ > 0)) {
            // A driver that just took completions usually adds as many new requests
            // within microseconds. Watching the ring for a moment (at most ring_watch per
            // delivery) catches them without a kick (a VM exit) and a wake-up (QD1
            // latency is mostly those two); and it watches until the whole refill is in,
            // not only its first request: the rest would otherwise wait in the ring
            // until the next batch of completions wakes the worker (a 1 MiB read takes
            // a millisecond, and at QD32 the queue would run a refill shallow).
            if (!watch_until) {
                watch_until = std::chrono::steady_clock::now() + options_.ring_watch;
                // What the watch catches needs no kick: at QD1 that spares the driver a
                // VM exit and the worker a second wake-up per request.
                vq_.suppress_kicks();
            }
            // While the disk has kBatchFrom requests of its own the refill is held back
            // and goes out in one submission (one plug; see below); a shallow disk gets
            // each request at once.
            if (inflight_ < kBatchFrom + io_uring_sq_ready(&ring_)) io_uring_submit(&ring_);
            if (poll_available(*watch_until)) continue;
        }
        watch_until.reset();
        refill_due_ = 0; // what has not come by now is not a refill to wait for
        // Publish avail_event (the driver kicks when it passes it); a buffer that
        // slipped in meanwhile is served first. With several requests in flight the
        // worker wakes for their completions anyway and looks at the ring then, so it
        // leaves avail_event behind and the driver does not kick at all.
        if (serving && inflight_ < kBusyInflight && vq_.prepare_to_sleep()) continue;
        // Deep queues: take completions a quarter of the queue at a time. The driver
        // then refills in bursts, which reach the host's disk as one plugged
        // submission (4 KiB random reads at QD32 here: +12-15 %). Every request waited
        // for is in flight, so the wait always ends.
        const unsigned want = inflight_ >= kBatchFrom ? inflight_ / 4 : 1;
        int rc = io_uring_submit_and_wait(&ring_, want);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
            spdlog::error("virtio-blk queue worker: io_uring: {}", std::strerror(-rc));
            break;
        }
        unsigned head, seen = 0;
        io_uring_cqe* cqe;
        io_uring_for_each_cqe(&ring_, head, cqe) {
            ++seen;
            const uint64_t tag = io_uring_cqe_get_data64(cqe);
            if (tag == kTagStop) {
                stopping_ = true;
            } else if (tag == kTagKick) {
                uint64_t n;
                [[maybe_unused]] auto r = ::read(kick_fd_, &n, sizeof n); // non-blocking eventfd
                if (!(cqe->flags & IORING_CQE_F_MORE)) arm_poll(kick_fd_, kTagKick);
            } else {
                on_io(*cqe);
            }
        }
        io_uring_cq_advance(&ring_, seen);
    }
}

void BlkQueueWorker::interrupt_if_needed() {
    if (vq_.needs_interrupt()) irq_.used_buffers();
}

void BlkQueueWorker::drain_queue() {
    while (!free_.empty()) {
        const char* why = nullptr;
        switch (vq_.pop(chain_, &why)) {
        case Virtqueue::Pop::Empty: return;
        case Virtqueue::Pop::QueueBroken:
            spdlog::warn("virtio-blk: queue stopped: {}", why);
            queue_broken_ = true;
            irq_.needs_reset(fmt::format("queue stopped: {}", why));
            return;
        case Virtqueue::Pop::Chain:
            if (refill_due_ > 0) --refill_due_;
            start_request(chain_);
            break;
        }
    }
}

void BlkQueueWorker::finish_broken(const Chain& c, const char* why) {
    spdlog::debug("virtio-blk: malformed request {}: {}", c.head, why);
    counters_.errors.fetch_add(1, std::memory_order_relaxed);
    // The chain's own last byte when the walk could still find it; else the last valid
    // segment, if writable, is the driver's status byte as far as we can tell. An error
    // there ends the driver's wait. Otherwise the buffer comes back empty.
    if (c.status) {
        *c.status = VIRTIO_BLK_S_IOERR;
        vq_.push_used(c.head, 1);
    } else if (c.count > 0 && c.segments[c.count - 1].writable) {
        const Segment& last = c.segments[c.count - 1];
        last.host[last.len - 1] = VIRTIO_BLK_S_IOERR;
        vq_.push_used(c.head, 1);
    } else {
        vq_.push_used(c.head, 0);
    }
}

void BlkQueueWorker::start_request(const Chain& c) {
    if (c.broken) return finish_broken(c, c.broken);
    // Status: the last byte of the last segment, which must be device-writable.
    if (c.count == 0 || !c.segments[c.count - 1].writable)
        return finish_broken(c, "no device-writable status byte");
    const uint32_t slot_index = free_.back();
    Slot& s = slots_[slot_index];
    s.head = c.head;
    s.status = c.segments[c.count - 1].host + c.segments[c.count - 1].len - 1;
    s.pending = 0;
    s.failed = false;
    s.used_len = 1;
    s.data_count = 0;
    s.type = kNoType;
    s.bytes = 0;

    // The header: the first 16 readable bytes, whatever the segment boundaries.
    uint8_t header[kHeaderBytes];
    size_t got = 0, seg = 0, seg_off = 0;
    while (got < kHeaderBytes && seg < c.count && !c.segments[seg].writable) {
        const size_t n = std::min<size_t>(kHeaderBytes - got, c.segments[seg].len - seg_off);
        std::memcpy(header + got, c.segments[seg].host + seg_off, n);
        got += n;
        seg_off += n;
        if (seg_off == c.segments[seg].len) ++seg, seg_off = 0;
    }
    uint32_t type;
    uint64_t sector;
    std::memcpy(&type, header, 4);
    std::memcpy(&sector, header + 8, 8);
    // Everything between the header and the status byte is data.
    bool data_writable = false, mixed = false;
    for (size_t i = seg; i < c.count; ++i) {
        uint32_t off = i == seg ? static_cast<uint32_t>(seg_off) : 0;
        uint32_t len = c.segments[i].len - off;
        if (i == c.count - 1) len -= 1; // the status byte
        if (len == 0) continue;
        if (s.data_count == 0) data_writable = c.segments[i].writable;
        else if (c.segments[i].writable != data_writable) mixed = true;
        s.data[s.data_count++] = {c.segments[i].host + off, len};
        s.bytes += len;
    }
    free_.pop_back();
    if (got < kHeaderBytes || mixed) return complete(slot_index, VIRTIO_BLK_S_IOERR);
    s.type = type;

    switch (type) {
    case VIRTIO_BLK_T_IN:
    case VIRTIO_BLK_T_OUT: {
        const bool write = type == VIRTIO_BLK_T_OUT;
        // Reads fill writable buffers and writes drain readable ones, or the chain lies.
        if (s.data_count && data_writable == write) return complete(slot_index, VIRTIO_BLK_S_IOERR);
        const uint8_t st = start_rw(s, slot_index, write, sector);
        if (st != VIRTIO_BLK_S_OK || s.pending == 0) return complete(slot_index, st);
        return; // completes in on_io
    }
    case VIRTIO_BLK_T_FLUSH: {
        if (auto r = image_.flush_metadata(); !r) {
            spdlog::warn("virtio-blk: flush: {}", r.error().message());
            return complete(slot_index, VIRTIO_BLK_S_IOERR);
        }
        io_uring_sqe* sqe = next_sqe();
        io_uring_prep_fsync(sqe, image_.top_fd(), IORING_FSYNC_DATASYNC);
        io_uring_sqe_set_data64(sqe, io_tag(slot_index, 0));
        ++s.pending;
        ++inflight_;
        return;
    }
    case VIRTIO_BLK_T_GET_ID: {
        if (!data_writable) return complete(slot_index, VIRTIO_BLK_S_IOERR);
        uint8_t id[kIdBytes] = {};
        std::memcpy(id, options_.serial.data(), std::min(options_.serial.size(), kIdBytes));
        size_t done = 0;
        for (uint32_t i = 0; i < s.data_count && done < kIdBytes; ++i) {
            const size_t n = std::min(s.data[i].iov_len, kIdBytes - done);
            std::memcpy(s.data[i].iov_base, id + done, n);
            done += n;
        }
        s.used_len += static_cast<uint32_t>(done);
        return complete(slot_index, VIRTIO_BLK_S_OK);
    }
    case VIRTIO_BLK_T_DISCARD:
    case VIRTIO_BLK_T_WRITE_ZEROES: {
        const bool zero = type == VIRTIO_BLK_T_WRITE_ZEROES;
        if (image_.read_only()) return complete(slot_index, VIRTIO_BLK_S_IOERR);
        if (!(zero ? image_.supports_write_zeroes() : image_.supports_discard()))
            return complete(slot_index, VIRTIO_BLK_S_UNSUPP);
        if (data_writable) return complete(slot_index, VIRTIO_BLK_S_IOERR);
        return complete(slot_index, discard_or_zero(s, zero));
    }
    default: return complete(slot_index, VIRTIO_BLK_S_UNSUPP);
    }
}

uint8_t BlkQueueWorker::start_rw(Slot& s, uint32_t slot_index, bool write, uint64_t sector) {
    uint64_t total = 0;
    for (uint32_t i = 0; i < s.data_count; ++i) total += s.data[i].iov_len;
    uint64_t offset, end;
    if (total % kSector || __builtin_mul_overflow(sector, kSector, &offset) ||
        __builtin_add_overflow(offset, total, &end) || end > image_.size())
        return VIRTIO_BLK_S_IOERR;
    if (write && image_.read_only()) return VIRTIO_BLK_S_IOERR;
    if (!write) s.used_len += static_cast<uint32_t>(total);

    // Walk the data buffers alongside the image's extents, one SQE per data extent.
    uint32_t iov = 0;
    size_t iov_off = 0, sub_used = 0;
    uint64_t pos = offset;
    while (pos < end) {
        auto mapped = write ? image_.map_write(pos, end - pos, s.extents) : image_.map_read(pos, end - pos, s.extents);
        if (!mapped) {
            spdlog::warn("virtio-blk: {} at {:#x}: {}", write ? "write" : "read", pos, mapped.error().message());
            return VIRTIO_BLK_S_IOERR;
        }
        if (mapped->count == 0 || mapped->covered == 0) return VIRTIO_BLK_S_IOERR;
        for (size_t e = 0; e < mapped->count; ++e) {
            const block::Extent& x = s.extents[e];
            // Slice [iov/iov_off, +x.length) of the data buffers into sub[].
            const size_t first = sub_used;
            uint64_t left = x.length;
            while (left > 0) {
                if (iov >= s.data_count || sub_used >= s.sub.size()) return VIRTIO_BLK_S_IOERR;
                const size_t n = std::min<uint64_t>(left, s.data[iov].iov_len - iov_off);
                s.sub[sub_used++] = {static_cast<uint8_t*>(s.data[iov].iov_base) + iov_off, n};
                left -= n;
                iov_off += n;
                if (iov_off == s.data[iov].iov_len) ++iov, iov_off = 0;
            }
            const auto count = static_cast<unsigned>(sub_used - first);
            if (x.kind == block::Extent::Kind::Zero) {
                // Unallocated, no backing: the guest reads zeros, no I/O needed.
                for (size_t k = first; k < sub_used; ++k) std::memset(s.sub[k].iov_base, 0, s.sub[k].iov_len);
                sub_used = first; // done with: the slices are free again
                continue;
            }
            if (x.kind == block::Extent::Kind::Compressed) {
                // Compressed clusters do not merge into one extent: one done at once frees
                // its slices, or a large read of small clusters would run out of them.
                const auto started = start_compressed(s, slot_index, x, first, count);
                if (!started) return VIRTIO_BLK_S_IOERR;
                if (!*started) sub_used = first;
                continue;
            }
            io_uring_sqe* sqe = next_sqe();
            const int fixed = file_index(x.fd);
            if (write) io_uring_prep_writev(sqe, fixed >= 0 ? fixed : x.fd, &s.sub[first], count, x.file_offset);
            else io_uring_prep_readv(sqe, fixed >= 0 ? fixed : x.fd, &s.sub[first], count, x.file_offset);
            if (fixed >= 0) sqe->flags |= IOSQE_FIXED_FILE;
            io_uring_sqe_set_data64(sqe, io_tag(slot_index, x.length));
            ++s.pending;
            ++inflight_;
        }
        pos += mapped->covered;
        // Another round reuses extents[] and may not reuse sub[] slots in flight: sub[]
        // is sized for every segment plus two per extent of every round, so it only runs
        // out for requests far beyond seg_max, and those fail above.
    }
    return VIRTIO_BLK_S_OK;
}

uint8_t BlkQueueWorker::discard_or_zero(const Slot& s, bool zero) {
    // The data is an array of {le64 sector; le32 num_sectors; le32 flags}.
    struct Range {
        uint64_t sector;
        uint32_t num_sectors;
        uint32_t flags;
    };
    static_assert(sizeof(Range) == 16);
    uint8_t buf[16];
    size_t have = 0;
    for (uint32_t i = 0; i < s.data_count; ++i) {
        const auto* p = static_cast<const uint8_t*>(s.data[i].iov_base);
        for (size_t k = 0; k < s.data[i].iov_len; ++k) {
            buf[have++] = p[k];
            if (have < sizeof buf) continue;
            have = 0;
            Range r;
            std::memcpy(&r, buf, sizeof r);
            uint64_t off, len = static_cast<uint64_t>(r.num_sectors) * kSector, end;
            if (__builtin_mul_overflow(r.sector, kSector, &off) || __builtin_add_overflow(off, len, &end) ||
                end > image_.size())
                return VIRTIO_BLK_S_IOERR;
            const bool unmap = r.flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
            auto res = zero ? image_.write_zeroes(off, len, unmap) : image_.discard(off, len);
            if (!res) {
                spdlog::warn("virtio-blk: {}: {}", zero ? "write-zeroes" : "discard", res.error().message());
                return VIRTIO_BLK_S_IOERR;
            }
        }
    }
    return have == 0 ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR;
}

// A compressed qcow2 cluster (a cloud image's base): copied at once when its image has
// it inflated, else its bytes are read through the ring and inflated on completion
// (on_compressed); synchronously when every read is busy.
std::optional<bool> BlkQueueWorker::start_compressed(Slot& s, uint32_t slot_index, const block::Extent& x,
                                                     size_t first, unsigned count) {
    const std::span<const iovec> out(&s.sub[first], count);
    if (x.source->copy_inflated(x, out)) return false;
    const block::StoredRead read = block::stored_read(x.file_offset, x.stored, std::max<uint32_t>(image_.alignment(), 512));
    CompressedRead* r = nullptr;
    if (read.length <= kCompressedReadMax)
        for (auto& c : compressed_)
            if (!c.busy) {
                r = &c;
                break;
            }
    if (r && r->buf.size() < read.length)
        r->buf = block::AlignedBuffer(std::max<uint64_t>(read.length, 128 << 10), 4096);
    if (!r || !r->buf) {
        if (auto res = x.source->read_compressed(x, out); !res) {
            spdlog::warn("virtio-blk: read of a compressed cluster: {}", res.error().message());
            return std::nullopt;
        }
        return false;
    }
    r->extent = x;
    r->slot = slot_index;
    r->sub_first = static_cast<uint32_t>(first);
    r->sub_count = count;
    r->read = read;
    r->busy = true;
    io_uring_sqe* sqe = next_sqe();
    const int fixed = file_index(x.fd);
    io_uring_prep_read(sqe, fixed >= 0 ? fixed : x.fd, r->buf.data(), static_cast<unsigned>(read.length), read.from);
    if (fixed >= 0) sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, compressed_tag(slot_index, static_cast<size_t>(r - compressed_.data())));
    ++s.pending;
    ++inflight_;
    return true;
}

void BlkQueueWorker::on_compressed(const io_uring_cqe& cqe) {
    CompressedRead& r = compressed_[(io_uring_cqe_get_data64(&cqe) >> 16) & 0xff];
    Slot& s = slots_[r.slot];
    --inflight_;
    r.busy = false;
    // A short read is fine where the file ends inside the stream's last sector; the
    // inflater says whether what came holds the whole cluster.
    const auto stream = r.read.stream(r.buf.data(), cqe.res < 0 ? 0 : static_cast<uint64_t>(cqe.res), r.extent.stored);
    if (stream.empty()) {
        if (!s.failed)
            spdlog::warn("virtio-blk: request {}: reading a compressed cluster: {}", s.head,
                         cqe.res < 0 ? std::strerror(-cqe.res) : "end of file");
        s.failed = true;
    } else if (!s.failed) {
        auto res = r.extent.source->inflate_into(r.extent, stream, {&s.sub[r.sub_first], r.sub_count}, inflate_);
        if (!res) {
            spdlog::warn("virtio-blk: request {}: {}", s.head, res.error().message());
            s.failed = true;
        }
    }
    if (--s.pending == 0) complete(r.slot, s.failed ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK);
}

void BlkQueueWorker::on_io(const io_uring_cqe& cqe) {
    const uint64_t tag = io_uring_cqe_get_data64(&cqe);
    if (tag & kTagCompressed) return on_compressed(cqe);
    const auto slot_index = static_cast<uint32_t>(tag & 0xffff);
    const uint64_t expected = tag >> 16;
    Slot& s = slots_[slot_index];
    --inflight_;
    // A host error (EIO, ENOSPC, ...) or a short transfer fails the request; the
    // guest sees VIRTIO_BLK_S_IOERR and the device carries on.
    if (cqe.res < 0 || static_cast<uint64_t>(cqe.res) != expected) {
        if (!s.failed)
            spdlog::warn("virtio-blk: request {}: {}", s.head,
                         cqe.res < 0 ? std::strerror(-cqe.res) : "short transfer");
        s.failed = true;
    }
    if (--s.pending == 0) complete(slot_index, s.failed ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK);
}

void BlkQueueWorker::complete(uint32_t slot_index, uint8_t status) {
    Slot& s = slots_[slot_index];
    if (s.pending != 0) {
        // Some SQEs of this request are still in flight (a later extent failed to map):
        // finish when the last one completes, as a failure.
        s.failed = true;
        return;
    }
    *s.status = status;
    count(s, status);
    vq_.push_used(s.head, s.used_len);
    ++refill_due_;
    free_.push_back(slot_index);
}

void BlkQueueWorker::count(const Slot& s, uint8_t status) {
    constexpr auto r = std::memory_order_relaxed;
    if (status != VIRTIO_BLK_S_OK) {
        counters_.errors.fetch_add(1, r);
        return;
    }
    switch (s.type) {
    case VIRTIO_BLK_T_IN:
        counters_.read_requests.fetch_add(1, r);
        counters_.read_bytes.fetch_add(s.bytes, r);
        break;
    case VIRTIO_BLK_T_OUT:
        counters_.write_requests.fetch_add(1, r);
        counters_.write_bytes.fetch_add(s.bytes, r);
        break;
    case VIRTIO_BLK_T_FLUSH: counters_.flush_requests.fetch_add(1, r); break;
    case VIRTIO_BLK_T_DISCARD:
    case VIRTIO_BLK_T_WRITE_ZEROES: counters_.discard_requests.fetch_add(1, r); break;
    default: break; // GET_ID
    }
}

VirtioBlk::VirtioBlk(std::unique_ptr<block::DiskImage> image, Options options)
    : image_(std::move(image)), options_(std::move(options)) {}

VirtioBlk::~VirtioBlk() { reset(); }

Result<std::unique_ptr<VirtioBlk>> VirtioBlk::create(std::unique_ptr<block::DiskImage> image, Options options) {
    if (options.serial.size() > kIdBytes)
        return fail("{}: serial '{}' is longer than {} bytes", options.name, options.serial, kIdBytes);
    if (options.queues == 0 || options.queues > 16) return fail("{}: {} queues (1..16)", options.name, options.queues);
    if (options.ring_watch < std::chrono::microseconds(0) || options.ring_watch > std::chrono::milliseconds(10))
        return fail("{}: ring watch of {} us (0..10000)", options.name, options.ring_watch.count());
    std::unique_ptr<VirtioBlk> d(new VirtioBlk(std::move(image), std::move(options)));
    const block::DiskImage& img = *d->image_;
    d->features_ = feature(kFeatureVersion1) | feature(kFeatureEventIdx) | feature(kFeatureIndirectDesc) |
                   feature(VIRTIO_BLK_F_SEG_MAX) | feature(VIRTIO_BLK_F_BLK_SIZE) | feature(VIRTIO_BLK_F_FLUSH);
    if (img.read_only()) d->features_ |= feature(VIRTIO_BLK_F_RO);
    if (d->options_.queues > 1) d->features_ |= feature(VIRTIO_BLK_F_MQ);
    if (!img.read_only() && img.supports_discard()) d->features_ |= feature(VIRTIO_BLK_F_DISCARD);
    if (!img.read_only() && img.supports_write_zeroes()) d->features_ |= feature(VIRTIO_BLK_F_WRITE_ZEROES);

    auto& c = d->config_;
    c.assign(sizeof(virtio_blk_config), 0);
    put_le<uint64_t>(c, offsetof(virtio_blk_config, capacity), img.size() / kSector);
    put_le<uint32_t>(c, offsetof(virtio_blk_config, seg_max), kSegMax);
    put_le<uint32_t>(c, offsetof(virtio_blk_config, blk_size), std::max<uint32_t>(512, img.alignment()));
    put_le<uint16_t>(c, offsetof(virtio_blk_config, num_queues), d->options_.queues);
    // One range per request, any length the disk has: the image splits it itself.
    const auto max_sectors = static_cast<uint32_t>(std::min<uint64_t>(img.size() / kSector, 0xffffffffu));
    put_le<uint32_t>(c, offsetof(virtio_blk_config, max_discard_sectors), max_sectors);
    put_le<uint32_t>(c, offsetof(virtio_blk_config, max_discard_seg), 1);
    put_le<uint32_t>(c, offsetof(virtio_blk_config, discard_sector_alignment), 1);
    put_le<uint32_t>(c, offsetof(virtio_blk_config, max_write_zeroes_sectors), max_sectors);
    put_le<uint32_t>(c, offsetof(virtio_blk_config, max_write_zeroes_seg), 1);
    put_le<uint8_t>(c, offsetof(virtio_blk_config, write_zeroes_may_unmap), 1);
    return d;
}

void VirtioBlk::read_config(uint64_t offset, std::span<uint8_t> data) const {
    for (size_t i = 0; i < data.size(); ++i) data[i] = offset + i < config_.size() ? config_[offset + i] : 0;
}

void VirtioBlk::write_config(uint64_t, std::span<const uint8_t>) {
    // Only `writeback` (VIRTIO_BLK_F_CONFIG_WCE) is writable in virtio-blk's config,
    // and Kiln does not offer it: writes are ignored.
}

Result<void> VirtioBlk::activate(const GuestMemory&, uint64_t, std::span<const QueueBinding> queues, Interrupt& irq) {
    reset();
    for (size_t i = 0; i < queues.size(); ++i) {
        if (!queues[i].queue) continue;
        auto w = std::make_unique<BlkQueueWorker>(*image_, options_, *queues[i].queue, queues[i].kick_fd, irq, counters_);
        // Thread names: "blk0-q0" from "virtio-blk0".
        std::string prefix = options_.name.starts_with("virtio-") ? options_.name.substr(7) : options_.name;
        KILN_TRY_CTX(w->start(fmt::format("{}-q{}", prefix, i)), "{} queue {}", options_.name, i);
        workers_.push_back(std::move(w));
    }
    return {};
}

void VirtioBlk::reset() {
    for (auto& w : workers_) w->stop();
    workers_.clear();
}

} // namespace kiln::virtio
