#include "vmm/bus/bus.hpp"

#include <algorithm>

namespace kiln {

Result<void> Bus::insert(BusDevice& device, uint64_t base, uint64_t size, std::string name) {
    if (size == 0) return fail("{} bus: device '{}' has an empty range", name_, name);
    uint64_t last;
    if (__builtin_add_overflow(base, size - 1, &last))
        return fail("{} bus: device '{}' range {:#x}+{:#x} overflows", name_, name, base, size);
    auto it = std::lower_bound(ranges_.begin(), ranges_.end(), base,
                               [](const Range& r, uint64_t b) { return r.base < b; });
    // Only the neighbours on each side can overlap a sorted, disjoint list.
    if (it != ranges_.end() && it->base <= last)
        return fail("{} bus: device '{}' [{:#x}, {:#x}] overlaps '{}' [{:#x}, {:#x}]", name_, name,
                    base, last, it->name, it->base, it->last());
    if (it != ranges_.begin()) {
        const Range& prev = *std::prev(it);
        if (prev.last() >= base)
            return fail("{} bus: device '{}' [{:#x}, {:#x}] overlaps '{}' [{:#x}, {:#x}]", name_,
                        name, base, last, prev.name, prev.base, prev.last());
    }
    ranges_.insert(it, Range{base, size, &device, std::move(name)});
    return {};
}

const Bus::Range* Bus::find(uint64_t addr, uint64_t len) const {
    if (len == 0) return nullptr;
    auto it = std::upper_bound(ranges_.begin(), ranges_.end(), addr,
                               [](uint64_t a, const Range& r) { return a < r.base; });
    if (it == ranges_.begin()) return nullptr;
    const Range& r = *std::prev(it);
    uint64_t last;
    if (__builtin_add_overflow(addr, len - 1, &last)) return nullptr;
    if (addr > r.last() || last > r.last()) return nullptr;
    return &r;
}

bool Bus::read(uint64_t addr, std::span<uint8_t> data) const {
    const Range* r = find(addr, data.size());
    if (!r) return false;
    r->device->read(addr - r->base, data);
    return true;
}

bool Bus::write(uint64_t addr, std::span<const uint8_t> data) const {
    const Range* r = find(addr, data.size());
    if (!r) return false;
    r->device->write(addr - r->base, data);
    return true;
}

} // namespace kiln
