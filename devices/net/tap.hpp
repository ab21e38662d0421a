// A Linux TAP interface as a virtio-net backend: one fd per queue pair
// (IFF_MULTI_QUEUE), frames prefixed with the virtio-net header (IFF_VNET_HDR, its size
// set with TUNSETVNETHDRSZ), offloads the guest negotiated passed on with TUNSETOFFLOAD.
//
// Two ways to get one (`--net tap=NAME` / `--net tap=auto[,bridge=BR]`, issue 4):
// attach to an existing TAP the administrator made, or create one Kiln names
// ("kiln%d"). A TAP Kiln creates is not persistent: the kernel removes it when the last
// queue fd closes, so it goes with the VMM however the VMM ends (kill -9 included).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "vmm/base/fd.hpp"
#include "vmm/base/result.hpp"

namespace kiln::net {

// An Ethernet address. for_vm() derives a stable, locally administered, unicast address
// from a VM's name (the same name gives the same MAC on every host and every run, so a
// batch farm's DHCP leases and firewall rules can follow it).
struct MacAddress {
    std::array<uint8_t, 6> bytes{};

    [[nodiscard]] static Result<MacAddress> parse(std::string_view text); // "52:54:00:12:34:56"
    [[nodiscard]] static MacAddress for_vm(std::string_view vm_name);
    [[nodiscard]] std::string to_string() const;
    [[nodiscard]] bool is_multicast() const { return bytes[0] & 1; }
    [[nodiscard]] bool is_locally_administered() const { return bytes[0] & 2; }
    bool operator==(const MacAddress&) const = default;
};

class Tap {
public:
    struct Options {
        std::string name;      // an existing TAP's name, or empty: create "kiln%d"
        uint16_t queues = 1;   // queue pairs: one fd each (IFF_MULTI_QUEUE when > 1)
        std::string bridge;    // non-empty: add the interface to this bridge
    };
    // Opens or creates the TAP, sets the virtio-net header size, brings it up and, if
    // asked, enslaves it to the bridge. One clear line on failure: /dev/net/tun missing,
    // the name in use by something that is not a TAP, no permission, no such bridge.
    [[nodiscard]] static Result<Tap> open(const Options& options);
    // Whether an existing TAP was made with multi_queue (/sys/class/net/NAME/tun_flags);
    // false when that cannot be read.
    [[nodiscard]] static bool is_multi_queue(const std::string& name);

    [[nodiscard]] const std::string& name() const { return name_; }
    [[nodiscard]] bool created() const { return created_; }
    [[nodiscard]] size_t queues() const { return fds_.size(); }
    [[nodiscard]] int fd(size_t queue) const { return fds_[queue].get(); }

    // The virtio-net header every frame carries (12 bytes for virtio 1.x: with
    // num_buffers). Applies to all queues.
    [[nodiscard]] Result<void> set_vnet_header_size(int bytes);
    // TUN_F_* flags (checksum, TSO4/6, ECN, UFO) the guest can take in received frames.
    [[nodiscard]] Result<void> set_offload(unsigned tun_flags);
    // Multi-queue TAPs: whether the kernel steers frames to queue `q` (TUNSETQUEUE). A
    // queue pair the guest does not use must be detached, or the frames the kernel
    // hashes to it would wait there for ever.
    [[nodiscard]] Result<void> set_queue_enabled(size_t q, bool enabled);
    // The interface's MTU (SIOCGIFMTU).
    [[nodiscard]] Result<uint32_t> mtu() const;

private:
    Tap() = default;
    std::string name_;
    bool created_ = false;
    std::vector<Fd> fds_;
};

} // namespace kiln::net
