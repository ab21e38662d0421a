// virtio-net against a driver played by the test, on a real TAP in a private network
// namespace: frames the driver sends arrive on the interface, frames sent to the
// interface land in the driver's buffers (merged across several with MRG_RXBUF),
// hostile chains come back unsent without stopping the device, frames the driver has
// no buffers for wait in the TAP's bounded queue (the worker sleeps meanwhile), and the
// control queue switches queue pairs. The interface side is an AF_PACKET socket.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "devices/net/net_spec.hpp"
#include "devices/virtio/net.hpp"
#include "devices/virtio/net_spec.hpp"
#include "devices/virtio/spec.hpp"
#include "vmm/base/event_fd.hpp"
#include "netns_thread.hpp"
#include "virtio_driver.hpp"

using namespace kiln;
using namespace kiln::virtio;

namespace {

constexpr uint32_t kHdr = netspec::kHdrSize;

// One split queue as the driver writes it, at `base` in guest memory: descriptors at
// base, the available ring at base + 0x1000, the used ring at base + 0x2000.
struct DriverQueue {
    const GuestMemory& mem;
    uint64_t base;
    uint16_t size = 64;
    uint16_t avail_idx = 0, seen_used = 0;
    Virtqueue vq;
    EventFd kick = *EventFd::create();

    DriverQueue(const GuestMemory& m, uint64_t b) : mem(m), base(b) {
        (void)vq.configure(mem, {size, base, base + 0x1000, base + 0x2000}, true, true);
    }
    void desc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next = 0) {
        test::write_desc(mem, base, i, addr, len, flags, next);
    }
    void publish(uint16_t head) {
        (void)mem.write_obj<uint16_t>(GuestAddress(base + 0x1000 + 4 + 2 * (avail_idx % size)), head);
        ++avail_idx;
        (void)mem.write_obj<uint16_t>(GuestAddress(base + 0x1000 + 2), avail_idx);
        kick.signal();
    }
    uint16_t used_idx() const { return *mem.read_obj<uint16_t>(GuestAddress(base + 0x2000 + 2)); }
    // Waits until the used index reaches `n` (or 2 s pass).
    bool wait_used(uint16_t n) const {
        const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
        while (static_cast<uint16_t>(used_idx() - n) > 0x8000) {
            if (std::chrono::steady_clock::now() > until) return false;
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        return true;
    }
    std::pair<uint32_t, uint32_t> used(uint16_t i) const {
        const uint64_t e = base + 0x2000 + 4 + 8 * (i % size);
        return {*mem.read_obj<uint32_t>(GuestAddress(e)), *mem.read_obj<uint32_t>(GuestAddress(e + 4))};
    }
    QueueBinding binding() { return {&vq, kick.get()}; }
};

struct NoIrq final : Interrupt {
    std::atomic<int> used{0}, resets{0};
    void used_buffers() override { ++used; }
    void config_changed() override {}
    void needs_reset(std::string_view) override { ++resets; }
};

// The interface's side: an AF_PACKET socket bound to it.
struct Wire {
    int fd = -1;
    int ifindex = 0;
    explicit Wire(const std::string& ifname) {
        ifindex = static_cast<int>(::if_nametoindex(ifname.c_str()));
        fd = ::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
        sockaddr_ll a{};
        a.sll_family = AF_PACKET;
        a.sll_protocol = htons(ETH_P_ALL);
        a.sll_ifindex = ifindex;
        (void)::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    }
    ~Wire() { ::close(fd); }
    bool send(const std::vector<uint8_t>& frame) const {
        sockaddr_ll a{};
        a.sll_family = AF_PACKET;
        a.sll_ifindex = ifindex;
        a.sll_halen = 6;
        std::memcpy(a.sll_addr, frame.data(), 6);
        return ::sendto(fd, frame.data(), frame.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof a) ==
               static_cast<ssize_t>(frame.size());
    }
    // The next frame with our test EtherType (the kernel sends its own frames too).
    std::vector<uint8_t> receive(int timeout_ms = 2000) const {
        const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
        for (;;) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
            pollfd p{fd, POLLIN, 0};
            if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) return {};
            std::vector<uint8_t> buf(2048);
            const ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
            if (n >= 14 && buf[12] == 0x88 && buf[13] == 0xb5) {
                buf.resize(static_cast<size_t>(n));
                return buf;
            }
        }
    }
};

