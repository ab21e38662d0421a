// Constants of the virtio 1.2 split ring that Kiln uses. (<linux/virtio_ring.h> has them
// too, but its inline helpers are C that does not compile as C++.)
#pragma once

#include <cstdint>

namespace kiln::virtio {

inline constexpr uint16_t kDescFlagNext = 1;      // VRING_DESC_F_NEXT
inline constexpr uint16_t kDescFlagWrite = 2;     // VRING_DESC_F_WRITE: device-writable
inline constexpr uint16_t kDescFlagIndirect = 4;  // VRING_DESC_F_INDIRECT
inline constexpr uint16_t kAvailFlagNoInterrupt = 1; // VRING_AVAIL_F_NO_INTERRUPT
inline constexpr uint16_t kUsedFlagNoNotify = 1;     // VRING_USED_F_NO_NOTIFY

// Feature bits (virtio 1.2, section 6).
inline constexpr unsigned kFeatureIndirectDesc = 28; // VIRTIO_RING_F_INDIRECT_DESC
inline constexpr unsigned kFeatureEventIdx = 29;     // VIRTIO_RING_F_EVENT_IDX
inline constexpr unsigned kFeatureVersion1 = 32;     // VIRTIO_F_VERSION_1

[[nodiscard]] constexpr uint64_t feature(unsigned bit) { return 1ULL << bit; }

} // namespace kiln::virtio
