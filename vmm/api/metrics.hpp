// GET /metrics: a VM's statistics in the Prometheus text exposition format 0.0.4
// (https://prometheus.io/docs/instrumenting/exposition_formats/): counters end in
// _total, times are in seconds and sizes in bytes, one HELP and TYPE line per family.
#pragma once

#include <string>

#include "vmm/machine/machine_events.hpp"
#include "vmm/machine/run_stats.hpp"

namespace kiln::api {

inline constexpr const char* kPrometheusContentType = "text/plain; version=0.0.4; charset=utf-8";

[[nodiscard]] std::string to_prometheus(const MachineStats& s, MachineState state, std::string_view vm_name);
// A label value with \, " and newline escaped.
[[nodiscard]] std::string escape_label(std::string_view v);

} // namespace kiln::api
