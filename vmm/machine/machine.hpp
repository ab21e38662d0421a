// Machine: one VM built from a MachineConfig, run until it ends.
//
//   auto m = Machine::create(cfg);      // KVM, memory, kernel, devices, vCPUs
//   auto exit = (*m)->run();            // blocks; vCPU threads + the I/O event loop
//   int status = to_exit_status(*exit);
//
// or, for an embedder that runs several: (*m)->start(), then poll state() / exit(),
// or wait(). stop(), shutdown(), pause(), resume(), stats() and subscribe() may be
// called from any thread (a signal watcher, a control socket, a scheduler).
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "firmware/boot.hpp"
#include "firmware/platform.hpp"
#include "vmm/base/event_loop.hpp"
#include "vmm/base/vm_exit.hpp"
#include "vmm/kvm/kvm.hpp"
#include "vmm/kvm/vm.hpp"
#include "vmm/machine/config.hpp"
#include "vmm/machine/console.hpp"
#include "vmm/machine/device_manager.hpp"
#include "vmm/machine/exit_latch.hpp"
#include "vmm/machine/machine_events.hpp"
#include "vmm/machine/run_stats.hpp"
#include "vmm/machine/vcpu_thread.hpp"
#include "vmm/memory/guest_memory.hpp"

namespace kiln {

namespace virtio {
class VirtioBlk;
class VirtioNet;
}

class Machine {
public:
    [[nodiscard]] static Result<std::unique_ptr<Machine>> create(const MachineConfig& cfg);
    ~Machine();
    Machine(const Machine&) = delete;
    Machine& operator=(const Machine&) = delete;

    // Starts the vCPUs and serves I/O on the calling thread until the VM ends.
    // Runs once; the Result is an error only when the machine could not start.
    [[nodiscard]] Result<VmExit> run();

    // Runs the machine on a thread of its own (what run() does on the caller's);
    // wait() joins it. The destructor stops and joins a machine still running.
    [[nodiscard]] Result<void> start();
    [[nodiscard]] Result<VmExit> wait();

    // Ends the VM from outside (thread-safe); `run()` then returns this exit.
    void stop(VmExit why);
    // A graceful stop: presses the ACPI power button (the guest's own shutdown path; a
    // guest that honours it ends as ExitReason::PowerOff) and ends the VM as
    // ExitReason::Stopped if it has not ended after `grace`.
    // A paused machine is resumed so the guest can act. Asking again only shortens the
    // grace period. Thread-safe.
    [[nodiscard]] Result<void> shutdown(std::chrono::milliseconds grace);

    [[nodiscard]] MachineState state() const;
    // How the VM ended, once it has.
    [[nodiscard]] std::optional<VmExit> exit() const;
    // Calls `cb` for every event from now on (machine_events.hpp) until the returned
    // Subscription is destroyed. A callback must not destroy this Machine (or anything
    // that joins its threads, like an ApiServer serving it).
    [[nodiscard]] Subscription subscribe(EventHub::Callback cb) { return {&events_, events_.subscribe(std::move(cb))}; }

    // Pauses every vCPU (parked outside KVM_RUN; devices finish what is in flight) and
    // returns once they all are; resume() lets them run on. Thread-safe, for a running
    // machine (a scheduler's pause / resume). A --timeout keeps counting while paused.
    [[nodiscard]] Result<void> pause();
    [[nodiscard]] Result<void> resume();
    [[nodiscard]] bool paused() const { return paused_.load(std::memory_order_acquire); }

    // Presses the ACPI power button (thread-safe, for a running machine): the guest gets
    // the GED's interrupt and decides; one that honours it powers off through ACPI S5,
    // and run() returns ExitReason::PowerOff. Fails when the guest has no ACPI.
    [[nodiscard]] Result<void> press_power_button();

    // For callers that watch more fds on the machine's I/O thread (the CLI's signals).
    [[nodiscard]] EventLoop& event_loop() { return *loop_; }

