#include "devices/net/tap.hpp"

#include <fcntl.h>
#include <linux/ethtool.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <net/if.h> // ifreq, if_nametoindex (glibc's; not together with <linux/if.h>)
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include "vmm/base/file_io.hpp"

namespace kiln::net {
namespace {

constexpr const char* kTunDevice = "/dev/net/tun";

// Both through the network namespace of the calling thread (ioctls on a socket), not
// /sys/class/net, which shows the namespace sysfs was mounted in.
bool interface_exists(const std::string& name) { return ::if_nametoindex(name.c_str()) != 0; }

void copy_name(char (&dst)[IFNAMSIZ], const std::string& name) {
    std::memset(dst, 0, IFNAMSIZ);
    std::memcpy(dst, name.data(), std::min(name.size(), size_t{IFNAMSIZ - 1}));
}

// A socket for the interface ioctls (flags, bridge ports); closed when done.
Result<Fd> control_socket() {
    const int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return fail_errno("socket for network interface control");
    return Fd(s);
}

// The driver behind an interface ("tun" for a TAP), or "" when it cannot be asked.
std::string driver_of(const std::string& name) {
    auto sock = control_socket();
    if (!sock) return {};
    ethtool_drvinfo info{};
    info.cmd = ETHTOOL_GDRVINFO;
    ifreq ifr{};
    copy_name(ifr.ifr_name, name);
    ifr.ifr_data = reinterpret_cast<char*>(&info);
    if (::ioctl(sock->get(), SIOCETHTOOL, &ifr) != 0) return {};
    return info.driver;
}

Result<void> bring_up(const std::string& name) {
    auto sock = KILN_TRY(control_socket());
    ifreq ifr{};
    copy_name(ifr.ifr_name, name);
    if (::ioctl(sock.get(), SIOCGIFFLAGS, &ifr) != 0) return fail_errno(fmt::format("TAP '{}': reading its flags", name));
    if (ifr.ifr_flags & IFF_UP) return {};
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
    if (::ioctl(sock.get(), SIOCSIFFLAGS, &ifr) != 0) return fail_errno(fmt::format("TAP '{}': bringing it up", name));
    return {};
}

Result<void> add_to_bridge(const std::string& tap, const std::string& bridge) {
    if (!interface_exists(bridge)) return fail("bridge '{}' does not exist", bridge);
    auto sock = KILN_TRY(control_socket());
    ifreq ifr{};
    copy_name(ifr.ifr_name, bridge);
    ifr.ifr_ifindex = static_cast<int>(::if_nametoindex(tap.c_str()));
    if (ifr.ifr_ifindex == 0) return fail_errno(fmt::format("TAP '{}': finding its index", tap));
    if (::ioctl(sock.get(), SIOCBRADDIF, &ifr) != 0) {
        const int e = errno;
        if (e == EOPNOTSUPP || e == EINVAL) return fail("'{}' is a network interface but not a bridge", bridge);
        return fail_errno(fmt::format("adding TAP '{}' to bridge '{}'", tap, bridge), e);
    }
    return {};
}

} // namespace

Result<MacAddress> MacAddress::parse(std::string_view text) {
    MacAddress m;
    auto bad = [&] { return fail("MAC address '{}' is not six hex bytes like 52:54:00:12:34:56", text); };
    if (text.size() != 17) return bad();
    for (size_t i = 0; i < 6; ++i) {
        if (i > 0 && text[3 * i - 1] != ':') return bad();
        unsigned v = 0;
        for (size_t k = 0; k < 2; ++k) {
            const char c = text[3 * i + k];
            unsigned d;
            if (c >= '0' && c <= '9') d = static_cast<unsigned>(c - '0');
            else if (c >= 'a' && c <= 'f') d = static_cast<unsigned>(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') d = static_cast<unsigned>(c - 'A' + 10);
            else return bad();
            v = v * 16 + d;
        }
        m.bytes[i] = static_cast<uint8_t>(v);
    }
    if (m.is_multicast()) return fail("MAC address '{}' is a multicast address; a NIC needs a unicast one", text);
    if (m == MacAddress{}) return fail("MAC address '{}' is all zeros", text);
    return m;
}

MacAddress MacAddress::for_vm(std::string_view vm_name) {
    // FNV-1a over the name, five bytes of it after a fixed first byte: 0x52 is locally
    // administered (bit 1) and unicast (bit 0 clear), the prefix QEMU and KVM tools use.
    uint64_t h = 0xcbf29ce484222325ULL;
    for (char c : vm_name) {
        h ^= static_cast<uint8_t>(c);
        h *= 0x100000001b3ULL;
    }
    MacAddress m;
    m.bytes[0] = 0x52;
    for (size_t i = 1; i < 6; ++i) m.bytes[i] = static_cast<uint8_t>(h >> (8 * (i - 1)));
    return m;
}

std::string MacAddress::to_string() const {
    return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", bytes[0], bytes[1], bytes[2], bytes[3], bytes[4],
                       bytes[5]);
}

Result<Tap> Tap::open(const Options& o) {
    if (o.queues == 0 || o.queues > 256) return fail("a TAP with {} queues (1..256)", o.queues);
    if (o.name.size() >= IFNAMSIZ) return fail("TAP name '{}' is longer than {} characters", o.name, IFNAMSIZ - 1);
    Tap tap;
    tap.created_ = o.name.empty();
    if (!tap.created_) {
        if (!interface_exists(o.name))
            return fail("there is no TAP named '{}' (make one with 'ip tuntap add {} mode tap{}', or use tap=auto)",
                        o.name, o.name, o.queues > 1 ? " multi_queue" : "");
        if (driver_of(o.name) != "tun") return fail("network interface '{}' exists and is not a TAP", o.name);
    }
    short flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    if (o.queues > 1) flags |= IFF_MULTI_QUEUE;
    std::string name = o.name.empty() ? "kiln%d" : o.name;
    for (uint16_t q = 0; q < o.queues; ++q) {
        const int fd = ::open(kTunDevice, O_RDWR | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) {
            const int e = errno;
            if (e == ENOENT) return fail("{} is missing: load the tun module (modprobe tun)", kTunDevice);
            return fail_errno(fmt::format("opening {}", kTunDevice), e);
        }
        Fd f(fd);
        ifreq ifr{};
        copy_name(ifr.ifr_name, name);
        ifr.ifr_flags = flags;
        if (::ioctl(f.get(), TUNSETIFF, &ifr) != 0) {
            const int e = errno;
            if (e == EPERM)
                return fail("TAP '{}': permission denied (CAP_NET_ADMIN is needed to create a TAP, or to attach to one "
                            "another user owns)",
                            o.name.empty() ? std::string("kiln%d") : o.name);
            // The kernel takes the vnet_hdr and no-pi flags from whoever attaches; only
            // multi_queue must match how the TAP was made.
            if (e == EINVAL && !tap.created_)
                return fail("TAP '{}' was made {} multi_queue, which {} queues={} (recreate it with 'ip tuntap add {} "
                            "mode tap{}')",
                            o.name, o.queues > 1 ? "without" : "with", o.queues > 1 ? "needs" : "does not fit",
                            o.queues, o.name, o.queues > 1 ? " multi_queue" : "");
            if (e == EBUSY) return fail("TAP '{}' is in use by another process", o.name);
            return fail_errno(fmt::format("TAP '{}': TUNSETIFF", name), e);
        }
        name = ifr.ifr_name; // the kernel's choice for "kiln%d": the other queues join it
        tap.fds_.push_back(std::move(f));
    }
    tap.name_ = name;
    KILN_TRY(bring_up(tap.name_));
    if (!o.bridge.empty()) KILN_TRY(add_to_bridge(tap.name_, o.bridge));
    return tap;
}

bool Tap::is_multi_queue(const std::string& name) {
    // "0x1002\n"
    const auto text = read_text_file("/sys/class/net/" + name + "/tun_flags");
    if (!text) return false;
    std::string_view hex(*text);
    if (hex.starts_with("0x")) hex.remove_prefix(2);
    unsigned long flags = 0;
    if (std::from_chars(hex.data(), hex.data() + hex.size(), flags, 16).ec != std::errc()) return false;
    return flags & IFF_MULTI_QUEUE;
}

Result<void> Tap::set_vnet_header_size(int bytes) {
    for (auto& f : fds_)
        if (::ioctl(f.get(), TUNSETVNETHDRSZ, &bytes) != 0)
            return fail_errno(fmt::format("TAP '{}': setting a {}-byte virtio-net header", name_, bytes));
    return {};
}

Result<void> Tap::set_offload(unsigned tun_flags) {
    for (auto& f : fds_)
        if (::ioctl(f.get(), TUNSETOFFLOAD, static_cast<unsigned long>(tun_flags)) != 0)
            return fail_errno(fmt::format("TAP '{}': setting offloads {:#x}", name_, tun_flags));
    return {};
}

Result<void> Tap::set_queue_enabled(size_t q, bool enabled) {
    if (fds_.size() < 2) return {}; // a single-queue TAP has nothing to steer
    ifreq ifr{};
    ifr.ifr_flags = enabled ? IFF_ATTACH_QUEUE : IFF_DETACH_QUEUE;
    // EINVAL: the queue is in that state already.
    if (::ioctl(fds_.at(q).get(), TUNSETQUEUE, &ifr) != 0 && errno != EINVAL)
        return fail_errno(fmt::format("TAP '{}': {} queue {}", name_, enabled ? "attaching" : "detaching", q));
    return {};
}

Result<uint32_t> Tap::mtu() const {
    auto sock = KILN_TRY(control_socket());
    ifreq ifr{};
    copy_name(ifr.ifr_name, name_);
    if (::ioctl(sock.get(), SIOCGIFMTU, &ifr) != 0) return fail_errno(fmt::format("TAP '{}': reading its MTU", name_));
    return static_cast<uint32_t>(ifr.ifr_mtu);
}

} // namespace kiln::net