// A frame of `len` bytes: broadcast, EtherType 0x88b5 (local experimental), payload
// bytes `seed + i`.
std::vector<uint8_t> frame(size_t len, uint8_t seed) {
    std::vector<uint8_t> f(len);
    std::memset(f.data(), 0xff, 6);
    const uint8_t src[6] = {0x52, 0x54, 0, 0x12, 0x34, 0x56};
    std::memcpy(f.data() + 6, src, 6);
    f[12] = 0x88;
    f[13] = 0xb5;
    for (size_t i = 14; i < len; ++i) f[i] = static_cast<uint8_t>(seed + i);
    return f;
}

GuestMemory memory() {
    auto plan = MemoryPlan::for_ram_size(32ull << 20);
    auto mem = GuestMemory::create(*plan);
    return std::move(*mem);
}

// A VirtioNet on a new TAP with `pairs` queue pairs, guest memory, and the wire.
struct Rig {
    GuestMemory mem = memory();
    std::unique_ptr<VirtioNet> dev;
    std::string ifname;
    net::MacAddress mac = net::MacAddress::for_vm("unit");

    static std::unique_ptr<Rig> make(std::vector<std::string>& f, uint16_t pairs, const char* name,
                                     bool multishot = true) {
        auto r = std::make_unique<Rig>();
        auto tap = net::Tap::open({"", pairs, ""});
        EXPECT(tap.has_value());
        if (!tap) return nullptr;
        r->ifname = tap->name();
        auto dev = VirtioNet::create(std::move(*tap), {name, r->mac, 0, std::nullopt, multishot});
        EXPECT(dev.has_value());
        if (!dev) return nullptr;
        r->dev = std::move(*dev);
        return r;
    }
};

constexpr uint64_t kRxQ = 0x200000, kTxQ = 0x210000, kCtrlQ = 0x220000;
constexpr uint64_t kRxBufs = 0x400000, kTxBufs = 0x800000;

uint64_t base_features() {
    return feature(kFeatureVersion1) | feature(kFeatureEventIdx) | feature(netspec::kMac) |
           feature(netspec::kMrgRxbuf);
}

// Posts `n` RX buffers of `len` bytes each, descriptors 0..n-1.
void post_rx(DriverQueue& rx, uint16_t first, uint16_t n, uint32_t len) {
    for (uint16_t i = first; i < first + n; ++i) {
        const auto d = static_cast<uint16_t>(i % rx.size);
        rx.desc(d, kRxBufs + uint64_t(d) * 4096, len, kDescFlagWrite);
        rx.publish(d);
    }
}

std::string worker_schedstat_run_ns(const std::string& name) {
    for (const auto& e : std::filesystem::directory_iterator("/proc/self/task")) {
        std::ifstream comm(e.path() / "comm");
        std::string c;
        std::getline(comm, c);
        if (c != name) continue;
        std::ifstream st(e.path() / "schedstat");
        std::string v;
        st >> v;
        return v;
    }
    return {};
}

} // namespace

