#include "vmm/machine/run_stats.hpp"

#include <charconv>

#include <nlohmann/json.hpp>

#include "vmm/base/file_io.hpp"

namespace kiln {

namespace {

// "Key:   1234 kB" lines (smaps_rollup) or "key value" lines (ksm_stat).
std::optional<uint64_t> field(std::string_view text, std::string_view key) {
    size_t pos = 0;
    while (pos < text.size()) {
        size_t eol = text.find('\n', pos);
        if (eol == std::string_view::npos) eol = text.size();
        std::string_view line = text.substr(pos, eol - pos);
        pos = eol + 1;
        if (!line.starts_with(key)) continue;
        line.remove_prefix(key.size());
        if (!line.empty() && line.front() == ':') line.remove_prefix(1);
        else if (line.empty() || line.front() != ' ') continue; // a longer key
        while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
        uint64_t v = 0;
        auto [p, ec] = std::from_chars(line.data(), line.data() + line.size(), v);
        if (ec != std::errc()) return std::nullopt;
        std::string_view unit(p, static_cast<size_t>(line.data() + line.size() - p));
        return unit.find("kB") != std::string_view::npos ? v * 1024 : v;
    }
    return std::nullopt;
}

} // namespace

Result<SchedStat> parse_schedstat(std::string_view text) {
    SchedStat s;
    uint64_t* out[] = {&s.run_ns, &s.wait_ns, &s.timeslices};
    const char* p = text.data();
    const char* end = text.data() + text.size();
    for (uint64_t* v : out) {
        while (p < end && *p == ' ') ++p;
        auto [q, ec] = std::from_chars(p, end, *v);
        if (ec != std::errc()) return fail("schedstat: '{}' is not three numbers", text);
        p = q;
    }
    return s;
}

Result<SchedStat> read_schedstat(const std::string& path) {
    const std::string text = KILN_TRY_CTX(read_text_file(path), "schedstat");
    return KILN_TRY_CTX(parse_schedstat(std::string_view(text).substr(0, text.find('\n'))), "{}", path);
}

MemoryStats read_memory_stats(std::string_view smaps_rollup, std::string_view ksm_stat) {
    MemoryStats m;
    m.rss_bytes = field(smaps_rollup, "Rss").value_or(0);
    m.anon_huge_bytes = field(smaps_rollup, "AnonHugePages").value_or(0);
    m.hugetlb_bytes =
        field(smaps_rollup, "Private_Hugetlb").value_or(0) + field(smaps_rollup, "Shared_Hugetlb").value_or(0);
    m.ksm_merging_pages = field(ksm_stat, "ksm_merging_pages");
    return m;
}

void to_json(nlohmann::json& j, const MachineStats& s) {
    j = nlohmann::json::object();
    j["uptime_seconds"] = s.uptime_seconds;
    j["paging"] = s.paging;
    auto& mem = j["memory"];
    mem["guest_bytes"] = s.memory.guest_bytes;
    mem["backing"] = s.memory.backing;
    mem["rss_bytes"] = s.memory.rss_bytes;
    mem["anon_huge_bytes"] = s.memory.anon_huge_bytes;
    mem["hugetlb_bytes"] = s.memory.hugetlb_bytes;
    if (s.memory.ksm_merging_pages) mem["ksm_merging_pages"] = *s.memory.ksm_merging_pages;
    auto& vcpus = j["vcpus"];
    vcpus = nlohmann::json::array();
    for (const auto& v : s.vcpus) {
        nlohmann::json o;
        o["id"] = v.id;
        o["tid"] = v.tid;
        o["cpus_allowed"] = v.cpus_allowed;
        o["run_ns"] = v.sched.run_ns;
        o["wait_ns"] = v.sched.wait_ns;
        o["timeslices"] = v.sched.timeslices;
        auto& kvm = o["kvm"];
        kvm = nlohmann::json::object();
        for (const auto& c : v.kvm) kvm[c.name] = c.value;
        vcpus.push_back(std::move(o));
    }
    auto& disks = j["disks"];
    disks = nlohmann::json::array();
    for (const auto& d : s.disks) {
        disks.push_back({{"name", d.name}, {"image", d.image}, {"read_requests", d.read_requests},
                         {"read_bytes", d.read_bytes}, {"write_requests", d.write_requests},
                         {"write_bytes", d.write_bytes}, {"flush_requests", d.flush_requests},
                         {"discard_requests", d.discard_requests}, {"errors", d.errors},
                         {"worker_cpus", d.worker_cpus}});
    }
    auto& nics = j["nics"];
    nics = nlohmann::json::array();
    for (const auto& n : s.nics) {
        nics.push_back({{"name", n.name}, {"tap", n.tap}, {"mac", n.mac}, {"rx_packets", n.rx_packets},
                        {"rx_bytes", n.rx_bytes}, {"rx_dropped", n.rx_dropped}, {"tx_packets", n.tx_packets},
                        {"tx_bytes", n.tx_bytes}, {"tx_errors", n.tx_errors}});
    }
}

} // namespace kiln
