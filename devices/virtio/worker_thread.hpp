// Starting a virtio device's queue worker thread: the part every device shares.
#pragma once

#include <pthread.h>
#include <sched.h>

#include <future>
#include <optional>
#include <string>
#include <system_error>
#include <thread>

#include "vmm/base/result.hpp"

namespace kiln::virtio {

// Starts `thread` running `init` then, if init succeeded, `run`; returns init's result
// once it is known (joining the thread when it failed). The thread is named (at most 15
// characters) and pinned to `cpus` first: the workers start from a vCPU thread at
// DRIVER_OK and would otherwise inherit its pinning, and an io_uring ring's kernel
// workers take the affinity of the thread that made the ring. Rings are made in `init`
// on the worker itself: with SINGLE_ISSUER and DEFER_TASKRUN only that thread may use
// them, and completions are run when it asks for them, not by interrupting it.
template <class Init, class Run>
[[nodiscard]] Result<void> start_worker(std::thread& thread, std::string name, const std::optional<cpu_set_t>& cpus,
                                        Init init, Run run) {
    std::promise<Result<void>> ready;
    auto started = ready.get_future();
    try {
        thread = std::thread([&ready, name, cpus, init = std::move(init), run = std::move(run)]() mutable {
        ::pthread_setname_np(::pthread_self(), name.substr(0, 15).c_str());
        Result<void> r = {};
        if (cpus) {
            if (const int e = ::pthread_setaffinity_np(::pthread_self(), sizeof *cpus, &*cpus); e != 0)
                r = fail_errno(fmt::format("pinning worker {} to the I/O CPUs", name), e);
        }
        if (r) r = init();
        const bool ok = r.has_value();
        ready.set_value(std::move(r)); // `ready` is gone after this
        if (ok) run();
    });
    } catch (const std::system_error& e) {
        return fail("starting worker {}: {}", name, e.what());
    }
    auto r = started.get();
    if (!r) thread.join();
    return r;
}

} // namespace kiln::virtio