// RX through the multishot read, or single reads (kernels before 6.7).
static void tx_and_rx(bool multishot) {
    test::run_in_netns([multishot](std::vector<std::string>& f) {
        auto rig = Rig::make(f, 1, "virtio-net0", multishot);
        if (!rig) return;
        VirtioNet& net = *rig->dev;
        const GuestMemory& mem = rig->mem;
        const auto& mac = rig->mac;
        const std::string& ifname = rig->ifname;
        // Config space: MAC, link up, one pair, the TAP's MTU.
        uint8_t cfg[12];
        net.read_config(0, cfg);
        EXPECT(std::memcmp(cfg, mac.bytes.data(), 6) == 0);
        EXPECT(cfg[6] == 1 && cfg[7] == 0);
        EXPECT(cfg[8] == 1 && cfg[9] == 0);
        EXPECT((cfg[10] | cfg[11] << 8) == 1500);
        EXPECT(net.num_queues() == 2);
        EXPECT(!(net.device_features() & feature(netspec::kMq)));

        Wire wire(ifname);
        DriverQueue rx(mem, kRxQ), tx(mem, kTxQ);
        NoIrq irq;
        const QueueBinding qs[] = {rx.binding(), tx.binding()};
        EXPECT(net.activate(mem, base_features(), qs, irq).has_value());

        // TX: header + frame in two descriptors.
        const auto out = frame(100, 7);
        (void)mem.fill(GuestAddress(kTxBufs), 0, kHdr);
        (void)mem.write(GuestAddress(kTxBufs + 64), out);
        tx.desc(0, kTxBufs, kHdr, kDescFlagNext, 1);
        tx.desc(1, kTxBufs + 64, static_cast<uint32_t>(out.size()), 0);
        tx.publish(0);
        EXPECT(wire.receive() == out);
        EXPECT(tx.wait_used(1));
        EXPECT(tx.used(0).first == 0);

        // Hostile TX chains: a device-writable descriptor, a header with nothing
        // after it, a loop, a buffer outside RAM. Each comes back unsent.
        tx.desc(2, kTxBufs, kHdr + 60, kDescFlagWrite);
        tx.publish(2);
        tx.desc(3, kTxBufs, kHdr, 0);
        tx.publish(3);
        tx.desc(4, kTxBufs, kHdr, kDescFlagNext, 5);
        tx.desc(5, kTxBufs, 60, kDescFlagNext, 4);
        tx.publish(4);
        tx.desc(6, 0xfff000000ull, 200, 0);
        tx.publish(6);
        EXPECT(tx.wait_used(5));
        EXPECT(net.counters().tx_errors.load() == 4);
        EXPECT(wire.receive(200).empty());
        // ... and the device still sends.
        tx.desc(7, kTxBufs, kHdr, kDescFlagNext, 8);
        tx.desc(8, kTxBufs + 64, static_cast<uint32_t>(out.size()), 0);
        tx.publish(7);
        EXPECT(wire.receive() == out);
        EXPECT(tx.wait_used(6)); // counted before it is returned
        EXPECT(net.counters().tx_packets.load() == 2);
        EXPECT(irq.resets.load() == 0);

        // RX into 2 KiB buffers: header with num_buffers 1, then the frame.
        post_rx(rx, 0, 4, 2048);
        const auto in = frame(300, 3);
        EXPECT(wire.send(in));
        EXPECT(rx.wait_used(1));
        auto [id, len] = rx.used(0);
        EXPECT(len == kHdr + in.size());
        std::vector<uint8_t> got(in.size());
        (void)mem.read(GuestAddress(kRxBufs + uint64_t(id) * 4096 + kHdr), got);
        EXPECT(got == in);
        EXPECT(*mem.read_obj<uint16_t>(GuestAddress(kRxBufs + uint64_t(id) * 4096 + 10)) == 1);

        // A frame over several small buffers (MRG_RXBUF): 12 + 300 bytes in 100-byte
        // buffers takes four, num_buffers = 4, the bytes in order across them.
        const uint16_t before = rx.used_idx();
        for (uint16_t i = 4; i < 12; ++i) {
            rx.desc(i, kRxBufs + uint64_t(i) * 4096, 100, kDescFlagWrite);
        }
        // The three 2 KiB buffers still posted come first: use them up.
        for (int k = 0; k < 3; ++k) EXPECT(wire.send(frame(60, 1)));
        EXPECT(rx.wait_used(static_cast<uint16_t>(before + 3)));
        for (uint16_t i = 4; i < 12; ++i) rx.publish(i);
        EXPECT(wire.send(in));
        EXPECT(rx.wait_used(static_cast<uint16_t>(before + 7)));
        std::vector<uint8_t> joined;
        for (uint16_t k = 0; k < 4; ++k) {
            auto [bid, blen] = rx.used(static_cast<uint16_t>(before + 3 + k));
            std::vector<uint8_t> part(blen);
            (void)mem.read(GuestAddress(kRxBufs + uint64_t(bid) * 4096), part);
            joined.insert(joined.end(), part.begin(), part.end());
        }
        EXPECT(joined.size() == kHdr + in.size());
        if (joined.size() == kHdr + in.size()) {
            EXPECT(joined[10] == 4 && joined[11] == 0);
            EXPECT(std::equal(in.begin(), in.end(), joined.begin() + kHdr));
        }
        net.reset();
    });
}

