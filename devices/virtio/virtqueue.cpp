#include "devices/virtio/virtqueue.hpp"

#include "devices/virtio/spec.hpp"

#include <cstring>


namespace kiln::virtio {
namespace {

// Ring fields are little-endian 16/32-bit values at naturally aligned offsets (the
// layout checks guarantee the alignment), shared with the guest's CPUs.
uint16_t load16(const uint8_t* p, std::memory_order order = std::memory_order_relaxed) {
    return std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(const_cast<uint8_t*>(p))).load(order);
}
void store16(uint8_t* p, uint16_t v, std::memory_order order = std::memory_order_relaxed) {
    std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(p)).store(v, order);
}
void store32(uint8_t* p, uint32_t v) {
    std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(p)).store(v, std::memory_order_relaxed);
}

struct Desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};
static_assert(sizeof(Desc) == 16);

Desc read_desc(const uint8_t* table, uint32_t index) {
    Desc d;
    std::memcpy(&d, table + 16 * static_cast<size_t>(index), sizeof d); // one read; the copy is what we trust
    return d;
}

// vring_need_event (virtio 1.2, 2.7.10): interrupt if used_event lies in (old, new].
bool need_event(uint16_t event, uint16_t new_idx, uint16_t old_idx) {
    return static_cast<uint16_t>(new_idx - event - 1) < static_cast<uint16_t>(new_idx - old_idx);
}

// Ends a walk: records why the chain is broken.
bool stop(Chain& out, const char* why) {
    if (!out.broken) out.broken = why; // the first reason is the one worth reporting
    return false;
}

} // namespace

Result<void> Virtqueue::configure(const GuestMemory& mem, Layout l, bool event_idx, bool indirect) {
    if (l.size == 0 || l.size > kMaxQueueSize)
        return fail("queue size {} is not within 1..{}", l.size, kMaxQueueSize);
    if (l.desc % 16 || l.avail % 2 || l.used % 4)
        return fail("queue rings misaligned (descriptors {:#x} need 16, driver area {:#x} 2, device area {:#x} 4)",
                    l.desc, l.avail, l.used);
    const uint64_t n = l.size;
    auto desc = KILN_TRY_CTX(mem.slice(GuestAddress(l.desc), 16 * n), "descriptor table");
    auto avail = KILN_TRY_CTX(mem.slice(GuestAddress(l.avail), 6 + 2 * n), "driver area (available ring)");
    auto used = KILN_TRY_CTX(mem.slice(GuestAddress(l.used), 6 + 8 * n), "device area (used ring)");
    mem_ = &mem;
    size_ = l.size;
    event_idx_ = event_idx;
    indirect_ = indirect;
    desc_ = desc.data();
    avail_ = avail.data();
    used_ = used.data();
    last_avail_ = 0;
    used_idx_ = 0;
    signalled_used_ = 0;
    return {};
}

void Virtqueue::reset() {
    mem_ = nullptr;
    size_ = 0;
    desc_ = avail_ = used_ = nullptr;
    last_avail_ = used_idx_ = signalled_used_ = 0;
}

uint16_t Virtqueue::load_avail_idx() const { return load16(avail_ + 2, std::memory_order_acquire); }

Virtqueue::Pop Virtqueue::pop(Chain& out, const char** why) {
    if (!configured()) return Pop::Empty;
    const uint16_t avail_idx = load_avail_idx();
    const auto pending = static_cast<uint16_t>(avail_idx - last_avail_);
    if (pending == 0) return Pop::Empty;
    if (pending > size_) {
        if (why) *why = "the available index ran ahead of the queue by more than its size";
        return Pop::QueueBroken;
    }
    const uint16_t head = load16(avail_ + 4 + 2 * (last_avail_ % size_));
    if (head >= size_) {
        if (why) *why = "an available ring entry names a descriptor beyond the queue size";
        return Pop::QueueBroken;
    }
    ++last_avail_;
    walk(*mem_, head, out);
    return Pop::Chain;
}

bool Virtqueue::add_segment(Chain& out, uint64_t addr, uint32_t len, bool writable) {
    if (len == 0) return true; // nothing to transfer; harmless
    if (out.count >= kMaxChainSegments) return stop(out, "descriptor chain has more segments than Kiln accepts");
    auto s = mem_->slice(GuestAddress(addr), len);
    if (!s) return stop(out, "descriptor points outside guest RAM");
    out.segments[out.count++] = {s->data(), len, writable};
    return true;
}

