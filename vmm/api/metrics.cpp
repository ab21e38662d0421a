#include "vmm/api/metrics.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace kiln::api {

std::string escape_label(std::string_view v) {
    std::string out;
    out.reserve(v.size());
    for (char c : v) {
        if (c == '\\') out += "\\\\";
        else if (c == '"') out += "\\\"";
        else if (c == '\n') out += "\\n";
        else out += c;
    }
    return out;
}

namespace {

// Writes one metric family: HELP, TYPE, then its samples.
class Family {
public:
    Family(std::string& out, std::string_view name, std::string_view type, std::string_view help) : out_(out), name_(name) {
        out_ += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
    }
    void sample(std::string_view labels, double v) {
        out_ += labels.empty() ? fmt::format("{} {}\n", name_, v) : fmt::format("{}{{{}}} {}\n", name_, labels, v);
    }
    void sample(std::string_view labels, uint64_t v) {
        out_ += labels.empty() ? fmt::format("{} {}\n", name_, v) : fmt::format("{}{{{}}} {}\n", name_, labels, v);
    }

private:
    std::string& out_;
    std::string_view name_;
};

// KVM's counter names are C identifiers; anything else is replaced so the metric name
// stays valid.
std::string metric_safe(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') c = '_';
    return out;
}

// A device's counter: its metric name, HELP text and field.
template <class Item>
struct CounterField {
    const char* name;
    const char* help;
    uint64_t Item::*field;
};

// One counter family per field, one sample per item (a disk, a NIC) labelled by
// `labels(item)`; nothing when there are no items.
template <class Item, size_t N, class Labels>
void counter_families(std::string& out, const CounterField<Item> (&fields)[N], const std::vector<Item>& items,
                      Labels labels) {
    if (items.empty()) return;
    std::vector<std::string> item_labels;
    for (const auto& item : items) item_labels.push_back(labels(item));
    for (const auto& field : fields) {
        Family f(out, field.name, "counter", field.help);
        for (size_t i = 0; i < items.size(); ++i) f.sample(item_labels[i], items[i].*field.field);
    }
}

} // namespace

std::string to_prometheus(const MachineStats& s, MachineState state, std::string_view vm_name) {
    std::string out;
    const std::string vm = fmt::format("vm=\"{}\"", escape_label(vm_name));
    {
        Family f(out, "kiln_vm_state", "gauge", "1 for the state the VM is in, 0 for the others.");
        for (auto st : {MachineState::Created, MachineState::Running, MachineState::Paused, MachineState::Stopping,
                        MachineState::Exited})
            f.sample(fmt::format("{},state=\"{}\"", vm, to_string(st)), uint64_t(st == state ? 1 : 0));
    }
    Family(out, "kiln_vm_uptime_seconds", "gauge", "Seconds since the vCPUs started (frozen once the VM ended).")
        .sample(vm, s.uptime_seconds);
    {
        Family run(out, "kiln_vcpu_run_seconds_total", "counter", "Time the vCPU thread ran on a host CPU.");
        for (const auto& v : s.vcpus) run.sample(fmt::format("{},vcpu=\"{}\"", vm, v.id), double(v.sched.run_ns) / 1e9);
    }
    {
        Family wait(out, "kiln_vcpu_wait_seconds_total", "counter",
                    "Time the vCPU thread was runnable but waited for a host CPU (congestion).");
        for (const auto& v : s.vcpus)
            wait.sample(fmt::format("{},vcpu=\"{}\"", vm, v.id), double(v.sched.wait_ns) / 1e9);
    }
    {
        Family ts(out, "kiln_vcpu_timeslices_total", "counter", "Timeslices the vCPU thread ran.");
        for (const auto& v : s.vcpus) ts.sample(fmt::format("{},vcpu=\"{}\"", vm, v.id), v.sched.timeslices);
    }
    {
        // KVM's own per-vCPU counters (KVM_GET_STATS_FD), one family each: exits,
        // halt_exits, pf_taken, ... Most are cumulative; the few peaks and instants
        // (e.g. guest_mode) are gauges, so everything is exported as a gauge.
        std::vector<std::string> names;
        for (const auto& v : s.vcpus)
            for (const auto& c : v.kvm)
                if (std::find(names.begin(), names.end(), c.name) == names.end()) names.push_back(c.name);
        for (const auto& name : names) {
            const std::string metric = "kiln_kvm_vcpu_" + metric_safe(name);
            Family f(out, metric, "gauge", fmt::format("KVM's per-vCPU statistic {}.", name));
            for (const auto& v : s.vcpus)
                for (const auto& c : v.kvm)
                    if (c.name == name) f.sample(fmt::format("{},vcpu=\"{}\"", vm, v.id), c.value);
        }
    }
    Family(out, "kiln_memory_guest_bytes", "gauge", "Guest RAM size.").sample(vm, s.memory.guest_bytes);
    Family(out, "kiln_memory_rss_bytes", "gauge", "Resident memory of the kiln process.").sample(vm, s.memory.rss_bytes);
    Family(out, "kiln_memory_anon_huge_bytes", "gauge", "Memory backed by transparent huge pages.")
        .sample(vm, s.memory.anon_huge_bytes);
    Family(out, "kiln_memory_hugetlb_bytes", "gauge", "Memory backed by hugetlb pages.").sample(vm, s.memory.hugetlb_bytes);
    if (s.memory.ksm_merging_pages)
        Family(out, "kiln_memory_ksm_merging_pages", "gauge", "Pages of this process merged by KSM.")
            .sample(vm, *s.memory.ksm_merging_pages);

    static constexpr CounterField<DiskStats> disk_fields[] = {
        {"kiln_disk_read_requests_total", "Completed read requests.", &DiskStats::read_requests},
        {"kiln_disk_read_bytes_total", "Bytes read by the guest.", &DiskStats::read_bytes},
        {"kiln_disk_write_requests_total", "Completed write requests.", &DiskStats::write_requests},
        {"kiln_disk_write_bytes_total", "Bytes written by the guest.", &DiskStats::write_bytes},
        {"kiln_disk_flush_requests_total", "Completed flush requests.", &DiskStats::flush_requests},
        {"kiln_disk_discard_requests_total", "Completed discard and write-zeroes requests.",
         &DiskStats::discard_requests},
        {"kiln_disk_errors_total", "Requests completed with an error status, or malformed.", &DiskStats::errors},
    };
    counter_families(out, disk_fields, s.disks,
                     [&](const DiskStats& d) { return fmt::format("{},disk=\"{}\"", vm, escape_label(d.name)); });
    static constexpr CounterField<NicStats> nic_fields[] = {
        {"kiln_net_rx_packets_total", "Frames delivered to the guest.", &NicStats::rx_packets},
        {"kiln_net_rx_bytes_total", "Bytes delivered to the guest.", &NicStats::rx_bytes},
        {"kiln_net_rx_dropped_total", "Frames dropped: too large for the guest's buffers.", &NicStats::rx_dropped},
        {"kiln_net_tx_packets_total", "Frames sent by the guest.", &NicStats::tx_packets},
        {"kiln_net_tx_bytes_total", "Bytes sent by the guest.", &NicStats::tx_bytes},
        {"kiln_net_tx_errors_total", "Malformed chains, or frames the TAP refused.", &NicStats::tx_errors},
    };
    counter_families(out, nic_fields, s.nics, [&](const NicStats& n) {
        return fmt::format("{},nic=\"{}\",tap=\"{}\"", vm, escape_label(n.name), escape_label(n.tap));
    });
    return out;
}

} // namespace kiln::api