TEST_CASE("virtio-net: TX reaches the TAP, RX fills (merged) guest buffers, hostile chains do no harm") {
    SUBCASE("multishot read") { tx_and_rx(true); }
    SUBCASE("single reads") { tx_and_rx(false); }
}

// RX through the multishot read, or single reads (kernels before 6.7).
static void rx_waits_in_tap(bool multishot) {
    test::run_in_netns([multishot](std::vector<std::string>& f) {
        auto rig = Rig::make(f, 1, "virtio-net7", multishot);
        if (!rig) return;
        VirtioNet& net = *rig->dev;
        const GuestMemory& mem = rig->mem;
        const std::string& ifname = rig->ifname;
        Wire wire(ifname);
        DriverQueue rx(mem, kRxQ), tx(mem, kTxQ);
        NoIrq irq;
        const QueueBinding qs[] = {rx.binding(), tx.binding()};
        EXPECT(net.activate(mem, base_features(), qs, irq).has_value());

        // 3000 frames and not one buffer: nothing is delivered, nothing spins.
        for (int i = 0; i < 3000; ++i) (void)wire.send(frame(60, static_cast<uint8_t>(i)));
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        const std::string cpu0 = worker_schedstat_run_ns("net7-q0");
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        const std::string cpu1 = worker_schedstat_run_ns("net7-q0");
        EXPECT(!cpu0.empty());
        if (!cpu0.empty() && !cpu1.empty()) {
            const auto spent = std::stoull(cpu1) - std::stoull(cpu0);
            EXPECT(spent < 30'000'000ull); // under 10 % of 300 ms: asleep, not polling
        }
        EXPECT(net.counters().rx_packets.load() == 0);

        // Buffers arrive in rounds of 64: what was held (a few in Kiln's buffers,
        // the rest in the TAP's queue, which the kernel caps) is delivered; the
        // rest of the 3000 were dropped by the kernel, not queued by Kiln.
        // (At most a queue's worth of buffers outstanding, as a driver must.)
        uint16_t posted = 0;
        uint64_t delivered = 0;
        for (int round = 0; round < 60; ++round) {
            const auto outstanding = static_cast<uint16_t>(posted - rx.used_idx());
            post_rx(rx, posted, static_cast<uint16_t>(rx.size - outstanding), 2048);
            posted = static_cast<uint16_t>(posted + rx.size - outstanding);
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
            const uint64_t now = net.counters().rx_packets.load();
            if (now == delivered) break; // drained
            delivered = now;
        }
        delivered = net.counters().rx_packets.load();
        EXPECT(delivered > 0);
        EXPECT(delivered < 1200); // the TAP holds 500 (TUN_READQ_SIZE) by default, +4 here
        net.reset();
    });
}

TEST_CASE("virtio-net: with no guest buffers frames wait in the TAP's bounded queue and the worker sleeps") {
    SUBCASE("multishot read") { rx_waits_in_tap(true); }
    SUBCASE("single reads") { rx_waits_in_tap(false); }
}

