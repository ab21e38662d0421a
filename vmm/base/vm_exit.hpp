// How a VM ended, and the exit status `kiln run` turns that into. The statuses are the
// CLI's documented contract (README "Exit status"); keep the two in step.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace kiln {

enum class ExitReason : uint8_t {
    GuestStatus,     // the guest wrote its status to the debug-exit port
    ExpectMatched,   // --expect matched a console line
    Reset,           // the guest asked for a reset (i8042 0xfe, KVM_SYSTEM_EVENT_RESET)
    PowerOff,        // the guest powered off without reporting a status
    TripleFault,     // KVM_EXIT_SHUTDOWN
    InternalError,   // emulation failure or another KVM internal error / unhandled exit
    FailOnMatched,   // --fail-on matched a console line (kernel panic, Oops, ...)
    Timeout,         // --timeout expired
    HostError,       // Kiln itself failed
    Signal,          // Kiln was asked to stop by SIGINT/SIGTERM/SIGHUP
    Stopped,         // stopped through the API by its embedder
};

struct VmExit {
    ExitReason reason = ExitReason::HostError;
    int status = 0;        // guest status for GuestStatus, signal number for Signal
    std::string detail;    // one line for the user: what happened, where
};

namespace exit_status {
inline constexpr int kReset = 119;
inline constexpr int kPowerOff = 120;
inline constexpr int kTripleFault = 121;
inline constexpr int kInternalError = 122;
inline constexpr int kFailOn = 123;
inline constexpr int kTimeout = 124;
inline constexpr int kHostError = 125;
} // namespace exit_status

// The process exit status for a VmExit.
[[nodiscard]] constexpr int to_exit_status(const VmExit& e) {
    switch (e.reason) {
    case ExitReason::GuestStatus: return e.status & 0xff;
    case ExitReason::ExpectMatched: return 0;
    case ExitReason::Reset: return exit_status::kReset;
    case ExitReason::PowerOff: return exit_status::kPowerOff;
    case ExitReason::TripleFault: return exit_status::kTripleFault;
    case ExitReason::InternalError: return exit_status::kInternalError;
    case ExitReason::FailOnMatched: return exit_status::kFailOn;
    case ExitReason::Timeout: return exit_status::kTimeout;
    case ExitReason::HostError: return exit_status::kHostError;
    case ExitReason::Signal: return 128 + e.status;
    case ExitReason::Stopped: return exit_status::kPowerOff;
    }
    return exit_status::kHostError;
}

[[nodiscard]] constexpr std::string_view to_string(ExitReason r) {
    switch (r) {
    case ExitReason::GuestStatus: return "guest-status";
    case ExitReason::ExpectMatched: return "expect-matched";
    case ExitReason::Reset: return "reset";
    case ExitReason::PowerOff: return "poweroff";
    case ExitReason::TripleFault: return "triple-fault";
    case ExitReason::InternalError: return "internal-error";
    case ExitReason::FailOnMatched: return "fail-on-matched";
    case ExitReason::Timeout: return "timeout";
    case ExitReason::HostError: return "host-error";
    case ExitReason::Signal: return "signal";
    case ExitReason::Stopped: return "stopped";
    }
    return "unknown";
}

// Anything that can end the VM: devices (debug-exit, i8042 reset), vCPU threads, the
// console matcher. The first request wins; later ones are ignored.
class VmExitSink {
public:
    virtual ~VmExitSink() = default;
    virtual void request_exit(VmExit e) = 0;
};

} // namespace kiln
