// What happens to a Machine over its life, for whoever watches it: the control socket's
// event stream (GET /events), an embedder's callback (Machine::subscribe). Events are
// published by the thread that caused them; subscribers are called on that thread, in
// order, one event at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "vmm/base/vm_exit.hpp"

namespace kiln {

// Created: built, not started. Stopping: a graceful stop was asked for and the guest
// has not ended yet. Exited: the VM has ended (how: Machine::exit()).
enum class MachineState : uint8_t { Created, Running, Paused, Stopping, Exited };
[[nodiscard]] std::string_view to_string(MachineState s);

struct MachineEvent {
    // GuestExited ends every run, whatever ended it (the guest's status, a signal, a
    // stop through the API, a timeout). Error: Kiln failed (just before GuestExited), or
    // a device stopped serving a queue the guest broke (DEVICE_NEEDS_RESET; the VM runs
    // on), once per device until the guest resets it.
    enum class Kind : uint8_t { Started, Paused, Resumed, Stopping, GuestExited, Error };
    Kind kind = Kind::Started;
    int64_t unix_ms = 0;         // wall clock, for logs
    double uptime_seconds = 0;   // since the vCPUs started
    std::optional<VmExit> exit;  // GuestExited
    std::string message;         // Error: what failed; Stopping: how it is being asked
};
[[nodiscard]] std::string_view to_string(MachineEvent::Kind k);
// {"event": "guest-exited", "time_unix_ms": ..., "uptime_seconds": ..., "reason": ...,
//  "exit_status": N, "detail": ...}: one line of GET /events.
void to_json(nlohmann::json& j, const MachineEvent& e);
void to_json(nlohmann::json& j, const VmExit& e);

// The subscribers of one Machine. Thread-safe. A callback runs on the publishing thread
// and must not block for long (it holds up a vCPU pause or the VM's end); it may
// unsubscribe itself or others. Once unsubscribe() returns, the callback is not running
// and will not be called again (unless called from inside a callback, which is allowed
// and then only promises the latter).
class EventHub {
public:
    using Callback = std::function<void(const MachineEvent&)>;
    [[nodiscard]] uint64_t subscribe(Callback cb);
    void unsubscribe(uint64_t id);
    void publish(const MachineEvent& e);

private:
    struct Entry {
        uint64_t id;
        std::shared_ptr<Callback> cb;
    };
    std::mutex mu_;             // entries_, next_id_
    std::recursive_mutex publish_mu_; // one event at a time; unsubscribe waits for it
    std::vector<Entry> entries_;
    uint64_t next_id_ = 1;
};

// Unsubscribes when destroyed. Move-only; must not outlive the Machine.
class Subscription {
public:
    Subscription() = default;
    Subscription(EventHub* hub, uint64_t id) : hub_(hub), id_(id) {}
    Subscription(Subscription&& o) noexcept : hub_(std::exchange(o.hub_, nullptr)), id_(o.id_) {}
    Subscription& operator=(Subscription&& o) noexcept {
        if (this != &o) {
            reset();
            hub_ = std::exchange(o.hub_, nullptr);
            id_ = o.id_;
        }
        return *this;
    }
    Subscription(const Subscription&) = delete;
    Subscription& operator=(const Subscription&) = delete;
    ~Subscription() { reset(); }
    void reset() {
        if (hub_) std::exchange(hub_, nullptr)->unsubscribe(id_);
    }

private:
    EventHub* hub_ = nullptr;
    uint64_t id_ = 0;
};

} // namespace kiln