TEST_CASE("virtio-net: a multi-queue TAP offers MQ with a control queue, and VQ_PAIRS_SET is acknowledged") {
    test::run_in_netns([](std::vector<std::string>& f) {
        auto rig = Rig::make(f, 2, "virtio-net1");
        if (!rig) return;
        VirtioNet& net = *rig->dev;
        const GuestMemory& mem = rig->mem;
        EXPECT(net.num_queues() == 5);
        EXPECT(net.device_features() & feature(netspec::kMq));
        EXPECT(net.device_features() & feature(netspec::kCtrlVq));
        uint8_t cfg[12];
        net.read_config(0, cfg);
        EXPECT(cfg[8] == 2);

        DriverQueue rx0(mem, kRxQ), tx0(mem, kTxQ), rx1(mem, 0x230000), tx1(mem, 0x240000), ctrl(mem, kCtrlQ);
        NoIrq irq;
        const QueueBinding qs[] = {rx0.binding(), tx0.binding(), rx1.binding(), tx1.binding(), ctrl.binding()};
        const uint64_t features = base_features() | feature(netspec::kMq) | feature(netspec::kCtrlVq);
        EXPECT(net.activate(mem, features, qs, irq).has_value());

        // {class MQ, VQ_PAIRS_SET, pairs} then the ack byte.
        auto command = [&](uint16_t idx, uint16_t pairs) -> int {
            const uint64_t buf = 0x600000 + uint64_t(idx) * 64;
            const uint8_t cmd[4] = {netspec::kCtrlClassMq, netspec::kCtrlMqVqPairsSet,
                                    static_cast<uint8_t>(pairs), static_cast<uint8_t>(pairs >> 8)};
            (void)mem.write(GuestAddress(buf), cmd);
            (void)mem.write_obj<uint8_t>(GuestAddress(buf + 32), 0xee);
            const auto d = static_cast<uint16_t>(2 * idx);
            ctrl.desc(d, buf, 2, kDescFlagNext, static_cast<uint16_t>(d + 1));
            ctrl.desc(static_cast<uint16_t>(d + 1), buf + 2, 2, kDescFlagNext, static_cast<uint16_t>(d + 2));
            ctrl.desc(static_cast<uint16_t>(d + 2), buf + 32, 1, kDescFlagWrite);
            ctrl.publish(d);
            if (!ctrl.wait_used(static_cast<uint16_t>(idx + 1))) return -1;
            return *mem.read_obj<uint8_t>(GuestAddress(buf + 32));
        };
        EXPECT(command(0, 2) == netspec::kCtrlOk);
        EXPECT(command(1, 3) == netspec::kCtrlErr); // more pairs than the device has
        EXPECT(command(2, 0) == netspec::kCtrlErr);
        EXPECT(command(3, 1) == netspec::kCtrlOk);
        net.reset();
    });
}

TEST_CASE("virtio-net: the --net spec: tap=NAME or auto, bridge, mac, queues, mtu, and clear errors") {
    auto a = net::parse_net_spec("tap=tap0");
    REQUIRE(a);
    CHECK(a->tap == "tap0");
    CHECK(a->queues == 0);
    CHECK_FALSE(a->mac);
    auto b = net::parse_net_spec("tap=auto,bridge=br0,mac=52:54:00:00:00:01,queues=4,mtu=9000");
    REQUIRE(b);
    CHECK(b->tap.empty());
    CHECK(b->bridge == "br0");
    CHECK(b->mac->to_string() == "52:54:00:00:00:01");
    CHECK(b->queues == 4);
    CHECK(b->mtu == 9000);
    const auto err = [](const char* s) {
        auto r = net::parse_net_spec(s);
        REQUIRE_FALSE(r);
        return r.error().message();
    };
    CHECK(err("bridge=br0") == "--net 'bridge=br0': tap=NAME or tap=auto is required");
    CHECK(err("tap=t0,bridge=br0") ==
          "--net 'tap=t0,bridge=br0': bridge= works with tap=auto only (add an existing TAP to a bridge yourself)");
    CHECK(err("tap=auto,queues=0").find("queues must be a whole number from 1 to 256, not '0'") != std::string::npos);
    CHECK(err("tap=auto,mtu=20").find("mtu must be a whole number from 68 to 65535") != std::string::npos);
    CHECK(err("tap=auto,mac=01:00:5e:00:00:01").find("multicast") != std::string::npos);
    CHECK(err("tap=auto,frob=1").find("unknown option 'frob'") != std::string::npos);
    CHECK(err("tap=auto,").find("an empty option") != std::string::npos);
    CHECK(err("tap=").find("tap= needs a TAP's name, or auto") != std::string::npos);
    CHECK(err("tap=averyveryverylongname").find("longer than 15 characters") != std::string::npos);
    CHECK(err("tap=a,tap=b").find("tap given twice") != std::string::npos);
}

