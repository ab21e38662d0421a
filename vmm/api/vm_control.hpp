// What the control API needs of a VM, as an interface: the server and its handlers are
// unit-tested against a fake, and served from a real Machine through MachineControl.
#pragma once

#include <chrono>
#include <optional>

#include "vmm/base/result.hpp"
#include "vmm/base/vm_exit.hpp"
#include "vmm/machine/config.hpp"
#include "vmm/machine/machine_events.hpp"
#include "vmm/machine/run_stats.hpp"

namespace kiln {
class Machine;
}

namespace kiln::api {

class VmControl {
public:
    virtual ~VmControl() = default;
    [[nodiscard]] virtual MachineState state() const = 0;
    [[nodiscard]] virtual std::optional<VmExit> exit() const = 0;
    [[nodiscard]] virtual MachineStats stats() const = 0;
    [[nodiscard]] virtual double uptime_seconds() const = 0;
    [[nodiscard]] virtual const MachineConfig& config() const = 0;
    [[nodiscard]] virtual Result<void> pause() = 0;
    [[nodiscard]] virtual Result<void> resume() = 0;
    [[nodiscard]] virtual Result<void> shutdown(std::chrono::milliseconds grace) = 0;
    virtual void kill() = 0;
    [[nodiscard]] virtual Subscription subscribe(EventHub::Callback cb) = 0;
};

// The real thing.
class MachineControl final : public VmControl {
public:
    explicit MachineControl(Machine& m) : m_(m) {}
    [[nodiscard]] MachineState state() const override;
    [[nodiscard]] std::optional<VmExit> exit() const override;
    [[nodiscard]] MachineStats stats() const override;
    [[nodiscard]] double uptime_seconds() const override;
    [[nodiscard]] const MachineConfig& config() const override;
    [[nodiscard]] Result<void> pause() override;
    [[nodiscard]] Result<void> resume() override;
    [[nodiscard]] Result<void> shutdown(std::chrono::milliseconds grace) override;
    void kill() override;
    [[nodiscard]] Subscription subscribe(EventHub::Callback cb) override;

private:
    Machine& m_;
};

} // namespace kiln::api