bool Virtqueue::walk(const GuestMemory& mem, uint16_t head, Chain& out) {
    out.head = head;
    out.count = 0;
    out.broken = nullptr;
    out.status = nullptr;
    uint16_t i = head;
    for (uint32_t hops = 0; hops < size_; ++hops) {
        const Desc d = read_desc(desc_, i);
        if (d.flags & kDescFlagIndirect) {
            if (!indirect_) return stop(out, "indirect descriptor, but VIRTIO_RING_F_INDIRECT_DESC was not negotiated");
            if (d.flags & kDescFlagNext) return stop(out, "indirect descriptor with NEXT set");
            if (d.len == 0 || d.len % 16) return stop(out, "indirect table length is not a multiple of 16");
            const uint32_t n = d.len / 16;
            if (n > kMaxChainSegments) return stop(out, "indirect table longer than Kiln accepts");
            auto table = mem.slice(GuestAddress(d.addr), d.len);
            if (!table) return stop(out, "indirect table outside guest RAM");
            uint32_t j = 0;
            for (uint32_t hops2 = 0; hops2 < n; ++hops2) {
                const Desc e = read_desc(table->data(), j);
                if (e.flags & kDescFlagIndirect) return stop(out, "nested indirect descriptor");
                if (!add_segment(out, e.addr, e.len, e.flags & kDescFlagWrite)) return false;
                if (!(e.flags & kDescFlagNext)) return true;
                j = e.next;
                if (j >= n) return stop(out, "indirect descriptor's next is beyond its table");
            }
            return stop(out, "indirect descriptor chain loops");
        }
        // A bad buffer (outside RAM, too many segments) breaks the request but not the
        // chain: keep following `next` (still bounded) to its last descriptor, so the
        // device can fail the request with a status byte instead of silently.
        if (!out.broken) add_segment(out, d.addr, d.len, d.flags & kDescFlagWrite);
        if (!(d.flags & kDescFlagNext)) {
            if (!out.broken) return true;
            if ((d.flags & kDescFlagWrite) && d.len > 0)
                if (auto s = mem.slice(GuestAddress(d.addr + d.len - 1), 1)) out.status = s->data();
            return false;
        }
        i = d.next;
        if (i >= size_) {
            out.broken = nullptr; // a broken structure overrides: no status byte to trust
            return stop(out, "descriptor's next is beyond the queue size");
        }
    }
    out.broken = nullptr;
    return stop(out, "descriptor chain loops or is longer than the queue");
}

void Virtqueue::push_used(uint16_t head, uint32_t written) {
    uint8_t* e = used_ + 4 + 8 * static_cast<size_t>(used_idx_ % size_);
    store32(e, head);
    store32(e + 4, written);
    ++used_idx_;
    store16(used_ + 2, used_idx_, std::memory_order_release); // the element before the index
}

void Virtqueue::push_used_deferred(uint16_t head, uint32_t written) {
    uint8_t* e = used_ + 4 + 8 * static_cast<size_t>(used_idx_ % size_);
    store32(e, head);
    store32(e + 4, written);
    ++used_idx_;
}

void Virtqueue::publish_used() {
    if (configured()) store16(used_ + 2, used_idx_, std::memory_order_release); // after the elements
}

bool Virtqueue::needs_interrupt() {
    if (!configured()) return false;
    publish_used();
    // Our used index must be visible before we read what the driver wants (2.7.10).
    std::atomic_thread_fence(std::memory_order_seq_cst);
    const uint16_t old_idx = signalled_used_, new_idx = used_idx_;
    signalled_used_ = new_idx;
    if (old_idx == new_idx) return false;
    if (event_idx_) return need_event(load16(avail_ + 4 + 2 * static_cast<size_t>(size_)), new_idx, old_idx);
    return !(load16(avail_) & kAvailFlagNoInterrupt);
}

void Virtqueue::suppress_kicks() {
    if (!configured()) return;
    // The driver kicks when its new index passes avail_event (need_event: avail_event in
    // [old, new)); one behind the next entry we take lies before any `old` it can have.
    if (event_idx_) store16(used_ + 4 + 8 * static_cast<size_t>(size_), static_cast<uint16_t>(last_avail_ - 1),
                            std::memory_order_relaxed);
    else store16(used_, kUsedFlagNoNotify, std::memory_order_relaxed);
}

bool Virtqueue::prepare_to_sleep() {
    if (!configured()) return false;
    if (event_idx_) store16(used_ + 4 + 8 * static_cast<size_t>(size_), last_avail_, std::memory_order_relaxed);
    else store16(used_, 0, std::memory_order_relaxed);
    // Publish avail_event before looking at the index again, or a buffer added in
    // between would get neither a kick nor our attention.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    return load_avail_idx() != last_avail_;
}

bool Virtqueue::prepare_to_wait_beyond(uint16_t seen) {
    if (!configured()) return false;
    if (event_idx_) store16(used_ + 4 + 8 * static_cast<size_t>(size_), seen, std::memory_order_relaxed);
    else store16(used_, 0, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    return load_avail_idx() != seen;
}

} // namespace kiln::virtio
