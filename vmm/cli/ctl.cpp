#include "vmm/cli/ctl.hpp"

#include <cstdio>

#include <nlohmann/json.hpp>

#include "vmm/api/http_client.hpp"

namespace kiln::cli {

namespace {

constexpr int kOk = 0, kRefused = 1, kNoVm = 2, kBadUsage = 125;

int report(std::string_view action, const Error& e) {
    std::fprintf(stderr, "kiln ctl: %.*s: %s\n", static_cast<int>(action.size()), action.data(), e.message().c_str());
    return kBadUsage;
}

// Prints a successful body to stdout, an error's message to stderr.
int print_reply(std::string_view action, const api::HttpReply& r) {
    if (r.status >= 200 && r.status < 300) {
        std::fputs(r.body.c_str(), stdout);
        if (!r.body.empty() && r.body.back() != '\n') std::fputc('\n', stdout);
        return kOk;
    }
    const auto j = nlohmann::json::parse(r.body, nullptr, false);
    const std::string why = j.is_object() && j.contains("error") && j["error"].is_string() ? j["error"].get<std::string>()
                                                                                          : r.body;
    std::fprintf(stderr, "kiln ctl: %.*s: %s (HTTP %d)\n", static_cast<int>(action.size()), action.data(), why.c_str(),
                 r.status);
    return kRefused;
}

// Follows GET /events until the VM's guest-exited event (or the end of the stream: the
// process is gone). Prints each line when `echo`. Returns the VM's exit status, or
// nullopt when the stream ended without one.
Result<std::optional<int>> follow_events(const std::string& sock, bool echo) {
    std::optional<int> status;
    auto followed = api::http_stream_lines(sock, "/events", [&](std::string_view line) {
        if (echo) {
            std::fwrite(line.data(), 1, line.size(), stdout);
            std::fputc('\n', stdout);
            std::fflush(stdout);
        }
        const auto j = nlohmann::json::parse(line, nullptr, false);
        if (j.is_object() && j.value("event", "") == "guest-exited" && j.contains("exit_status"))
            status = j["exit_status"].get<int>();
        return !status;
    });
    // The kiln process may be gone already: then there is nothing more to wait for.
    if (!followed) return std::optional<int>{};
    return status;
}

} // namespace

int run_ctl(const CtlCommand& cmd) {
    using A = CtlCommand::Action;
    static constexpr const char* names[] = {"status", "pause", "resume", "stop", "kill",
                                            "stats",  "metrics", "events", "wait"};
    const std::string_view action = names[static_cast<size_t>(cmd.action)];
    // Reachability first, so "no VM there" has its own status.
    if (auto probe = api::connect_unix(cmd.api_sock); !probe) {
        std::fprintf(stderr, "kiln ctl: %s\n", probe.error().message().c_str());
        return kNoVm;
    }
    auto get = [&](const char* target) -> int {
        auto r = api::http_request(cmd.api_sock, "GET", target);
        if (!r) return report(action, r.error());
        return print_reply(action, *r);
    };
    auto put_state = [&](const nlohmann::json& body) -> std::optional<int> {
        auto r = api::http_request(cmd.api_sock, "PUT", "/vm/state", body.dump());
        if (!r) return report(action, r.error());
        if (r->status < 200 || r->status >= 300) return print_reply(action, *r);
        return std::nullopt; // accepted
    };
    switch (cmd.action) {
    case A::Status: return get("/vm");
    case A::Stats: return get("/vm/stats");
    case A::Metrics: return get("/metrics");
    case A::Pause:
    case A::Resume: {
        auto r = api::http_request(cmd.api_sock, "PUT", "/vm/state",
                                   nlohmann::json{{"state", cmd.action == A::Pause ? "paused" : "running"}}.dump());
        if (!r) return report(action, r.error());
        return print_reply(action, *r);
    }
    case A::Stop:
    case A::Kill: {
        nlohmann::json body{{"state", cmd.action == A::Stop ? "stopped" : "killed"}};
        if (cmd.grace_seconds) body["grace_seconds"] = *cmd.grace_seconds;
        if (auto refused = put_state(body)) return *refused;
        if (!cmd.wait) return kOk;
        auto ended = follow_events(cmd.api_sock, false);
        if (!ended) return report(action, ended.error());
        return kOk;
    }
    case A::Events:
    case A::Wait: {
        auto ended = follow_events(cmd.api_sock, cmd.action == A::Events);
        if (!ended) return report(action, ended.error());
        if (cmd.action == A::Events) return kOk;
        if (!*ended) {
            std::fprintf(stderr, "kiln ctl: wait: the VM's process ended without reporting how the VM ended\n");
            return kBadUsage;
        }
        return **ended;
    }
    }
    return kBadUsage;
}

} // namespace kiln::cli
