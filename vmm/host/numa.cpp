#include "vmm/host/numa.hpp"

#include <linux/mempolicy.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <climits>
#include <filesystem>

#include "vmm/base/fd.hpp"
#include "vmm/base/file_io.hpp"

namespace kiln::host {
namespace {

bool is_directory(const std::string& path) {
    struct stat st{};
    return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool exists(const std::string& path) {
    struct stat st{};
    return ::stat(path.c_str(), &st) == 0;
}

template <class T>
bool parse_whole(std::string_view text, T& out, int base = 10) {
    if (text.empty()) return false;
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), out, base);
    return ec == std::errc() && p == text.data() + text.size();
}

std::vector<std::string_view> words(std::string_view line) {
    std::vector<std::string_view> out;
    size_t pos = 0;
    while (pos < line.size()) {
        const size_t start = line.find_first_not_of(" \t\r\n", pos);
        if (start == std::string_view::npos) break;
        const size_t end = std::min(line.find_first_of(" \t\r\n", start), line.size());
        out.push_back(line.substr(start, end - start));
        pos = end;
    }
    return out;
}

} // namespace

Result<uint64_t> node_mem_total(std::string_view text, uint32_t node) {
    for (const std::string_view line : split_lines(text)) {
        const auto w = words(line);
        if (w.size() != 5 || w[0] != "Node" || w[2] != "MemTotal:") continue;
        uint32_t id = 0;
        uint64_t kib = 0;
        if (!parse_whole(w[1], id) || id != node || !parse_whole(w[3], kib) || w[4] != "kB" ||
            kib > UINT64_MAX / 1024)
            return fail("malformed MemTotal line '{}'", line);
        return kib * 1024;
    }
    return fail("no 'Node {} MemTotal:' line", node);
}

namespace {

// Node ids from the nodeN directories, for a tree without devices/system/node/online.
Result<std::vector<uint32_t>> node_dirs(const std::string& dir) {
    std::vector<uint32_t> ids;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
        const std::string name = entry.path().filename().string();
        uint32_t id = 0;
        if (name.starts_with("node") && parse_whole(std::string_view(name).substr(4), id) &&
            id < NumaTopology::kMaxNodes)
            ids.push_back(id);
    }
    if (ec) return fail("listing '{}': {}", dir, ec.message());
    std::sort(ids.begin(), ids.end());
    return ids;
}

Result<NumaNode> read_node(const std::string& node_dir, uint32_t id) {
    NumaNode node;
    node.id = id;
    const std::string cpulist_path = fmt::format("{}/node{}/cpulist", node_dir, id);
    const std::string cpulist = KILN_TRY(read_text_file(cpulist_path));
    node.cpus = KILN_TRY_CTX(parse_cpulist(cpulist), "'{}'", cpulist_path);
    const std::string meminfo_path = fmt::format("{}/node{}/meminfo", node_dir, id);
    const std::string meminfo = KILN_TRY(read_text_file(meminfo_path));
    node.memory_bytes = KILN_TRY_CTX(node_mem_total(meminfo, id), "'{}'", meminfo_path);
    return node;
}

} // namespace

NumaTopology::NumaTopology(std::vector<NumaNode> nodes, bool synthesized)
    : nodes_(std::move(nodes)), synthesized_(synthesized) {
    std::sort(nodes_.begin(), nodes_.end(), [](const NumaNode& a, const NumaNode& b) { return a.id < b.id; });
}

Result<NumaTopology> NumaTopology::read(std::string_view sysfs_root) {
    const std::string root(sysfs_root);
    const std::string node_dir = root + "/devices/system/node";
    if (!is_directory(node_dir)) {
        // CONFIG_NUMA off (or a sysfs without it): everything is one node.
        const std::string online_path = root + "/devices/system/cpu/online";
        const std::string online = KILN_TRY_CTX(read_text_file(online_path), "no NUMA nodes in sysfs");
        NumaNode only;
        only.cpus = KILN_TRY_CTX(parse_cpulist(online), "'{}'", online_path);
        return NumaTopology({only}, true);
    }
    std::vector<uint32_t> ids;
    const std::string online_path = node_dir + "/online";
    if (exists(online_path)) {
        const std::string online = KILN_TRY(read_text_file(online_path));
        ids = KILN_TRY_CTX(parse_id_list(online, kMaxNodes, "node"), "'{}'", online_path);
    } else {
        ids = KILN_TRY(node_dirs(node_dir));
    }
    if (ids.empty()) return fail("'{}': no NUMA nodes online", node_dir);
    std::vector<NumaNode> nodes;
    for (const uint32_t id : ids) nodes.push_back(KILN_TRY(read_node(node_dir, id)));
    return NumaTopology(std::move(nodes));
}

