// virtio-net (issue 4, item 4) on the real host: kiln inside a network namespace each
// test makes (tests/support/netns.hpp), with a TAP in it, so all traffic stays there and
// tests can run in parallel; the test guest's job=net-echo on the other side. Also the
// harness itself (namespace, TAP, sockets inside, Background inside, cleanup), which
// needs no kiln device.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <csignal>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "tests/support/background.hpp"
#include "tests/support/files.hpp"
#include "tests/support/netns.hpp"
#include "tests/support/process.hpp"

using namespace kiln::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* kHostIp = "10.77.0.1";
constexpr const char* kGuestIp = "10.77.0.2";
constexpr const char* kReady = "net-echo: mac=";

// `kiln run` of the test guest with --net SPEC inside the namespace. --timeout bounds a
// guest that never ends; the tests stop it with SIGTERM (kiln: 143) once done.
std::vector<std::string> kiln_net(const NetNamespace& ns, const std::string& spec, const std::string& cmdline) {
    return kiln_argv({"run", "--kernel", TESTGUEST_ELF, "--memory", "128M", "--timeout", "120", "--net", spec,
                      "--cmdline", cmdline},
                     ns.exec_prefix());
}

std::string echo_job() { return fmt::format("job=net-echo ip={}", kGuestIp); }

// Waits for the guest's ready line; on failure shows what kiln printed.
void require_ready(Background& vm) {
    const bool ready = vm.wait_for_output(kReady, 30s);
    if (!ready) {
        vm.signal(SIGKILL);
        vm.wait();
    }
    INFO("stdout: " << vm.out());
    INFO("stderr: " << vm.err());
    REQUIRE(ready);
}

// Stops kiln with SIGTERM: it stops the VM cleanly and exits 143.
void stop(Background& vm) {
    vm.signal(SIGTERM);
    INFO("stderr: " << vm.err());
    CHECK(vm.wait(30s) == 143);
}

// A TAP with the host side's address: its name.
std::string host_tap(const NetNamespace& ns) {
    const std::string tap = ns.unique_ifname("kt");
    ns.add_tap(tap, fmt::format("{}/24", kHostIp));
    return tap;
}

// The kiln<N> interfaces `--net tap=auto` made in the namespace.
std::vector<std::string> auto_taps(const NetNamespace& ns) {
    std::vector<std::string> out;
    for (const auto& l : ns.links())
        if (std::regex_match(l, std::regex(R"(kiln\d+)"))) out.push_back(l);
    return out;
}

// Once the guest is ready: the one kiln<N> TAP its kiln made.
std::string ready_auto_tap(Background& vm, const NetNamespace& ns) {
    require_ready(vm);
    const auto taps = auto_taps(ns);
    REQUIRE(taps.size() == 1);
    return taps[0];
}

// True once no kiln<N> interface is left (the TAP goes when its last fd is closed).
bool auto_taps_gone(const NetNamespace& ns) {
    for (int i = 0; i < 100; ++i) {
        if (auto_taps(ns).empty()) return true;
        std::this_thread::sleep_for(50ms);
    }
    return false;
}

// One line on stderr, "kiln: error: ...", and status 125.
void check_one_line_error(const ProcessResult& r, const std::string& mentions) {
    INFO("stderr: " << r.err);
    CHECK(r.exit_code == 125);
    CHECK(r.err.rfind("kiln: error: ", 0) == 0);
    CHECK(r.err.find('\n') == r.err.size() - 1);
    CHECK(r.err.find(mentions) != std::string::npos);
}

} // namespace

