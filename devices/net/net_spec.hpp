// `--net tap=NAME|auto[,bridge=BR][,mac=XX:XX:XX:XX:XX:XX][,queues=N][,mtu=N]` (issue 4).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "devices/net/tap.hpp"
#include "vmm/base/result.hpp"

namespace kiln::net {

struct NetSpec {
    std::string tap;                // an existing TAP's name; empty: tap=auto
    std::string bridge;             // tap=auto only: add the new TAP to this bridge
    std::optional<MacAddress> mac;  // unset: derived from the VM's name (MacAddress::for_vm)
    uint16_t queues = 0;            // queue pairs; 0: one per vCPU
    uint32_t mtu = 0;               // 0: the TAP's own
    bool operator==(const NetSpec&) const = default;
};

// Every error names the spec and the offending key: "--net 'tap=x,queues=0': ...".
[[nodiscard]] Result<NetSpec> parse_net_spec(std::string_view text);

} // namespace kiln::net