const NumaNode* NumaTopology::node(uint32_t id) const {
    for (const auto& n : nodes_)
        if (n.id == id) return &n;
    return nullptr;
}

std::string NumaTopology::node_ids() const {
    CpuSet ids; // the list format is the same for node ids
    for (const auto& n : nodes_) ids.add(n.id);
    return ids.to_string();
}

std::string NumaTopology::describe() const {
    std::string out = fmt::format("{} node{}{}:", nodes_.size(), nodes_.size() == 1 ? "" : "s",
                                  synthesized_ ? " (no NUMA in sysfs)" : "");
    for (size_t i = 0; i < nodes_.size(); ++i) {
        const auto& n = nodes_[i];
        out += fmt::format("{} node{} CPUs {}", i ? "," : "", n.id, n.cpus.empty() ? "none" : n.cpus.to_string());
        if (n.memory_bytes) out += fmt::format(" {} MiB", n.memory_bytes >> 20);
    }
    return out;
}

Result<void> bind_memory(void* addr, size_t len, uint32_t node) {
    const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
    if (reinterpret_cast<uintptr_t>(addr) % page != 0)
        return fail("binding memory to node {}: address {} is not page aligned", node, addr);
    if (node >= NumaTopology::kMaxNodes)
        return fail("binding memory to node {}: node ids go up to {}", node, NumaTopology::kMaxNodes - 1);
    constexpr size_t kBitsPerLong = sizeof(unsigned long) * CHAR_BIT;
    std::array<unsigned long, NumaTopology::kMaxNodes / kBitsPerLong> mask{};
    mask[node / kBitsPerLong] = 1UL << (node % kBitsPerLong);
    // maxnode is one more than the bits passed: the kernel has always decremented it
    // (libnuma passes the same +1).
    const unsigned long maxnode = mask.size() * kBitsPerLong + 1;
    if (::syscall(SYS_mbind, addr, static_cast<unsigned long>(len), static_cast<unsigned long>(MPOL_BIND), mask.data(),
                  maxnode, static_cast<unsigned long>(MPOL_MF_MOVE)) != 0) {
        const int e = errno;
        const std::string what = fmt::format("binding {} bytes at {} to NUMA node {} (mbind)", len, addr, node);
        if (e == ENOSYS) return fail("{}: the kernel has no NUMA support (CONFIG_NUMA)", what);
        if (e == EINVAL) return fail("{}: the host has no such node, or kiln's cpuset may not use its memory", what);
        return fail_errno(what, e);
    }
    return {};
}

Result<NumaMapsEntry> parse_numa_maps_line(std::string_view line) {
    const auto w = words(line);
    auto bad = [&](std::string_view why) { return fail("malformed numa_maps line '{}': {}", line, why); };
    if (w.size() < 2) return bad("fewer than two fields");
    NumaMapsEntry e;
    if (!parse_whole(w[0], e.start, 16)) return bad("the address is not hexadecimal");
    e.policy = std::string(w[1]);
    for (size_t i = 2; i < w.size(); ++i) {
        const size_t eq = w[i].find('=');
        if (eq == std::string_view::npos) continue; // "heap", "stack", "huge"
        const std::string_view key = w[i].substr(0, eq);
        const std::string_view value = w[i].substr(eq + 1);
        uint32_t node = 0;
        uint64_t n = 0;
        if (key.size() > 1 && key[0] == 'N' && parse_whole(key.substr(1), node)) {
            if (!parse_whole(value, n)) return bad(fmt::format("'{}' is not a page count", w[i]));
            e.node_pages[node] = n;
        } else if (key == "kernelpagesize_kB") {
            if (!parse_whole(value, e.page_size_kib)) return bad(fmt::format("'{}' is not a size", w[i]));
        }
        // Other keys (file=, anon=, dirty=, mapped=, active=, ...) are not needed yet.
    }
    return e;
}

Result<std::vector<NumaMapsEntry>> parse_numa_maps(std::string_view text) {
    std::vector<NumaMapsEntry> out;
    size_t pos = 0;
    while (pos < text.size()) {
        const size_t nl = std::min(text.find('\n', pos), text.size());
        const std::string_view line = text.substr(pos, nl - pos);
        if (!words(line).empty()) out.push_back(KILN_TRY(parse_numa_maps_line(line)));
        pos = nl + 1;
    }
    return out;
}

Result<std::vector<NumaMapsEntry>> read_numa_maps(pid_t pid) {
    const std::string path = pid == 0 ? "/proc/self/numa_maps" : fmt::format("/proc/{}/numa_maps", pid);
    const std::string text = KILN_TRY(read_text_file(path));
    return KILN_TRY_CTX(parse_numa_maps(text), "'{}'", path);
}

} // namespace kiln::host
