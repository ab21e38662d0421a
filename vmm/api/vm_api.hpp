// The control API's resources (docs/api/openapi.yaml is their contract):
//   GET /vm           state, configuration, uptime, and how the VM ended once it has
//   PUT /vm/state     {"state": "paused"|"running"|"stopped"|"killed", "grace_seconds": S}
//   GET /vm/stats     run_stats.hpp's figures, live
//   GET /metrics      the same in the Prometheus text format
//   GET /events       (served by ApiServer: a stream, not a single response)
// Every handler answers JSON; a malformed request gets a 4xx with {"error", "status"}
// and never reaches the VM.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include "vmm/api/http.hpp"
#include "vmm/api/vm_control.hpp"

namespace kiln::api {

// The default grace period of a graceful stop, in seconds.
inline constexpr double kDefaultGraceSeconds = 10.0;
inline constexpr double kMaxGraceSeconds = 3600.0;

[[nodiscard]] nlohmann::json vm_info(const VmControl& vm);
[[nodiscard]] nlohmann::json config_to_json(const MachineConfig& cfg);

// Every resource but /events.
[[nodiscard]] HttpResponse handle_request(VmControl& vm, const HttpRequest& req);

} // namespace kiln::api
