#include "tests/support/netns.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <thread>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>

namespace kiln::test {

namespace {

constexpr const char* kPrefix = "kiln-t";
std::atomic<unsigned> counter{0};

ProcessOptions within(std::chrono::milliseconds limit) {
    ProcessOptions o;
    o.limit = limit;
    return o;
}

ProcessResult ip_run(const std::vector<std::string>& args) {
    std::vector<std::string> argv{"ip"};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_process(argv, within(std::chrono::seconds(20)));
}

// Namespaces named kiln-t<pid>-<n> whose process no longer exists: a test run killed
// before its destructors ran.
void sweep_stale() {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator("/run/netns", ec)) {
        const std::string n = e.path().filename();
        if (n.rfind(kPrefix, 0) != 0) continue;
        const auto dash = n.find('-', std::strlen(kPrefix));
        const std::string pid = n.substr(std::strlen(kPrefix), dash - std::strlen(kPrefix));
        if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
        if (std::filesystem::exists("/proc/" + pid, ec)) continue;
        ip_run({"netns", "del", n});
    }
}

} // namespace

NetNamespace::NetNamespace() {
    sweep_stale();
    name_ = fmt::format("{}{}-{}", kPrefix, ::getpid(), counter++);
    auto add = ip_run({"netns", "add", name_});
    REQUIRE_MESSAGE(add.exit_code == 0, "ip netns add " << name_ << ": " << add.err);
    auto lo = ip_run({"-n", name_, "link", "set", "lo", "up"});
    if (lo.exit_code != 0) {
        ip_run({"netns", "del", name_});
        FAIL("ip -n " << name_ << " link set lo up: " << lo.err);
    }
}

NetNamespace::~NetNamespace() { ip_run({"netns", "del", name_}); }

std::string NetNamespace::unique_ifname(const std::string& prefix) const {
    std::string n = fmt::format("{}{}-{}", prefix, ::getpid(), counter++);
    REQUIRE_MESSAGE(n.size() <= 15, "interface name too long: " << n);
    return n;
}

std::string NetNamespace::ip(const std::vector<std::string>& args) const {
    std::vector<std::string> a{"-n", name_};
    a.insert(a.end(), args.begin(), args.end());
    auto r = ip_run(a);
    std::string cmd = "ip";
    for (const auto& x : a) cmd += " " + x;
    REQUIRE_MESSAGE(r.exit_code == 0, cmd << ": " << r.err);
    return r.out;
}

void NetNamespace::add_tap(const std::string& name, const std::string& cidr, bool multi_queue) const {
    std::vector<std::string> add{"tuntap", "add", "dev", name, "mode", "tap"};
    if (multi_queue) add.emplace_back("multi_queue");
    ip(add);
    if (!cidr.empty()) ip({"addr", "add", cidr, "dev", name});
    ip({"link", "set", name, "up"});
}

void NetNamespace::add_bridge(const std::string& name, const std::string& cidr) const {
    ip({"link", "add", "name", name, "type", "bridge"});
    ip({"addr", "add", cidr, "dev", name});
    ip({"link", "set", name, "up"});
}

std::vector<std::string> NetNamespace::exec_prefix() const { return {"ip", "netns", "exec", name_}; }

ProcessResult NetNamespace::exec(const std::vector<std::string>& argv, const ProcessOptions& opt) const {
    auto full = exec_prefix();
    full.insert(full.end(), argv.begin(), argv.end());
    return run_process(full, opt);
}

std::vector<std::string> NetNamespace::links() const {
    // `ip -o link`: "N: NAME: <FLAGS> ..." or "N: NAME@PEER: ...", one line each.
    std::vector<std::string> out;
    std::istringstream in(ip({"-o", "link", "show"}));
    for (std::string line; std::getline(in, line);) {
        const auto a = line.find(": ");
        if (a == std::string::npos) continue;
        const auto b = line.find_first_of(":@", a + 2);
        out.push_back(line.substr(a + 2, b - a - 2));
    }
    return out;
}

std::string NetNamespace::link_details(const std::string& ifname) const {
    auto r = ip_run({"-n", name_, "-d", "link", "show", "dev", ifname});
    return r.exit_code == 0 ? r.out : std::string{};
}

int NetNamespace::ping(const std::string& addr, int count) const {
    auto r = exec({"ping", "-n", "-c", std::to_string(count), "-i", "0.2", "-W", "2", addr},
                  within(std::chrono::seconds(count + 10)));
    const auto at = r.out.find(" received");
    if (at == std::string::npos) return 0;
    const auto b = r.out.rfind(", ", at);
    return std::stoi(r.out.substr(b == std::string::npos ? 0 : b + 2, at));
}

int NetNamespace::socket(int domain, int type) const {
    int fd = -1, err = 0;
    std::string what;
    // setns(CLONE_NEWNET) changes only the calling thread's namespace: a thread of its
    // own does it, makes the socket and ends; the socket keeps its namespace.
    std::thread([&] {
        const int nsfd = ::open(("/run/netns/" + name_).c_str(), O_RDONLY | O_CLOEXEC);
        if (nsfd < 0) {
            err = errno, what = "open /run/netns/" + name_;
            return;
        }
        if (::setns(nsfd, CLONE_NEWNET) != 0) {
            err = errno, what = "setns";
        } else if ((fd = ::socket(domain, type | SOCK_CLOEXEC, 0)) < 0) {
            err = errno, what = "socket";
        }
        ::close(nsfd);
    }).join();
    REQUIRE_MESSAGE(fd >= 0, what << ": " << std::strerror(err));
    return fd;
}

UdpClient::UdpClient(const NetNamespace& ns, const std::string& addr, uint16_t port) {
    fd_ = ns.socket(AF_INET, SOCK_DGRAM);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    REQUIRE(::inet_pton(AF_INET, addr.c_str(), &sa.sin_addr) == 1);
    REQUIRE_MESSAGE(::connect(fd_, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) == 0,
                    "connect " << addr << ":" << port << ": " << std::strerror(errno));
}

UdpClient::~UdpClient() {
    if (fd_ >= 0) ::close(fd_);
}

std::optional<std::vector<uint8_t>> UdpClient::echo(const std::vector<uint8_t>& payload,
                                                    std::chrono::milliseconds timeout) {
    std::vector<uint8_t> buf(65536);
    while (::recv(fd_, buf.data(), buf.size(), MSG_DONTWAIT) >= 0) {
    } // late replies to earlier requests
    if (::send(fd_, payload.data(), payload.size(), 0) != static_cast<ssize_t>(payload.size())) return std::nullopt;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) return std::nullopt;
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
        const ssize_t n = ::recv(fd_, buf.data(), buf.size(), MSG_DONTWAIT);
        if (n >= 0) {
            buf.resize(static_cast<size_t>(n));
            return buf;
        }
        // ECONNREFUSED: an ICMP port unreachable came back (nothing listens yet); retry
        // until the deadline like a lost datagram.
    }
}

} // namespace kiln::test
