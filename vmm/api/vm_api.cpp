#include "vmm/api/vm_api.hpp"

#include <cmath>

#include <nlohmann/json.hpp>
#include <unistd.h>

#include "vmm/api/metrics.hpp"

namespace kiln::api {

namespace {

using nlohmann::json;

HttpResponse json_response(int status, const json& body) {
    HttpResponse r;
    r.status = status;
    r.body = body.dump(2) + "\n";
    return r;
}

HttpResponse method_not_allowed(std::string_view allow) {
    auto r = error_response(405, fmt::format("method not allowed; this resource takes {}", allow));
    r.headers.emplace_back("Allow", std::string(allow));
    return r;
}

// PUT /vm/state: the state asked for, checked before anything reaches the VM.
HttpResponse put_state(VmControl& vm, const HttpRequest& req) {
    // The body is parsed as JSON whatever Content-Type says: `curl -d` sends
    // application/x-www-form-urlencoded, and refusing that helps nobody.
    const json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
    if (body.is_discarded()) return error_response(400, "the body is not valid JSON");
    if (!body.is_object()) return error_response(400, "the body must be a JSON object");
    for (const auto& [key, _] : body.items())
        if (key != "state" && key != "grace_seconds")
            return error_response(400, fmt::format("unknown field '{}' (fields: state, grace_seconds)", key));
    const auto it = body.find("state");
    if (it == body.end() || !it->is_string()) return error_response(400, "'state' must be a string");
    const std::string want = it->get<std::string>();
    double grace = kDefaultGraceSeconds;
    if (const auto g = body.find("grace_seconds"); g != body.end()) {
        if (!g->is_number() || !std::isfinite(g->get<double>()) || g->get<double>() < 0 ||
            g->get<double>() > kMaxGraceSeconds)
            return error_response(400, fmt::format("'grace_seconds' must be a number from 0 to {}", kMaxGraceSeconds));
        if (want != "stopped") return error_response(400, "'grace_seconds' applies to \"stopped\" only");
        grace = g->get<double>();
    }

    const MachineState now = vm.state();
    const auto conflict = [&](std::string_view what) {
        return error_response(409, fmt::format("cannot {}: the VM is {}", what, to_string(now)));
    };
    if (want == "paused" || want == "running") {
        const bool pause = want == "paused";
        if (now != MachineState::Running && now != MachineState::Paused) return conflict(pause ? "pause" : "resume");
        auto r = pause ? vm.pause() : vm.resume();
        if (!r) return error_response(409, r.error().message());
        return json_response(200, vm_info(vm));
    }
    if (want == "stopped") {
        if (now == MachineState::Exited || now == MachineState::Created) return conflict("stop");
        auto r = vm.shutdown(std::chrono::milliseconds(static_cast<int64_t>(std::llround(grace * 1000))));
        if (!r) return error_response(409, r.error().message());
        return json_response(202, vm_info(vm));
    }
    if (want == "killed") {
        if (now == MachineState::Exited) return conflict("kill");
        vm.kill();
        return json_response(202, vm_info(vm));
    }
    return error_response(400, fmt::format("unknown state '{}' (paused, running, stopped, killed)", want));
}

} // namespace

json config_to_json(const MachineConfig& cfg) {
    json disks = json::array();
    for (const auto& d : cfg.disks) {
        json o{{"read_only", d.read_only}, {"snapshot", d.snapshot}, {"queues", d.queues},
               {"cache", d.cache == block::Cache::None ? "none" : "writeback"}};
        if (d.scratch_size) o["scratch_bytes"] = d.scratch_size;
        else o["path"] = d.path;
        if (!d.serial.empty()) o["serial"] = d.serial;
        disks.push_back(std::move(o));
    }
    json nets = json::array();
    for (const auto& n : cfg.nets) {
        json o{{"tap", n.tap.empty() ? "auto" : n.tap}};
        if (!n.bridge.empty()) o["bridge"] = n.bridge;
        if (n.mac) o["mac"] = n.mac->to_string();
        if (n.queues) o["queues"] = n.queues;
        if (n.mtu) o["mtu"] = n.mtu;
        nets.push_back(std::move(o));
    }
    json j{{"kernel", cfg.kernel_path},
           {"cmdline", cfg.cmdline},
           {"memory_bytes", cfg.memory_bytes},
           {"memory_backing", cfg.memory_backing.describe()},
           {"cpus", cfg.cpus},
           {"disks", std::move(disks)},
           {"nets", std::move(nets)}};
    if (!cfg.initrd_path.empty()) j["initrd"] = cfg.initrd_path;
    if (cfg.numa_node) j["numa_node"] = *cfg.numa_node;
    if (cfg.timeout_seconds) j["timeout_seconds"] = *cfg.timeout_seconds;
    return j;
}

json vm_info(const VmControl& vm) {
    const MachineState state = vm.state();
    json j{{"name", vm.config().vm_name()},
           {"pid", ::getpid()},
           {"state", std::string(to_string(state))},
           {"uptime_seconds", vm.uptime_seconds()},
           {"config", config_to_json(vm.config())}};
    if (const auto e = vm.exit()) j["exit"] = *e;
    return j;
}

HttpResponse handle_request(VmControl& vm, const HttpRequest& req) {
    const std::string& p = req.path;
    const bool get = req.method == "GET" || req.method == "HEAD";
    if (p == "/vm") {
        if (!get) return method_not_allowed("GET");
        return json_response(200, vm_info(vm));
    }
    if (p == "/vm/state") {
        if (req.method == "PUT") return put_state(vm, req);
        if (get) return json_response(200, {{"state", std::string(to_string(vm.state()))}});
        return method_not_allowed("GET, PUT");
    }
    if (p == "/vm/stats") {
        if (!get) return method_not_allowed("GET");
        return json_response(200, json(vm.stats()));
    }
    if (p == "/metrics") {
        if (!get) return method_not_allowed("GET");
        HttpResponse r;
        r.content_type = kPrometheusContentType;
        r.body = to_prometheus(vm.stats(), vm.state(), vm.config().vm_name());
        return r;
    }
    return error_response(404, fmt::format("no resource '{}' (see docs/api/openapi.yaml)", p));
}

} // namespace kiln::api
