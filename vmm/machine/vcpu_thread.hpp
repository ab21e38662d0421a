// VcpuThread: one host thread per vCPU, named vcpuN, running KVM_RUN and dispatching
// its exits to the buses until the VM ends.
#pragma once

#include <atomic>
#include <condition_variable>
#include <optional>
#include <pthread.h>
#include <mutex>
#include <thread>

#include "vmm/base/vm_exit.hpp"
#include "vmm/bus/bus.hpp"
#include "vmm/host/cpu_set.hpp"
#include "vmm/kvm/kvm_stats.hpp"
#include "vmm/kvm/vcpu.hpp"
#include "vmm/machine/run_stats.hpp"
#include "vmm/memory/guest_memory.hpp"

namespace kiln {

struct VcpuContext {
    const Bus& pio;
    const Bus& mmio;
    const GuestMemory& memory;
    VmExitSink& exits;
    const std::atomic<bool>& stopping;
};

class VcpuThread {
public:
    // `cpus`: where the thread runs (it pins itself as it starts). `kvm_stats`: KVM's
    // counters for this vCPU, when the kernel offers them.
    VcpuThread(Vcpu vcpu, VcpuContext ctx, host::CpuSet cpus, std::optional<KvmStats> kvm_stats = std::nullopt)
        : vcpu_(std::move(vcpu)), ctx_(ctx), cpus_(cpus), kvm_stats_(std::move(kvm_stats)) {}
    ~VcpuThread() { join(); }
    VcpuThread(const VcpuThread&) = delete;
    VcpuThread& operator=(const VcpuThread&) = delete;

    [[nodiscard]] Result<void> start();
    // Makes KVM_RUN return at once, now and on the next entry: immediate_exit plus a
    // signal for a thread already inside KVM_RUN (or blocked waiting for a SIPI).
    void kick();
    void join();
    // Parks the thread outside KVM_RUN (the vCPU keeps its state in KVM) and returns once
    // it is parked, or has ended. resume() lets it run again. From any thread but this
    // vCPU's own; stop (kick with `stopping` set) also ends a parked thread.
    void pause();
    void resume();

    [[nodiscard]] const Vcpu& vcpu() const { return vcpu_; }
    // Live while the thread runs; afterwards the figures it took as it ended.
    [[nodiscard]] VcpuStats stats() const;
    // Installs the no-op handler for the kick signal, once per process.
    static void install_kick_handler();
    static int kick_signal();

private:
    void run_loop();
    void run_until_end();
    void park_while_paused();
    void keep_final_stats();
    // Returns false when the VM must end.
    bool handle_exit();
    void handle_io(kvm_run& run);
    void handle_mmio(kvm_run& run);
    void report_internal_error(kvm_run& run);
    [[nodiscard]] std::string describe_location() const;

    Vcpu vcpu_;
    VcpuContext ctx_;
    std::thread thread_;
    std::mutex thread_mu_; // kick() vs join(): never signal a joined thread
    bool joined_ = false;

    host::CpuSet cpus_;
    std::mutex pause_mu_;
    std::condition_variable pause_cv_;
    std::atomic<bool> pause_requested_{false};
    bool parked_ = false, ended_ = false; // under pause_mu_
    std::optional<KvmStats> kvm_stats_;
    std::atomic<pid_t> tid_{0};
    mutable std::mutex stats_mu_;
    std::optional<SchedStat> final_sched_; // the thread's schedstat as it ended
    std::string final_cpus_;
};

} // namespace kiln
