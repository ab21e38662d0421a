#include "vmm/api/vm_control.hpp"

#include "vmm/machine/machine.hpp"

namespace kiln::api {

MachineState MachineControl::state() const { return m_.state(); }
std::optional<VmExit> MachineControl::exit() const { return m_.exit(); }
MachineStats MachineControl::stats() const { return m_.stats(); }
double MachineControl::uptime_seconds() const { return m_.uptime_seconds(); }
const MachineConfig& MachineControl::config() const { return m_.config(); }
Result<void> MachineControl::pause() { return m_.pause(); }
Result<void> MachineControl::resume() { return m_.resume(); }
Result<void> MachineControl::shutdown(std::chrono::milliseconds grace) { return m_.shutdown(grace); }
void MachineControl::kill() { m_.stop({ExitReason::Stopped, 0, "killed through the control API"}); }
Subscription MachineControl::subscribe(EventHub::Callback cb) { return m_.subscribe(std::move(cb)); }

} // namespace kiln::api
