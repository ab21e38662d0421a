// A tiny scheduler on libkiln: runs a queue of test-guest jobs, at most N at once, each
// a Machine in this process, and reports each job's exit status as it ends.
//
//   kiln_scheduler_example [-j N] KERNEL CMDLINE...
//   $ kiln_scheduler_example -j 2 build/guest-images/testguest.elf "job=exit status=0" "job=exit status=3"
//   job 0 started: job=exit status=0
//   job 1 started: job=exit status=3
//   job 0 ended: exit status 0 (guest-status: the guest reported exit status 0)
//   job 1 ended: exit status 3 (guest-status: the guest reported exit status 3)
//   2 jobs, 1 succeeded, 1 failed, at most 2 at once
//
// It learns that a job ended from the Machine's event callback (no polling), then
// collects the verdict with wait(). Exit status: 0 when every job ran to a verdict
// (whatever that verdict was), 1 when one could not be started, 2 on bad usage.
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <kiln/kiln.hpp>

namespace {

struct Job {
    size_t id = 0;
    std::string cmdline;
    std::unique_ptr<kiln::Machine> machine;
    kiln::Subscription events; // declared after the machine: unsubscribed first
};

} // namespace

int main(int argc, char** argv) {
    size_t limit = 2;
    int first = 1;
    if (argc > 2 && std::string(argv[1]) == "-j") {
        limit = std::strtoul(argv[2], nullptr, 10);
        first = 3;
    }
    if (limit == 0 || argc - first < 2) {
        std::fprintf(stderr, "usage: %s [-j N] KERNEL CMDLINE...\n", argv[0]);
        return 2;
    }
    kiln::setup_logging(spdlog::level::warn); // Kiln's own lines on stderr, only what matters
    const std::string kernel = argv[first];
    std::deque<Job> queue;
    for (int i = first + 1; i < argc; ++i) queue.push_back({queue.size(), argv[i], nullptr, {}});
    const size_t total = queue.size();

    std::mutex mu;
    std::condition_variable cv;
    std::vector<size_t> ended; // jobs whose guest-exited event came, not yet collected
    std::map<size_t, Job> running;
    size_t succeeded = 0, failed = 0, peak = 0;
    int status = 0;

    while (!queue.empty() || !running.empty()) {
        // Start jobs up to the limit.
        while (!queue.empty() && running.size() < limit) {
            Job job = std::move(queue.front());
            queue.pop_front();
            kiln::MachineConfig cfg;
            cfg.name = "job" + std::to_string(job.id);
            cfg.kernel_path = kernel;
            cfg.cmdline = job.cmdline;
            cfg.memory_bytes = 64 * kiln::layout::MiB;
            cfg.console.kind = kiln::ConsoleConfig::Kind::None;
            cfg.timeout_seconds = 120; // a scheduler never waits forever on a guest
            auto m = kiln::Machine::create(cfg);
            if (!m) {
                std::printf("job %zu not started: %s\n", job.id, m.error().message().c_str());
                status = 1;
                ++failed;
                continue;
            }
            job.machine = std::move(*m);
            const size_t id = job.id;
            job.events = job.machine->subscribe([&, id](const kiln::MachineEvent& e) {
                if (e.kind != kiln::MachineEvent::Kind::GuestExited) return;
                std::lock_guard lk(mu);
                ended.push_back(id);
                cv.notify_one();
            });
            if (auto s = job.machine->start(); !s) {
                std::printf("job %zu not started: %s\n", id, s.error().message().c_str());
                status = 1;
                ++failed;
                continue;
            }
            std::printf("job %zu started: %s\n", id, job.cmdline.c_str());
            std::lock_guard lk(mu);
            running.emplace(id, std::move(job));
            peak = std::max(peak, running.size());
        }
        if (running.empty()) continue;
        // Wait for the next one to end, and collect it.
        std::vector<Job> done;
        {
            std::unique_lock lk(mu);
            cv.wait(lk, [&] { return !ended.empty(); });
            for (size_t id : ended) {
                done.push_back(std::move(running.at(id)));
                running.erase(id);
            }
            ended.clear();
        }
        for (Job& job : done) {
            auto exit = job.machine->wait();
            if (!exit) {
                std::printf("job %zu failed to run: %s\n", job.id, exit.error().message().c_str());
                ++failed;
                continue;
            }
            const int code = kiln::to_exit_status(*exit);
            std::printf("job %zu ended: exit status %d (%s: %s)\n", job.id, code,
                        std::string(kiln::to_string(exit->reason)).c_str(), exit->detail.c_str());
            ++(code == 0 ? succeeded : failed);
        }
        std::fflush(stdout);
    }
    std::printf("%zu jobs, %zu succeeded, %zu failed, at most %zu at once\n", total, succeeded, failed, peak);
    return status;
}
