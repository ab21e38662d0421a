// virtio-net constants and layouts (virtio 1.2, section 5.1) that Kiln uses.
// (<linux/virtio_net.h> has them too, but names a struct field `class`: not C++.)
#pragma once

#include <cstddef>
#include <cstdint>

namespace kiln::virtio::netspec {

// Feature bits (5.1.3).
inline constexpr unsigned kCsum = 0;        // device takes partial checksums
inline constexpr unsigned kGuestCsum = 1;   // driver takes partial checksums
inline constexpr unsigned kMtu = 3;
inline constexpr unsigned kMac = 5;
inline constexpr unsigned kGuestTso4 = 7;
inline constexpr unsigned kGuestTso6 = 8;
inline constexpr unsigned kHostTso4 = 11;
inline constexpr unsigned kHostTso6 = 12;
inline constexpr unsigned kMrgRxbuf = 15;
inline constexpr unsigned kStatus = 16;
inline constexpr unsigned kCtrlVq = 17;
inline constexpr unsigned kMq = 22;

inline constexpr uint16_t kStatusLinkUp = 1;

// struct virtio_net_config (5.1.4), the fields up to mtu.
inline constexpr size_t kConfigMac = 0;
inline constexpr size_t kConfigStatus = 6;
inline constexpr size_t kConfigMaxPairs = 8;
inline constexpr size_t kConfigMtu = 10;
inline constexpr size_t kConfigSize = 12;

// struct virtio_net_hdr (5.1.6), 12 bytes in virtio 1.x: num_buffers is always there.
inline constexpr uint32_t kHdrSize = 12;
inline constexpr size_t kHdrNumBuffers = 10;

// The control queue (5.1.6.5).
inline constexpr uint8_t kCtrlOk = 0;
inline constexpr uint8_t kCtrlErr = 1;
inline constexpr uint8_t kCtrlClassMq = 4;
inline constexpr uint8_t kCtrlMqVqPairsSet = 0;

} // namespace kiln::virtio::netspec
