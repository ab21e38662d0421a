#include "vmm/host/cpu_set.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>

namespace kiln::host {
namespace {

std::string_view trim(std::string_view s) {
    constexpr std::string_view space = " \t\r\n";
    const auto first = s.find_first_not_of(space);
    if (first == std::string_view::npos) return {};
    return s.substr(first, s.find_last_not_of(space) - first + 1);
}

// A whole decimal number and nothing else (no sign, no spaces).
bool parse_number(std::string_view text, uint32_t& out) {
    if (text.empty()) return false;
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return ec == std::errc() && p == text.data() + text.size();
}

} // namespace

CpuSet::CpuSet(std::initializer_list<uint32_t> cpus) {
    for (const uint32_t cpu : cpus) add(cpu);
}

CpuSet CpuSet::from_cpu_set(const cpu_set_t& set) {
    CpuSet s;
    for (uint32_t cpu = 0; cpu < kMaxCpus; ++cpu)
        if (CPU_ISSET(cpu, &set)) s.add(cpu);
    return s;
}

std::vector<uint32_t> CpuSet::cpus() const {
    std::vector<uint32_t> out;
    out.reserve(count());
    for (uint32_t cpu = 0; cpu < kMaxCpus; ++cpu)
        if (bits_.test(cpu)) out.push_back(cpu);
    return out;
}

std::string CpuSet::to_string() const {
    std::string out;
    uint32_t cpu = 0;
    while (cpu < kMaxCpus) {
        if (!bits_.test(cpu)) {
            ++cpu;
            continue;
        }
        uint32_t last = cpu;
        while (last + 1 < kMaxCpus && bits_.test(last + 1)) ++last;
        if (!out.empty()) out += ',';
        out += std::to_string(cpu);
        if (last != cpu) out += '-' + std::to_string(last);
        cpu = last + 1;
    }
    return out;
}

cpu_set_t CpuSet::to_cpu_set() const {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (uint32_t cpu = 0; cpu < kMaxCpus; ++cpu)
        if (bits_.test(cpu)) CPU_SET(cpu, &set);
    return set;
}

Result<std::vector<uint32_t>> parse_id_list(std::string_view list, uint32_t limit, std::string_view noun) {
    const std::string_view text = trim(list);
    std::vector<uint32_t> ids;
    if (text.empty()) return ids;
    auto bad = [&](std::string_view why) {
        return fail("invalid {} list '{}': {} (expected numbers and ranges like 0-3,8,10-11)", noun, text, why);
    };
    size_t pos = 0;
    while (pos <= text.size()) {
        const size_t comma = std::min(text.find(',', pos), text.size());
        const std::string_view entry = text.substr(pos, comma - pos);
        if (entry.empty()) return bad("an empty entry");
        const size_t dash = entry.find('-');
        uint32_t first = 0;
        uint32_t last = 0;
        if (dash == std::string_view::npos) {
            if (!parse_number(entry, first)) return bad(fmt::format("'{}' is not a number", entry));
            last = first;
        } else {
            if (!parse_number(entry.substr(0, dash), first) || !parse_number(entry.substr(dash + 1), last))
                return bad(fmt::format("'{}' is not a number or a range A-B", entry));
            if (last < first) return bad(fmt::format("range '{}' ends before it starts", entry));
        }
        if (last >= limit)
            return bad(fmt::format("{} {} is beyond the {} {}s kiln supports", noun, last, limit, noun));
        for (uint32_t id = first; id <= last; ++id) ids.push_back(id);
        pos = comma + 1;
    }
    return ids;
}

Result<CpuSet> parse_cpulist(std::string_view list) {
    const auto ids = KILN_TRY(parse_id_list(list, CpuSet::kMaxCpus, "CPU"));
    CpuSet set;
    for (const uint32_t cpu : ids) set.add(cpu);
    return set;
}

Result<CpuSet> allowed_cpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(0, sizeof(set), &set) != 0) {
        if (errno == EINVAL)
            return fail("sched_getaffinity: the host has more than {} CPUs, more than kiln supports",
                        CpuSet::kMaxCpus);
        return fail_errno("sched_getaffinity");
    }
    return CpuSet::from_cpu_set(set);
}

} // namespace kiln::host
