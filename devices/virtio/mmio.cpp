#include "devices/virtio/mmio.hpp"

#include "devices/virtio/spec.hpp"

#include <cstring>

#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <spdlog/spdlog.h>

namespace kiln::virtio {
namespace {

constexpr uint32_t kMagic = 0x74726976; // "virt"
constexpr uint32_t kVersion = 2;        // virtio 1.x register layout (not legacy)

void set_low(uint64_t& v, uint32_t lo) { v = (v & ~0xffffffffULL) | lo; }
void set_high(uint64_t& v, uint32_t hi) { v = (v & 0xffffffffULL) | (static_cast<uint64_t>(hi) << 32); }

} // namespace

Result<std::unique_ptr<MmioTransport>> MmioTransport::create(std::unique_ptr<Device> device, const GuestMemory& mem,
                                                            IrqLine& irq) {
    std::vector<Queue> queues;
    queues.reserve(device->num_queues());
    for (uint16_t i = 0; i < device->num_queues(); ++i)
        queues.emplace_back(KILN_TRY_CTX(EventFd::create(), "{} queue {} notifier", device->name(), i));
    return std::unique_ptr<MmioTransport>(new MmioTransport(std::move(device), mem, irq, std::move(queues)));
}

MmioTransport::MmioTransport(std::unique_ptr<Device> device, const GuestMemory& mem, IrqLine& irq,
                             std::vector<Queue> queues)
    : device_(std::move(device)), mem_(mem), irq_(irq), queues_(std::move(queues)) {}

MmioTransport::~MmioTransport() { device_->reset(); }

void MmioTransport::read(uint64_t offset, std::span<uint8_t> data) {
    if (offset >= VIRTIO_MMIO_CONFIG) {
        device_->read_config(offset - VIRTIO_MMIO_CONFIG, data);
        return;
    }
    // Registers are 32 bits wide and accessed as such (4.2.2.2); anything else reads 0.
    std::memset(data.data(), 0, data.size());
    if (data.size() != 4 || offset % 4) return;
    std::lock_guard lk(mu_);
    const uint32_t v = read_register(offset);
    std::memcpy(data.data(), &v, 4);
}

void MmioTransport::write(uint64_t offset, std::span<const uint8_t> data) {
    if (offset >= VIRTIO_MMIO_CONFIG) {
        device_->write_config(offset - VIRTIO_MMIO_CONFIG, data);
        return;
    }
    if (data.size() != 4 || offset % 4) {
        spdlog::debug("{}: ignored {}-byte write at register {:#x}", device_->name(), data.size(), offset);
        return;
    }
    uint32_t v;
    std::memcpy(&v, data.data(), 4);
    std::lock_guard lk(mu_);
    write_register(offset, v);
}

uint32_t MmioTransport::read_register(uint64_t offset) {
    switch (offset) {
    case VIRTIO_MMIO_MAGIC_VALUE: return kMagic;
    case VIRTIO_MMIO_VERSION: return kVersion;
    case VIRTIO_MMIO_DEVICE_ID: return device_->device_id();
    case VIRTIO_MMIO_VENDOR_ID: return kMmioVendorId;
    case VIRTIO_MMIO_DEVICE_FEATURES: {
        const uint64_t f = device_->device_features();
        if (device_features_sel_ == 0) return static_cast<uint32_t>(f);
        if (device_features_sel_ == 1) return static_cast<uint32_t>(f >> 32);
        return 0;
    }
    case VIRTIO_MMIO_QUEUE_NUM_MAX: return selected() ? kMaxQueueSize : 0;
    case VIRTIO_MMIO_QUEUE_READY: return selected() && selected()->ready ? 1 : 0;
    case VIRTIO_MMIO_INTERRUPT_STATUS: return interrupt_status_.load(std::memory_order_acquire);
    case VIRTIO_MMIO_STATUS: return status_.load(std::memory_order_acquire);
    case VIRTIO_MMIO_CONFIG_GENERATION: return config_generation_.load(std::memory_order_acquire);
    default: return 0; // write-only registers and unused offsets read as zero
    }
}

void MmioTransport::write_register(uint64_t offset, uint32_t v) {
    const uint32_t status = status_.load(std::memory_order_acquire);
    Queue* q = selected();
    // Queue layout registers may change only while the queue is not ready (4.2.2.3.2).
    const bool queue_writable = q && !q->ready;
    switch (offset) {
    case VIRTIO_MMIO_DEVICE_FEATURES_SEL: device_features_sel_ = v; break;
    case VIRTIO_MMIO_DRIVER_FEATURES_SEL: driver_features_sel_ = v; break;
    case VIRTIO_MMIO_DRIVER_FEATURES:
        if ((status & VIRTIO_CONFIG_S_FEATURES_OK) || driver_features_sel_ > 1) break;
        if (driver_features_sel_ == 0) set_low(driver_features_, v);
        else set_high(driver_features_, v);
        break;
    case VIRTIO_MMIO_QUEUE_SEL: queue_sel_ = v; break;
    case VIRTIO_MMIO_QUEUE_NUM:
        if (queue_writable) q->num = static_cast<uint16_t>(std::min<uint32_t>(v, 0xffff));
        break;
    case VIRTIO_MMIO_QUEUE_READY:
        if (q) set_queue_ready(*q, v & 1);
        break;
    case VIRTIO_MMIO_QUEUE_NOTIFY:
        // Only reached without an ioeventfd for this queue.
        if (v < queues_.size()) queues_[v].kick.signal();
        break;
    case VIRTIO_MMIO_INTERRUPT_ACK: interrupt_status_.fetch_and(~v, std::memory_order_acq_rel); break;
    case VIRTIO_MMIO_STATUS: write_status(v); break;
    case VIRTIO_MMIO_QUEUE_DESC_LOW: if (queue_writable) set_low(q->desc, v); break;
    case VIRTIO_MMIO_QUEUE_DESC_HIGH: if (queue_writable) set_high(q->desc, v); break;
    case VIRTIO_MMIO_QUEUE_AVAIL_LOW: if (queue_writable) set_low(q->avail, v); break;
    case VIRTIO_MMIO_QUEUE_AVAIL_HIGH: if (queue_writable) set_high(q->avail, v); break;
    case VIRTIO_MMIO_QUEUE_USED_LOW: if (queue_writable) set_low(q->used, v); break;
    case VIRTIO_MMIO_QUEUE_USED_HIGH: if (queue_writable) set_high(q->used, v); break;
    default:
        spdlog::debug("{}: ignored write of {:#x} to register {:#x}", device_->name(), v, offset);
    }
}

void MmioTransport::set_queue_ready(Queue& q, bool ready) {
    if (!ready) {
        // Taking a queue away from a running device is a reset of that queue, which this
        // transport does not offer (no VIRTIO_F_RING_RESET): only before DRIVER_OK.
        if (!active_) {
            q.ready = false;
            q.vq.reset();
        }
        return;
    }
    if (q.ready) return;
    const bool event_idx = driver_features_ & feature(kFeatureEventIdx);
    const bool indirect = driver_features_ & feature(kFeatureIndirectDesc);
    auto r = q.vq.configure(mem_, {q.num, q.desc, q.avail, q.used}, event_idx, indirect);
    if (!r) {
        spdlog::warn("{}: queue {} not usable: {}", device_->name(), &q - queues_.data(), r.error().message());
        needs_reset(fmt::format("queue {} not usable: {}", &q - queues_.data(), r.error().message()));
        return;
    }
    q.ready = true;
}

void MmioTransport::write_status(uint32_t v) {
    if (v == 0) {
        reset_locked();
        return;
    }
    uint32_t old = status_.load(std::memory_order_acquire);
    // FEATURES_OK sticks only if the driver accepted a subset of what we offer and
    // speaks virtio 1.x (3.1.1); otherwise the driver sees it clear and gives up.
    if ((v & VIRTIO_CONFIG_S_FEATURES_OK) && !(old & VIRTIO_CONFIG_S_FEATURES_OK)) {
        const uint64_t offered = device_->device_features();
        if ((driver_features_ & ~offered) || !(driver_features_ & feature(kFeatureVersion1))) {
            spdlog::warn("{}: driver features {:#x} refused (offered {:#x})", device_->name(), driver_features_,
                         offered);
            v &= ~VIRTIO_CONFIG_S_FEATURES_OK;
        }
    }
    // Bits the device owns (NEEDS_RESET) survive the driver's write.
    v |= old & VIRTIO_CONFIG_S_NEEDS_RESET;
    status_.store(v, std::memory_order_release);
    if ((v & VIRTIO_CONFIG_S_DRIVER_OK) && !(old & VIRTIO_CONFIG_S_DRIVER_OK) && !active_) {
        if (!(v & VIRTIO_CONFIG_S_FEATURES_OK)) {
            spdlog::warn("{}: DRIVER_OK without FEATURES_OK", device_->name());
            needs_reset("the driver set DRIVER_OK without FEATURES_OK");
            return;
        }
        std::vector<QueueBinding> bindings(queues_.size());
        for (size_t i = 0; i < queues_.size(); ++i)
            if (queues_[i].ready) bindings[i] = {&queues_[i].vq, queues_[i].kick.get()};
        if (auto r = device_->activate(mem_, driver_features_, bindings, *this); !r) {
            spdlog::error("{}: cannot start: {}", device_->name(), r.error().message());
            needs_reset(fmt::format("cannot start: {}", r.error().message()));
            return;
        }
        active_ = true;
    }
}

void MmioTransport::reset_locked() {
    device_->reset(); // joins the device's workers: no queue is touched after this
    active_ = false;
    for (auto& q : queues_) {
        q.vq.reset();
        q.ready = false;
        q.num = 0;
        q.desc = q.avail = q.used = 0;
        q.kick.consume();
    }
    device_features_sel_ = driver_features_sel_ = queue_sel_ = 0;
    driver_features_ = 0;
    interrupt_status_.store(0, std::memory_order_release);
    status_.store(0, std::memory_order_release);
}

void MmioTransport::used_buffers() {
    interrupt_status_.fetch_or(VIRTIO_MMIO_INT_VRING, std::memory_order_acq_rel);
    irq_.trigger();
}

void MmioTransport::config_changed() {
    config_generation_.fetch_add(1, std::memory_order_acq_rel);
    interrupt_status_.fetch_or(VIRTIO_MMIO_INT_CONFIG, std::memory_order_acq_rel);
    irq_.trigger();
}

void MmioTransport::needs_reset(std::string_view why) {
    const uint32_t old = status_.fetch_or(VIRTIO_CONFIG_S_NEEDS_RESET, std::memory_order_acq_rel);
    config_changed();
    if (!(old & VIRTIO_CONFIG_S_NEEDS_RESET) && error_sink_)
        error_sink_(fmt::format("{}: {} (the device needs a reset)", device_->name(), why));
}

} // namespace kiln::virtio
