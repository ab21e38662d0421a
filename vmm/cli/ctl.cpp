#include "vmm/cli/ctl.hpp"

#include <chrono>
#include <cstdio>
#include <thread>

#include <nlohmann/json.hpp>

#include "vmm/api/http_client.hpp"

namespace kiln::cli {

namespace {

constexpr int kOk = 0, kRefused = 1, kNoVm = 2, kBadUsage = 125;

// One line on stderr, "kiln ctl: ACTION: WHAT", and the exit status to return.
int complain(std::string_view action, std::string_view what, int status) {
    std::fputs(fmt::format("kiln ctl: {}: {}\n", action, what).c_str(), stderr);
    return status;
}

int report(std::string_view action, const Error& e) { return complain(action, e.message(), kBadUsage); }

// An error answer from the API: the VM (or its server) refused.
int refused(std::string_view action, std::string_view why, int http_status) {
    return complain(action, fmt::format("{} (HTTP {})", why, http_status), kRefused);
}

// The message of an API error body, or the body itself.
std::string error_text(std::string_view body) {
    const auto j = nlohmann::json::parse(body, nullptr, false);
    if (j.is_object() && j.contains("error") && j["error"].is_string()) return j["error"].get<std::string>();
    return std::string(body);
}

// Prints a successful body to stdout, an error's message to stderr.
int print_reply(std::string_view action, const api::HttpReply& r) {
    if (r.status >= 200 && r.status < 300) {
        std::fputs(r.body.c_str(), stdout);
        if (!r.body.empty() && r.body.back() != '\n') std::fputc('\n', stdout);
        return kOk;
    }
    return refused(action, error_text(r.body), r.status);
}


struct Followed {
    int http_status = 0;
    std::string error;             // a non-200 answer's message
    std::optional<int> exit_status; // from the guest-exited event
};

// Follows GET /events until the VM's guest-exited event or the end of the stream,
// printing each line when `echo`.
Result<Followed> follow_events(const std::string& sock, bool echo) {
    Followed f;
    auto status = api::http_stream_lines(
        sock, "/events",
        [&](std::string_view line) {
            if (echo) {
                std::fwrite(line.data(), 1, line.size(), stdout);
                std::fputc('\n', stdout);
                std::fflush(stdout);
            }
            const auto j = nlohmann::json::parse(line, nullptr, false);
            if (j.is_object() && j.value("event", "") == "guest-exited" && j.contains("exit_status"))
                f.exit_status = j["exit_status"].get<int>();
            return !f.exit_status;
        },
        {}, [&](std::string_view body) { f.error = error_text(body); });
    if (!status) return std::unexpected(status.error());
    f.http_status = *status;
    return f;
}

// stop and kill: until the VM has ended, i.e. GET /vm says "exited" or nobody serves
// the socket any more (kiln exits right after the VM ends).
int wait_for_end(const std::string& sock) {
    for (;;) {
        auto r = api::http_request(sock, "GET", "/vm");
        if (!r) return kOk; // the process is gone
        const auto j = nlohmann::json::parse(r->body, nullptr, false);
        if (r->status == 200 && j.is_object() && j.value("state", "") == "exited") return kOk;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
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
        return cmd.wait ? wait_for_end(cmd.api_sock) : kOk;
    }
    case A::Events:
    case A::Wait: {
        auto f = follow_events(cmd.api_sock, cmd.action == A::Events);
        if (!f) return report(action, f.error());
        if (f->http_status != 200) return refused(action, f->error, f->http_status);
        if (!f->exit_status)
            return complain(action, "the stream ended without the VM's exit (its process is gone)", kBadUsage);
        return cmd.action == A::Events ? kOk : *f->exit_status;
    }
    }
    return kBadUsage;
}

} // namespace kiln::cli
