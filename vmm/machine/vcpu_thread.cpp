#include "vmm/machine/vcpu_thread.hpp"

#include <csignal>
#include <cstring>
#include <mutex>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "vmm/host/cpu_placement.hpp"

namespace kiln {

namespace {
constexpr size_t kMaxInsnBytes = 15;

std::string hex_bytes(std::span<const uint8_t> b) {
    std::string s;
    for (size_t i = 0; i < b.size(); ++i) s += fmt::format("{}{:02x}", i ? " " : "", b[i]);
    return s;
}
} // namespace

int VcpuThread::kick_signal() { return SIGRTMIN; }

void VcpuThread::install_kick_handler() {
    static std::once_flag once;
    std::call_once(once, [] {
        struct sigaction sa{};
        // The handler does nothing: its only job is to make KVM_RUN return EINTR.
        sa.sa_handler = [](int) {};
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = 0; // no SA_RESTART
        ::sigaction(kick_signal(), &sa, nullptr);
    });
}

Result<void> VcpuThread::start() {
    install_kick_handler();
    try {
        thread_ = std::thread([this] { run_loop(); });
    } catch (const std::system_error& e) {
        return fail("starting the thread of vcpu{}: {}", vcpu_.id(), e.what());
    }
    return {};
}

void VcpuThread::kick() {
    vcpu_.run_area()->immediate_exit = 1;
    {
        std::lock_guard lk(thread_mu_);
        if (thread_.joinable() && !joined_) ::pthread_kill(thread_.native_handle(), kick_signal());
    }
    std::lock_guard lk(pause_mu_); // a parked thread re-checks `stopping`
    pause_cv_.notify_all();
}

void VcpuThread::pause() {
    pause_requested_.store(true, std::memory_order_release);
    kick();
    std::unique_lock lk(pause_mu_);
    pause_cv_.wait(lk, [this] { return parked_ || ended_; });
}

void VcpuThread::resume() {
    std::lock_guard lk(pause_mu_);
    pause_requested_.store(false, std::memory_order_release);
    pause_cv_.notify_all();
}

void VcpuThread::park_while_paused() {
    std::unique_lock lk(pause_mu_);
    parked_ = true;
    pause_cv_.notify_all();
    pause_cv_.wait(lk, [this] {
        return !pause_requested_.load(std::memory_order_acquire) || ctx_.stopping.load(std::memory_order_acquire);
    });
    parked_ = false;
    // The kick that paused us left immediate_exit set; a stop sets it again after.
    if (!ctx_.stopping.load(std::memory_order_acquire)) vcpu_.run_area()->immediate_exit = 0;
}

void VcpuThread::join() {
    std::thread t;
    {
        std::lock_guard lk(thread_mu_);
        if (!thread_.joinable()) return;
        joined_ = true;
        t = std::move(thread_);
    }
    t.join();
}

void VcpuThread::run_loop() {
    // Named from inside: the thread may already be gone when start() returns.
    auto name = fmt::format("vcpu{}", vcpu_.id());
    ::pthread_setname_np(::pthread_self(), name.c_str());
    // The kick signal must reach this thread even if the creator blocked it.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, kick_signal());
    ::pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
    tid_.store(::gettid(), std::memory_order_release);
    if (auto pinned = host::pin_task(0, cpus_); !pinned) {
        ctx_.exits.request_exit({ExitReason::HostError, 0, fmt::format("vcpu{}: {}", vcpu_.id(), pinned.error().message())});
        keep_final_stats();
        return;
    }
    run_until_end();
    {
        std::lock_guard lk(pause_mu_); // a pause() waiting for us returns
        ended_ = true;
        pause_cv_.notify_all();
    }
    // /proc/self/task/TID goes away with the thread: take its last figures now.
    keep_final_stats();
}

void VcpuThread::keep_final_stats() {
    const pid_t tid = tid_.load(std::memory_order_acquire);
    auto sched = read_schedstat(fmt::format("/proc/self/task/{}/schedstat", tid));
    auto cpus = host::read_cpus_allowed(0, tid);
    std::lock_guard lk(stats_mu_);
    if (sched) final_sched_ = *sched;
    if (cpus) final_cpus_ = cpus->to_string();
}

VcpuStats VcpuThread::stats() const {
    VcpuStats s;
    s.id = vcpu_.id();
    s.tid = tid_.load(std::memory_order_acquire);
    {
        std::lock_guard lk(stats_mu_);
        if (final_sched_) {
            s.sched = *final_sched_;
            s.cpus_allowed = final_cpus_;
        } else if (s.tid != 0) {
            // Still running (or ending right now: then the figures are simply zero).
            if (auto live = read_schedstat(fmt::format("/proc/self/task/{}/schedstat", s.tid))) s.sched = *live;
            if (auto cpus = host::read_cpus_allowed(0, s.tid)) s.cpus_allowed = cpus->to_string();
        }
    }
    if (kvm_stats_) {
        if (auto c = kvm_stats_->sample()) s.kvm = std::move(*c);
    }
    return s;
}

void VcpuThread::run_until_end() {
    while (!ctx_.stopping.load(std::memory_order_acquire)) {
        if (pause_requested_.load(std::memory_order_acquire)) {
            park_while_paused();
            continue;
        }
        int err = vcpu_.run();
        if (err == EINTR || err == EAGAIN) continue; // kicked, or a signal: re-check stop/pause
        if (err != 0) {
            ctx_.exits.request_exit({ExitReason::HostError, 0,
                                     fmt::format("vcpu{}: KVM_RUN: {}", vcpu_.id(), std::strerror(err))});
            return;
        }
        if (!handle_exit()) return;
    }
}

bool VcpuThread::handle_exit() {
    kvm_run& run = *vcpu_.run_area();
    switch (run.exit_reason) {
    case KVM_EXIT_IO: handle_io(run); return true;
    case KVM_EXIT_MMIO: handle_mmio(run); return true;
    case KVM_EXIT_INTR: return true;
    case KVM_EXIT_HLT:
        // Only reached without an in-kernel LAPIC; with one, HLT waits in the kernel.
        ctx_.exits.request_exit({ExitReason::PowerOff, 0, fmt::format("vcpu{} halted", vcpu_.id())});
        return false;
    case KVM_EXIT_SHUTDOWN:
        ctx_.exits.request_exit({ExitReason::TripleFault, 0,
                                 fmt::format("vcpu{}: triple fault (KVM_EXIT_SHUTDOWN) {}", vcpu_.id(),
                                             describe_location())});
        return false;
    case KVM_EXIT_SYSTEM_EVENT:
        switch (run.system_event.type) {
        case KVM_SYSTEM_EVENT_SHUTDOWN:
            ctx_.exits.request_exit({ExitReason::PowerOff, 0, "the guest powered off"});
            break;
        case KVM_SYSTEM_EVENT_RESET:
            ctx_.exits.request_exit({ExitReason::Reset, 0, "the guest reset the machine"});
            break;
        default:
            ctx_.exits.request_exit({ExitReason::InternalError, 0,
                                     fmt::format("vcpu{}: guest crash (system event {})", vcpu_.id(),
                                                 run.system_event.type)});
            break;
        }
        return false;
    case KVM_EXIT_INTERNAL_ERROR: report_internal_error(run); return false;
    case KVM_EXIT_FAIL_ENTRY:
        ctx_.exits.request_exit({ExitReason::InternalError, 0,
                                 fmt::format("vcpu{}: VM entry failed, hardware reason {:#x} {}", vcpu_.id(),
                                             run.fail_entry.hardware_entry_failure_reason,
                                             describe_location())});
        return false;
    default:
        ctx_.exits.request_exit({ExitReason::InternalError, 0,
                                 fmt::format("vcpu{}: unhandled KVM exit reason {} {}", vcpu_.id(),
                                             run.exit_reason, describe_location())});
        return false;
    }
}

void VcpuThread::handle_io(kvm_run& run) {
    // The data lives in the kvm_run page; KVM sized the exit so it stays inside it.
    auto* data = reinterpret_cast<uint8_t*>(&run) + run.io.data_offset;
    const size_t size = run.io.size;
    for (uint32_t i = 0; i < run.io.count; ++i) {
        std::span<uint8_t> chunk(data + i * size, size);
        if (run.io.direction == KVM_EXIT_IO_OUT) {
            if (!ctx_.pio.write(run.io.port, chunk))
                spdlog::trace("vcpu{}: write to unclaimed port {:#x}", vcpu_.id(), run.io.port);
        } else if (!ctx_.pio.read(run.io.port, chunk)) {
            std::memset(chunk.data(), 0xff, size); // an empty ISA bus reads all ones
        }
    }
}

void VcpuThread::handle_mmio(kvm_run& run) {
    std::span<uint8_t> data(run.mmio.data, std::min<size_t>(run.mmio.len, sizeof run.mmio.data));
    if (run.mmio.is_write) {
        if (!ctx_.mmio.write(run.mmio.phys_addr, data))
            spdlog::debug("vcpu{}: write to unclaimed MMIO {:#x}", vcpu_.id(), run.mmio.phys_addr);
    } else if (!ctx_.mmio.read(run.mmio.phys_addr, data)) {
        std::memset(data.data(), 0xff, data.size());
    }
}

std::string VcpuThread::describe_location() const {
    auto regs = vcpu_.get_regs();
    auto sregs = vcpu_.get_sregs();
    if (!regs || !sregs) return "(registers unavailable)";
    return fmt::format("at rip={:#x} (cs={:#x} cpl={} cr0={:#x} efer={:#x})", regs->rip, sregs->cs.selector,
                       sregs->cs.dpl, sregs->cr0, sregs->efer);
}

void VcpuThread::report_internal_error(kvm_run& run) {
    std::string what;
    switch (run.internal.suberror) {
    case KVM_INTERNAL_ERROR_EMULATION: what = "emulation failure"; break;
    case KVM_INTERNAL_ERROR_SIMUL_EX: what = "exception while delivering an exception"; break;
    case KVM_INTERNAL_ERROR_DELIVERY_EV: what = "failed to deliver an event"; break;
    default: what = fmt::format("internal error (suberror {})", run.internal.suberror); break;
    }

    // The instruction bytes: from KVM when it provides them, else read from guest memory
    // at the translated RIP.
    std::string bytes;
    if (run.internal.suberror == KVM_INTERNAL_ERROR_EMULATION &&
        (run.emulation_failure.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES) &&
        run.emulation_failure.insn_size > 0) {
        bytes = hex_bytes({run.emulation_failure.insn_bytes,
                           std::min<size_t>(run.emulation_failure.insn_size, kMaxInsnBytes)});
    } else if (auto regs = vcpu_.get_regs(); regs) {
        auto sregs = vcpu_.get_sregs();
        uint64_t linear = regs->rip + (sregs ? sregs->cs.base : 0);
        uint64_t phys = linear;
        if (sregs && (sregs->cr0 & 0x80000000u)) {
            auto t = vcpu_.translate(linear);
            phys = t ? *t : UINT64_MAX;
        }
        uint8_t buf[kMaxInsnBytes];
        size_t n = kMaxInsnBytes;
        while (n > 0 && !ctx_.memory.contains(GuestAddress(phys), n)) --n;
        if (n > 0 && ctx_.memory.read(GuestAddress(phys), {buf, n})) bytes = hex_bytes({buf, n});
    }
    if (bytes.empty()) bytes = "unavailable";
    ctx_.exits.request_exit({ExitReason::InternalError, 0,
                             fmt::format("vcpu{}: {} {}, instruction bytes: {}", vcpu_.id(), what,
                                         describe_location(), bytes)});
}

} // namespace kiln