    [[nodiscard]] const firmware::BootInfo& boot_info() const { return boot_; }
    // The VM's and vCPUs' fds, for defer_close_to_child (deferred_teardown.hpp).
    [[nodiscard]] std::vector<int> kvm_fds() const;
    [[nodiscard]] const MachineConfig& config() const { return cfg_; }
    // The machine the guest sees (vCPUs, IOAPIC, virtio-mmio slots) and its command line.
    [[nodiscard]] const firmware::Platform& platform() const { return platform_; }
    [[nodiscard]] const std::string& cmdline() const { return cmdline_; }
    // Where the VM's threads run and its memory lives (vmm/host/cpu_placement.hpp).
    [[nodiscard]] const host::Placement& placement() const { return placement_; }
    // vCPU congestion, KVM counters and memory figures, sampled now (run_stats.hpp).
    // Callable from any thread, during the run and after it.
    [[nodiscard]] MachineStats stats() const;
    // Seconds since the vCPUs started (frozen once the VM ended; 0 before): cheap, unlike
    // stats(), which reads procfs and every vCPU's KVM counters.
    [[nodiscard]] double uptime_seconds() const;

private:
    explicit Machine(MachineConfig cfg);
    [[nodiscard]] Result<void> build();
    [[nodiscard]] Result<void> setup_input();
    void on_vm_end();
    [[nodiscard]] Result<VmExit> run_once();
    [[nodiscard]] std::function<void(const std::string&)> device_error_sink();
    void publish(MachineEvent::Kind kind, std::optional<VmExit> exit = std::nullopt, std::string message = {});
    [[nodiscard]] Result<void> write_stats_json() const;
    [[nodiscard]] Result<void> set_paused(bool paused);
    [[nodiscard]] Result<void> add_nics(std::vector<net::Tap> taps);

    MachineConfig cfg_;
    std::optional<Kvm> kvm_;
    std::optional<Vm> vm_;
    GuestMemory memory_;
    std::unique_ptr<EventLoop> loop_;
    std::unique_ptr<ExitLatch> exits_;
    std::unique_ptr<Console> console_;
    DeviceManager devices_;
    std::vector<std::unique_ptr<VcpuThread>> vcpus_;
    std::atomic<bool> stopping_{false};
    std::atomic<bool> running_{false}, paused_{false};
    std::mutex pause_mu_; // pause() vs resume()
    firmware::BootInfo boot_;
    firmware::Platform platform_;
    std::string cmdline_; // as the guest gets it: the user's, plus virtio_mmio.device= words
    Fd timer_fd_;
    Fd stats_json_; // --stats-json FILE, opened at start so a bad path fails before the run
    std::string paging_; // the host's paging mode as detected at start
    host::Placement placement_;
    std::vector<const virtio::VirtioBlk*> disks_; // owned by devices_, for the statistics
    std::vector<const virtio::VirtioNet*> nics_;
    // When the vCPUs started (steady_clock ns; 0: not yet): read by any thread.
    std::atomic<int64_t> started_ns_{0};
    // Orders state changes with their events: pause/resume, shutdown and the run's start
    // and end publish under it, so subscribers see them in the order they happened.
    // Recursive: a subscriber may pause or resume from its callback.
    mutable std::recursive_mutex lifecycle_mu_;
    std::atomic<int64_t> ended_ns_{0}; // uptime when the VM ended; 0 while it runs
    std::atomic<bool> ran_{false};
    EventHub events_;
    std::thread runner_;                  // start(): the thread that runs the machine
    std::optional<Result<VmExit>> runner_result_;
    std::atomic<bool> shutting_down_{false};
    Fd grace_timer_;                      // shutdown(): the hard stop after the grace period
    std::mutex grace_mu_;
    std::chrono::steady_clock::time_point grace_deadline_{};
    std::chrono::milliseconds grace_{0};
};

} // namespace kiln