// ---------------------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------------------
TEST_CASE("netns harness: namespace, TAP, commands and sockets inside it, and cleanup") {
    std::string name;
    {
        NetNamespace ns;
        name = ns.name();
        CHECK(run_process({"ip", "netns", "list"}).out.find(name) != std::string::npos);
        const std::string tap = ns.unique_ifname("kt");
        ns.add_tap(tap, fmt::format("{}/24", kHostIp));
        const auto links = ns.links();
        CHECK(std::find(links.begin(), links.end(), tap) != links.end());
        CHECK(ns.link_details(tap).find("tun type tap") != std::string::npos);
        CHECK(ns.link_details("kiln-no-such").empty());
        CHECK(ns.ping(kHostIp, 2) == 2); // its own address, through the namespace's loopback

        // A UDP echo server on the TAP's address: binding it proves the socket is inside
        // the namespace (the address exists nowhere else).
        const int server = ns.socket(AF_INET, SOCK_DGRAM);
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_port = htons(7007);
        ::inet_pton(AF_INET, kHostIp, &sa.sin_addr);
        REQUIRE(::bind(server, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
        std::thread echo([server] {
            std::vector<uint8_t> buf(65536);
            for (int i = 0; i < 3; ++i) {
                pollfd p{server, POLLIN, 0};
                if (::poll(&p, 1, 5000) <= 0) return;
                sockaddr_in from{};
                socklen_t fl = sizeof from;
                const ssize_t n = ::recvfrom(server, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from), &fl);
                if (n >= 0) ::sendto(server, buf.data(), static_cast<size_t>(n), 0, reinterpret_cast<sockaddr*>(&from), fl);
            }
        });
        {
            UdpClient client(ns, kHostIp, 7007);
            for (size_t n : {1u, 100u, 1472u}) {
                const auto payload = random_bytes(n, static_cast<unsigned>(n));
                CHECK(client.echo(payload, 2s) == payload);
            }
        }
        echo.join();
        ::close(server);
        UdpClient nobody(ns, kHostIp, 7008);
        CHECK_FALSE(nobody.echo({1, 2, 3}, 200ms).has_value());

        // A background process inside the namespace, its output read while it runs.
        auto argv = ns.exec_prefix();
        argv.insert(argv.end(), {"sh", "-c", "echo to-stderr >&2; readlink /proc/self/ns/net; exec sleep 30"});
        Background bg(argv);
        // (stderr is written first: once stdout has its line, both are there to check)
        REQUIRE(bg.wait_for_output("net:[", 10s));
        char self[64] = {};
        REQUIRE(::readlink("/proc/self/ns/net", self, sizeof self - 1) > 0);
        CHECK(bg.out().find(self) == std::string::npos);
        CHECK(bg.running());
        bg.signal(SIGKILL);
        CHECK(bg.wait() == -1);
        CHECK(bg.term_signal() == SIGKILL);
        CHECK(bg.err() == "to-stderr\n");
    }
    CHECK(run_process({"ip", "netns", "list"}).out.find(name) == std::string::npos);
}

// ---------------------------------------------------------------------------------------
// kiln --net
// ---------------------------------------------------------------------------------------
TEST_CASE("virtio-net: ping -c 5 from the host side of the TAP gets 5 replies") {
    NetNamespace ns;
    Background vm(kiln_net(ns, "tap=" + host_tap(ns), echo_job()));
    require_ready(vm);
    CHECK(ns.ping(kGuestIp, 5) == 5);
    stop(vm);
}

TEST_CASE("virtio-net: UDP echo is byte-exact for every size from 1 to 1472") {
    NetNamespace ns;
    Background vm(kiln_net(ns, "tap=" + host_tap(ns), echo_job()));
    require_ready(vm);
    UdpClient client(ns, kGuestIp, 7);
    int wrong = 0, retries = 0;
    std::string first_wrong;
    for (size_t n = 1; n <= 1472; ++n) {
        const auto payload = random_bytes(n, static_cast<unsigned>(n));
        std::optional<std::vector<uint8_t>> reply;
        // UDP may lose a datagram (the first ones wait for ARP); a wrong reply is a failure.
        for (int attempt = 0; attempt < 3 && !reply; ++attempt, retries += !reply)
            reply = client.echo(payload, 1s);
        if (reply != payload) {
            if (!wrong++)
                first_wrong = fmt::format("size {}: {}", n,
                                          reply ? fmt::format("{} bytes came back", reply->size()) : "no reply");
        }
    }
    INFO("first wrong: " << first_wrong << "; timeouts retried: " << retries);
    CHECK(wrong == 0);
    CHECK(retries <= 3);
    stop(vm);
}

TEST_CASE("virtio-net: --net tap=auto makes a kiln<N> TAP that is gone when kiln exits") {
    NetNamespace ns;
    REQUIRE(auto_taps(ns).empty());
    Background vm(kiln_net(ns, "tap=auto", fmt::format("job=net-echo ip={} seconds=2", kGuestIp)));
    CHECK(ns.link_details(ready_auto_tap(vm, ns)).find("tun type tap") != std::string::npos);
    INFO("stderr: " << vm.err());
    CHECK(vm.wait(30s) == 0); // net-echo seconds=2 ends by itself
    CHECK(auto_taps_gone(ns));
}

TEST_CASE("virtio-net: --net tap=auto's TAP is gone after kill -9 too") {
    NetNamespace ns;
    Background vm(kiln_net(ns, "tap=auto", echo_job()));
    ready_auto_tap(vm, ns);
    vm.signal(SIGKILL);
    vm.wait();
    CHECK(vm.term_signal() == SIGKILL);
    CHECK(auto_taps_gone(ns));
}

TEST_CASE("virtio-net: --net tap=auto,bridge=BR puts the TAP on the bridge, and the guest answers through it") {
    NetNamespace ns;
    const std::string br = ns.unique_ifname("kb");
    ns.add_bridge(br, fmt::format("{}/24", kHostIp));
    Background vm(kiln_net(ns, "tap=auto,bridge=" + br, echo_job()));
    CHECK(ns.link_details(ready_auto_tap(vm, ns)).find("master " + br) != std::string::npos);
    CHECK(ns.ping(kGuestIp, 5) == 5);
    stop(vm);
    CHECK(auto_taps_gone(ns));
}

TEST_CASE("virtio-net: a missing bridge, a name that is not a TAP and a bad --net are one line and status 125") {
    NetNamespace ns;
    const std::string tap = host_tap(ns);
    auto run = [&](const std::string& spec) {
        ProcessOptions opt;
        opt.limit = 30s;
        return run_process(kiln_net(ns, spec, "job=exit status=0"), opt);
    };
    SUBCASE("missing bridge") {
        const std::string br = ns.unique_ifname("kb");
        check_one_line_error(run("tap=auto,bridge=" + br), br);
        CHECK(auto_taps_gone(ns)); // the TAP it may have made is not left behind
    }
    SUBCASE("not a TAP") { check_one_line_error(run("tap=lo"), "lo"); }
    SUBCASE("bad specs") {
        for (const std::string& spec : std::vector<std::string>{"", "tap=", "tap", "foo=bar", "tap=" + tap + ",bogus=1",
                                       "tap=" + tap + ",mac=zz:zz:zz:zz:zz:zz", "tap=" + tap + ",mac=52:54:00:12:34",
                                       "tap=" + tap + ",queues=0", "tap=" + tap + ",queues=x",
                                       "tap=a-name-longer-than-15", "tap=auto,bridge="}) {
            CAPTURE(spec);
            check_one_line_error(run(spec), "--net");
        }
    }
}

TEST_CASE("virtio-net: odd frames from the host side (runts, oversize, a burst) do not stop the device") {
    NetNamespace ns;
    const std::string tap = host_tap(ns);
    // The TAP carries 9000-byte frames; the guest is told 1500 (mtu=1500), so Kiln's
    // buffers are sized for 1500 and anything longer is dropped, not delivered cut.
    ns.ip({"link", "set", tap, "mtu", "9000"});
    ScratchDir dir;
    const std::string stats = dir / "stats.json";
    Background vm(kiln_argv({"run", "--kernel", TESTGUEST_ELF, "--memory", "128M", "--timeout", "120", "--net",
                             "tap=" + tap + ",mtu=1500", "--stats-json", stats, "--cmdline", echo_job()},
                            ns.exec_prefix()));
    require_ready(vm);

    const int s = ns.socket(AF_PACKET, SOCK_RAW);
    REQUIRE(s >= 0);
    sockaddr_ll to{};
    to.sll_family = AF_PACKET;
    to.sll_ifindex = static_cast<int>(std::stoi(ns.exec({"cat", "/sys/class/net/" + tap + "/ifindex"}).out));
    to.sll_halen = 6;
    std::memset(to.sll_addr, 0xff, 6);
    auto send = [&](size_t len, uint8_t fill, uint16_t ethertype) {
        std::vector<uint8_t> f(len, fill);
        if (len >= 14) {
            std::memset(f.data(), 0xff, 6);
            f[12] = static_cast<uint8_t>(ethertype >> 8);
            f[13] = static_cast<uint8_t>(ethertype);
        }
        return ::sendto(s, f.data(), f.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
    };
    int sent = 0;
    for (size_t len : {14, 15, 20, 42, 60}) sent += send(len, 0xa5, 0x0800) > 0; // runt and truncated IPv4
    for (size_t len : {14, 60}) sent += send(len, 0x00, 0x0806) > 0;             // truncated ARP
    for (size_t len : {1600, 4000, 9014}) sent += send(len, 0x5a, 0x88b5) > 0;   // longer than the guest's MTU
    for (int i = 0; i < 3000; ++i) sent += send(1514, static_cast<uint8_t>(i), 0x88b5) > 0; // a burst
    CHECK(sent >= 3000);
    ::close(s);

    // The device still answers, and kiln still runs and stops cleanly.
    CHECK(ns.ping(kGuestIp, 5) == 5);
    CHECK(vm.running());
    stop(vm);
    // Kiln's own counters (--stats-json): the three frames longer than the guest's MTU
    // were dropped, the rest delivered or left to the TAP's queue.
    const auto j = nlohmann::json::parse(read_text(stats));
    CAPTURE(j["nics"].dump());
    REQUIRE(j["nics"].size() == 1);
    CHECK(j["nics"][0]["tap"] == tap);
    CHECK(j["nics"][0]["rx_dropped"].get<uint64_t>() == 3);
    CHECK(j["nics"][0]["rx_packets"].get<uint64_t>() >= 5);
    CHECK(j["nics"][0]["tx_packets"].get<uint64_t>() >= 5); // the ping replies
}
