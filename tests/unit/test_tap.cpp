// The TAP backend and MAC addresses. The TAP cases run on a thread that has its own
// network namespace (unshare(CLONE_NEWNET) changes only the calling thread), so every
// interface they make or break lives and dies there; `ip` run from that thread inherits
// the namespace too.
#include <doctest/doctest.h>

#include <linux/if_tun.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "devices/net/tap.hpp"
#include "netns_thread.hpp"
#include "test_firmware_acpi_tools.hpp"

using namespace kiln;
using namespace kiln::net;

namespace {

bool sh(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()) == 0; }

std::string error_of(const Tap::Options& o) {
    auto t = Tap::open(o);
    return t ? std::string("(opened)") : t.error().message();
}

unsigned flags_of(const std::string& name) {
    const int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ifreq ifr{};
    std::snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name.c_str());
    const int rc = ::ioctl(s, SIOCGIFFLAGS, &ifr);
    ::close(s);
    return rc == 0 ? static_cast<unsigned short>(ifr.ifr_flags) : 0;
}

} // namespace

TEST_CASE("MAC addresses: parsing, formatting, and one stable address per VM name") {
    auto m = MacAddress::parse("52:54:00:AB:cd:0f");
    REQUIRE_MESSAGE(m, m.error().message());
    CHECK(m->to_string() == "52:54:00:ab:cd:0f");
    CHECK(m->is_locally_administered());
    CHECK_FALSE(m->is_multicast());
    CHECK_FALSE(MacAddress::parse("52:54:00:ab:cd"));
    CHECK_FALSE(MacAddress::parse("52-54-00-ab-cd-0f"));
    CHECK_FALSE(MacAddress::parse("52:54:00:ab:cd:0g"));
    CHECK(MacAddress::parse("01:00:5e:00:00:01").error().message().find("multicast") != std::string::npos);
    CHECK(MacAddress::parse("00:00:00:00:00:00").error().message().find("all zeros") != std::string::npos);

    const auto a = MacAddress::for_vm("worker-0001"), b = MacAddress::for_vm("worker-0002");
    CHECK(a == MacAddress::for_vm("worker-0001"));
    CHECK_FALSE(a == b);
    for (const auto& x : {a, b}) {
        CHECK(x.bytes[0] == 0x52);
        CHECK(x.is_locally_administered());
        CHECK_FALSE(x.is_multicast());
    }
}

TEST_CASE("TAP: created, multiqueue, up, with a virtio-net header and offloads - gone with its fds") {
    test::run_in_netns([](std::vector<std::string>& f) {
        std::string name;
        {
            auto t = Tap::open({"", 4, ""});
            if (!t) {
                f.push_back("open: " + t.error().message());
                return;
            }
            name = t->name();
            EXPECT(name.rfind("kiln", 0) == 0);
            EXPECT(t->created());
            EXPECT(t->queues() == 4);
            EXPECT(::if_nametoindex(name.c_str()) != 0);
            EXPECT(flags_of(name) & IFF_UP);
            EXPECT(t->set_vnet_header_size(12).has_value());
            int hdr = 0;
            EXPECT(::ioctl(t->fd(3), TUNGETVNETHDRSZ, &hdr) == 0 && hdr == 12);
            EXPECT(t->set_offload(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6).has_value());
            // The name is taken now: a second VM asking for it by name gets the busy
            // queue error only if it is single-queue; a new auto TAP gets another name.
            auto other = Tap::open({"", 1, ""});
            EXPECT(other && other->name() != name);
        }
        EXPECT(::if_nametoindex(name.c_str()) == 0); // not persistent: gone with the fds
    });
}

TEST_CASE("TAP: an existing TAP, a bridge, and one clear line for each mistake") {
    test::run_in_netns([](std::vector<std::string>& f) {
        EXPECT(sh("ip tuntap add kt0 mode tap vnet_hdr"));
        EXPECT(sh("ip tuntap add kt1 mode tap")); // single-queue
        EXPECT(sh("ip link add kbr0 type bridge"));
        {
            auto t = Tap::open({"kt0", 1, "kbr0"});
            EXPECT(t.has_value());
            if (t) {
                EXPECT(!t->created());
                EXPECT(t->name() == "kt0");
                EXPECT(sh("test \"$(ip -o link show kt0 | grep -c 'master kbr0')\" = 1"));
            }
        }
        EXPECT(::if_nametoindex("kt0") != 0); // someone else's TAP stays
        EXPECT(error_of({"nosuch0", 1, ""}).find("there is no TAP named 'nosuch0'") == 0);
        EXPECT(error_of({"lo", 1, ""}) == "network interface 'lo' exists and is not a TAP");
        EXPECT(error_of({"kt1", 2, ""}) == "TAP 'kt1' was made without multi_queue, which needs queues=2 "
                                            "(recreate it with 'ip tuntap add kt1 mode tap multi_queue')");
        EXPECT(Tap::open({"kt1", 1, ""}).has_value());
        EXPECT(error_of({"", 1, "nobridge0"}) == "bridge 'nobridge0' does not exist");
        EXPECT(error_of({"", 1, "lo"}) == "'lo' is a network interface but not a bridge");
        EXPECT(error_of({"a-very-long-tap-name", 1, ""}).find("longer than 15 characters") != std::string::npos);
        EXPECT(error_of({"", 0, ""}) == "a TAP with 0 queues (1..256)");
    });
}