// RX through the multishot read, or single reads (kernels before 6.7).
static void hostile_rx(bool multishot) {
    test::run_in_netns([multishot](std::vector<std::string>& f) {
        auto rig = Rig::make(f, 1, "virtio-net2", multishot);
        if (!rig) return;
        VirtioNet& net = *rig->dev;
        const GuestMemory& mem = rig->mem;
        Wire wire(rig->ifname);
        DriverQueue rx(mem, kRxQ), tx(mem, kTxQ);
        NoIrq irq;
        const QueueBinding qs[] = {rx.binding(), tx.binding()};
        EXPECT(net.activate(mem, base_features(), qs, irq).has_value());

        // A 4-byte first descriptor: num_buffers (header bytes 10-11) lands in the
        // second one, and nothing is written outside the two.
        const uint64_t a = kRxBufs, a2 = kRxBufs + 0x1000;
        (void)mem.fill(GuestAddress(a), 0xcc, 16);
        rx.desc(0, a, 4, kDescFlagWrite | kDescFlagNext, 1);
        rx.desc(1, a2, 2048, kDescFlagWrite);
        rx.publish(0);
        const auto in = frame(200, 9);
        EXPECT(wire.send(in));
        EXPECT(rx.wait_used(1));
        EXPECT(*mem.read_obj<uint16_t>(GuestAddress(a2 + 6)) == 1); // header byte 10 = a2 + 6
        EXPECT(*mem.read_obj<uint8_t>(GuestAddress(a + 4)) == 0xcc);  // past the 4 bytes: untouched
        std::vector<uint8_t> got(in.size());
        (void)mem.read(GuestAddress(a2 + 8), got);
        EXPECT(got == in);

        // Too few buffers for a frame: one 100-byte buffer and a read-only chain, then a
        // 300-byte frame. Nothing is consumed; the worker sleeps; reset stays prompt
        // later. Three more buffers: the frame goes into four, the read-only chain comes
        // back once, empty.
        rx.desc(2, kRxBufs + 0x2000, 100, kDescFlagWrite);
        rx.publish(2);
        rx.desc(3, kRxBufs + 0x3000, 100, 0); // device-readable: unusable for RX
        rx.publish(3);
        const auto big = frame(300, 4);
        EXPECT(wire.send(big));
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        EXPECT(rx.used_idx() == 1);
        const std::string cpu0 = worker_schedstat_run_ns("net2-q0");
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        const std::string cpu1 = worker_schedstat_run_ns("net2-q0");
        if (!cpu0.empty() && !cpu1.empty()) EXPECT(std::stoull(cpu1) - std::stoull(cpu0) < 30'000'000ull);
        for (uint16_t d = 4; d < 7; ++d) {
            rx.desc(d, kRxBufs + uint64_t(d) * 0x1000, 100, kDescFlagWrite);
            rx.publish(d);
        }
        EXPECT(rx.wait_used(6)); // 1 + the read-only chain + four for the frame
        int readonly_returns = 0;
        std::vector<uint8_t> joined;
        for (uint16_t k = 1; k < 6; ++k) {
            auto [id, len] = rx.used(k);
            if (id == 3) {
                ++readonly_returns;
                EXPECT(len == 0);
                continue;
            }
            std::vector<uint8_t> part(len);
            (void)mem.read(GuestAddress(kRxBufs + uint64_t(id) * 0x1000), part);
            joined.insert(joined.end(), part.begin(), part.end());
        }
        EXPECT(readonly_returns == 1);
        EXPECT(joined.size() == kHdr + big.size());
        if (joined.size() == kHdr + big.size()) {
            EXPECT(joined[10] == 4);
            EXPECT(std::equal(big.begin(), big.end(), joined.begin() + kHdr));
        }
        EXPECT(irq.resets.load() == 0);
        const auto t0 = std::chrono::steady_clock::now();
        net.reset();
        EXPECT(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(1));
    });
}

TEST_CASE("virtio-net: hostile RX buffers: a header split over descriptors, unusable chains mid-frame, too few buffers") {
    SUBCASE("multishot read") { hostile_rx(true); }
    SUBCASE("single reads") { hostile_rx(false); }
}
