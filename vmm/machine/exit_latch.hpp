// ExitLatch: collects the first request to end the VM and tells the machine, which
// stops every vCPU. Later requests (the other vCPUs noticing) are ignored.
#pragma once

#include <atomic>
#include <functional>
#include <mutex>
#include <optional>

#include "vmm/base/vm_exit.hpp"

namespace kiln {

class ExitLatch final : public VmExitSink {
public:
    explicit ExitLatch(std::function<void()> on_first) : on_first_(std::move(on_first)) {}

    void request_exit(VmExit e) override {
        {
            std::lock_guard lk(mu_);
            if (exit_) return;
            exit_ = std::move(e);
            ended_.store(true, std::memory_order_release);
        }
        on_first_();
    }
    [[nodiscard]] bool ended() const { return ended_.load(std::memory_order_acquire); }
    [[nodiscard]] std::optional<VmExit> result() const {
        std::lock_guard lk(mu_);
        return exit_;
    }

private:
    std::function<void()> on_first_;
    mutable std::mutex mu_;
    std::optional<VmExit> exit_;
    std::atomic<bool> ended_{false};
};

} // namespace kiln
