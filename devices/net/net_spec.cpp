#include "devices/net/net_spec.hpp"

#include <charconv>
#include <net/if.h>

namespace kiln::net {

namespace {

Result<uint32_t> number(std::string_view key, std::string_view v, uint32_t lo, uint32_t hi) {
    uint32_t n = 0;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc() || p != v.data() + v.size() || n < lo || n > hi)
        return fail("{} must be a whole number from {} to {}, not '{}'", key, lo, hi, v);
    return n;
}

Result<NetSpec> parse(std::string_view text) {
    NetSpec spec;
    bool have_tap = false, seen_mac = false, seen_queues = false, seen_mtu = false;
    std::string_view rest = text;
    while (true) {
        const auto comma = rest.find(',');
        const std::string_view item = rest.substr(0, comma);
        const auto eq = item.find('=');
        if (item.empty()) return fail("an empty option");
        if (eq == std::string_view::npos) return fail("'{}' is not KEY=VALUE", item);
        const std::string_view key = item.substr(0, eq), value = item.substr(eq + 1);
        if (key == "tap") {
            if (have_tap) return fail("tap given twice");
            if (value.empty()) return fail("tap= needs a TAP's name, or auto");
            if (value.size() >= IFNAMSIZ) return fail("TAP name '{}' is longer than {} characters", value, IFNAMSIZ - 1);
            if (value != "auto") spec.tap = std::string(value);
            have_tap = true;
        } else if (key == "bridge") {
            if (!spec.bridge.empty()) return fail("bridge given twice");
            if (value.empty()) return fail("bridge= needs a bridge's name");
            spec.bridge = std::string(value);
        } else if (key == "mac") {
            if (seen_mac) return fail("mac given twice");
            auto mac = KILN_TRY_CTX(MacAddress::parse(value), "mac");
            if (mac.is_multicast()) return fail("mac {} is a multicast address", value);
            spec.mac = mac;
            seen_mac = true;
        } else if (key == "queues") {
            if (seen_queues) return fail("queues given twice");
            spec.queues = static_cast<uint16_t>(KILN_TRY(number(key, value, 1, 256)));
            seen_queues = true;
        } else if (key == "mtu") {
            if (seen_mtu) return fail("mtu given twice");
            spec.mtu = KILN_TRY(number(key, value, 68, 65535));
            seen_mtu = true;
        } else {
            return fail("unknown option '{}' (tap, bridge, mac, queues, mtu)", key);
        }
        if (comma == std::string_view::npos) break;
        rest = rest.substr(comma + 1);
    }
    if (!have_tap) return fail("tap=NAME or tap=auto is required");
    if (!spec.bridge.empty() && !spec.tap.empty())
        return fail("bridge= works with tap=auto only (add an existing TAP to a bridge yourself)");
    return spec;
}

} // namespace

Result<NetSpec> parse_net_spec(std::string_view text) {
    auto r = parse(text);
    if (!r) return std::unexpected(r.error().context(fmt::format("--net '{}'", text)));
    return r;
}

} // namespace kiln::net
