// Network tests inside a network namespace the test creates, so all their traffic stays
// there and tests can run in parallel: NetNamespace (ip netns add/del, loopback up, TAPs
// and bridges with addresses, commands run inside it to completion or in the
// background, sockets made inside it) and UdpClient (send a datagram from inside the
// namespace, read the reply with a timeout). Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN),
// `ip` and /dev/net/tun.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tests/support/process.hpp"

namespace kiln::test {

class NetNamespace {
public:
    // `ip netns add kiln-t<pid>-<n>`, loopback up. Namespaces of earlier test runs whose
    // process is gone (killed with -9) are deleted first.
    NetNamespace();
    // `ip netns del`: the namespace and every interface in it go once its last process
    // has ended (a Background inside it must be destroyed first: declare it after).
    ~NetNamespace();
    NetNamespace(const NetNamespace&) = delete;
    NetNamespace& operator=(const NetNamespace&) = delete;

    [[nodiscard]] const std::string& name() const { return name_; }

    // An interface name unique to this process and namespace, at most 15 characters:
    // prefix + pid + '-' + a counter ("kt" -> "kt12345-0").
    [[nodiscard]] std::string unique_ifname(const std::string& prefix) const;
    // A TAP (`ip tuntap add dev NAME mode tap [multi_queue]`) with the address `cidr`
    // ("10.77.0.1/24"; none when empty), up.
    void add_tap(const std::string& name, const std::string& cidr, bool multi_queue = false) const;
    // A bridge with the address `cidr`, up.
    void add_bridge(const std::string& name, const std::string& cidr) const;

    // {"ip", "netns", "exec", NAME}: a prefix for argv (run_process, Background).
    [[nodiscard]] std::vector<std::string> exec_prefix() const;
    // argv run inside the namespace, to completion.
    ProcessResult exec(const std::vector<std::string>& argv, const ProcessOptions& opt = {}) const;
    // `ip -n NAME args...`; REQUIREs success, returns stdout.
    std::string ip(const std::vector<std::string>& args) const;

    // The namespace's interface names, and one interface's `ip -d link show` (empty when
    // there is no such interface).
    [[nodiscard]] std::vector<std::string> links() const;
    [[nodiscard]] std::string link_details(const std::string& ifname) const;
    // `ping -c COUNT -i 0.2 -W 2 ADDR` inside: the number of replies.
    int ping(const std::string& addr, int count) const;

    // A socket(2) created inside the namespace (by a thread that setns(2)s into it; the
    // socket stays there whichever thread uses it). The caller closes it.
    [[nodiscard]] int socket(int domain, int type) const;

private:
    std::string name_;
};

// A connected UDP socket inside a namespace, for echo round trips.
class UdpClient {
public:
    UdpClient(const NetNamespace& ns, const std::string& addr, uint16_t port);
    ~UdpClient();
    UdpClient(const UdpClient&) = delete;
    UdpClient& operator=(const UdpClient&) = delete;

    // Sends `payload` and returns the first datagram that comes back within `timeout`,
    // or nothing. Replies to earlier requests still queued are discarded first.
    std::optional<std::vector<uint8_t>> echo(const std::vector<uint8_t>& payload,
                                             std::chrono::milliseconds timeout = std::chrono::seconds(1));

private:
    int fd_ = -1;
};

} // namespace kiln::test
