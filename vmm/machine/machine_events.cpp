#include "vmm/machine/machine_events.hpp"

#include <algorithm>

#include <nlohmann/json.hpp>

namespace kiln {

std::string_view to_string(MachineState s) {
    switch (s) {
    case MachineState::Created: return "created";
    case MachineState::Running: return "running";
    case MachineState::Paused: return "paused";
    case MachineState::Stopping: return "stopping";
    case MachineState::Exited: return "exited";
    }
    return "unknown";
}

std::string_view to_string(MachineEvent::Kind k) {
    switch (k) {
    case MachineEvent::Kind::Started: return "started";
    case MachineEvent::Kind::Paused: return "paused";
    case MachineEvent::Kind::Resumed: return "resumed";
    case MachineEvent::Kind::Stopping: return "stopping";
    case MachineEvent::Kind::GuestExited: return "guest-exited";
    case MachineEvent::Kind::Error: return "error";
    }
    return "unknown";
}

void to_json(nlohmann::json& j, const VmExit& e) {
    j = {{"reason", std::string(to_string(e.reason))}, {"exit_status", to_exit_status(e)}, {"detail", e.detail}};
    if (e.reason == ExitReason::GuestStatus) j["guest_status"] = e.status;
    if (e.reason == ExitReason::Signal) j["signal"] = e.status;
}

void to_json(nlohmann::json& j, const MachineEvent& e) {
    j = {{"event", std::string(to_string(e.kind))}, {"time_unix_ms", e.unix_ms}, {"uptime_seconds", e.uptime_seconds}};
    if (e.exit) j.update(nlohmann::json(*e.exit));
    if (!e.message.empty()) j["message"] = e.message;
}

uint64_t EventHub::subscribe(Callback cb) {
    std::lock_guard lk(mu_);
    const uint64_t id = next_id_++;
    entries_.push_back({id, std::make_shared<Callback>(std::move(cb))});
    return id;
}

void EventHub::unsubscribe(uint64_t id) {
    // Waiting for publish_mu_ means no callback is running once this returns; it is
    // recursive so a callback may unsubscribe on the publishing thread.
    std::lock_guard pub(publish_mu_);
    std::lock_guard lk(mu_);
    std::erase_if(entries_, [id](const Entry& e) { return e.id == id; });
}

void EventHub::publish(const MachineEvent& e) {
    std::lock_guard pub(publish_mu_);
    std::vector<Entry> snapshot;
    {
        std::lock_guard lk(mu_);
        snapshot = entries_;
    }
    for (const auto& entry : snapshot) {
        {
            // Skip one unsubscribed by an earlier callback of this same event.
            std::lock_guard lk(mu_);
            if (std::none_of(entries_.begin(), entries_.end(), [&](const Entry& x) { return x.id == entry.id; }))
                continue;
        }
        (*entry.cb)(e);
    }
}

} // namespace kiln
