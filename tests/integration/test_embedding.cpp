// libkiln embedded (issue 6, item 3): several Machines in one process, driven through
// the public header, and the scheduler example run as a user would run it.
#include <doctest/doctest.h>

#include <chrono>
#include <mutex>
#include <regex>
#include <thread>

#include <kiln/kiln.hpp>

#include "tests/support/files.hpp"
#include "tests/support/process.hpp"

using namespace kiln;
using namespace std::chrono_literals;

namespace {

MachineConfig guest(std::string cmdline, uint32_t cpus = 1) {
    MachineConfig cfg;
    cfg.kernel_path = TESTGUEST_ELF;
    cfg.cmdline = std::move(cmdline);
    cfg.memory_bytes = 64 * layout::MiB;
    cfg.cpus = cpus;
    cfg.console.kind = ConsoleConfig::Kind::None;
    cfg.timeout_seconds = 120;
    return cfg;
}

// Records the names of the events a machine publishes.
struct EventLog {
    std::mutex mu;
    std::vector<std::string> kinds;
    std::optional<VmExit> exit;
    void operator()(const MachineEvent& e) {
        std::lock_guard lk(mu);
        kinds.emplace_back(to_string(e.kind));
        if (e.exit) exit = e.exit;
    }
    std::vector<std::string> get() {
        std::lock_guard lk(mu);
        return kinds;
    }
};

uint64_t run_ns(const Machine& m) { return m.stats().vcpus.at(0).sched.run_ns; }

} // namespace

TEST_CASE("embedding: two machines in one process - pause one while the other runs, stop one gracefully, events by callback") {
    auto a = Machine::create(guest("job=compute seconds=3"));
    auto b = Machine::create(guest("job=compute seconds=60"));
    REQUIRE(a);
    REQUIRE(b);
    Machine& ma = **a;
    Machine& mb = **b;
    EventLog log_a, log_b;
    auto sub_a = ma.subscribe([&](const MachineEvent& e) { log_a(e); });
    auto sub_b = mb.subscribe([&](const MachineEvent& e) { log_b(e); });
    CHECK(ma.state() == MachineState::Created);
    CHECK_FALSE(ma.exit());
    REQUIRE(ma.start());
    REQUIRE(mb.start());
    CHECK_FALSE(ma.start()); // a machine runs once
    while (ma.state() != MachineState::Running || mb.state() != MachineState::Running) std::this_thread::sleep_for(5ms);
    std::this_thread::sleep_for(300ms);

    REQUIRE(ma.pause());
    CHECK(ma.state() == MachineState::Paused);
    const uint64_t a0 = run_ns(ma), b0 = run_ns(mb);
    std::this_thread::sleep_for(700ms);
    CHECK(run_ns(ma) - a0 < 50'000'000u);  // parked
    CHECK(run_ns(mb) - b0 > 100'000'000u); // the other one ran on
    REQUIRE(ma.resume());

    // b has no shutdown path the test guest's compute job honours: the hard stop.
    const auto t0 = std::chrono::steady_clock::now();
    REQUIRE(mb.shutdown(500ms));
    CHECK(mb.state() == MachineState::Stopping);
    auto eb = mb.wait();
    REQUIRE(eb);
    CHECK(eb->reason == ExitReason::Stopped);
    CHECK(std::chrono::steady_clock::now() - t0 >= 450ms);
    CHECK(mb.state() == MachineState::Exited);
    REQUIRE(mb.exit());
    CHECK(mb.exit()->reason == ExitReason::Stopped);

    auto ea = ma.wait();
    REQUIRE(ea);
    CHECK(ea->reason == ExitReason::GuestStatus);
    CHECK(to_exit_status(*ea) == 0);
    CHECK(log_a.get() == std::vector<std::string>{"started", "paused", "resumed", "guest-exited"});
    CHECK(log_b.get() == std::vector<std::string>{"started", "stopping", "guest-exited"});
    REQUIRE(log_a.exit);
    CHECK(log_a.exit->reason == ExitReason::GuestStatus);
    CHECK_FALSE(ma.pause()); // ended
    CHECK_FALSE(mb.shutdown(1s));
}

TEST_CASE("embedding: a machine destroyed while it runs is stopped and joined, and one that was never started just goes") {
    {
        auto m = Machine::create(guest("job=compute seconds=60"));
        REQUIRE(m);
        REQUIRE((*m)->start());
        std::this_thread::sleep_for(200ms);
    } // destroyed running: must not hang or crash
    auto idle = Machine::create(guest("job=exit status=0"));
    REQUIRE(idle);
    CHECK_FALSE((*idle)->wait()); // not started
}

TEST_CASE("embedding: the scheduler example runs a queue of jobs two at a time and reports each exit status") {
    auto r = test::run_process({SCHEDULER_EXAMPLE, "-j", "2", TESTGUEST_ELF, "job=exit status=0", "job=exit status=3",
                                "job=compute seconds=1", "job=exit status=7", "job=exit status=0"});
    INFO(r.out, r.err);
    CHECK(r.exit_code == 0);
    const std::pair<int, int> want[] = {{0, 0}, {1, 3}, {2, 0}, {3, 7}, {4, 0}};
    for (auto [job, status] : want) {
        CAPTURE(job);
        CHECK(std::regex_search(r.out, std::regex(fmt::format("job {} started: ", job))));
        CHECK(std::regex_search(r.out, std::regex(fmt::format("job {} ended: exit status {} ", job, status))));
    }
    CHECK(r.out.find("5 jobs, 3 succeeded, 2 failed, at most 2 at once") != std::string::npos);
}

TEST_CASE("embedding: a guest that breaks a virtqueue raises an error event, and the VM runs on to the guest's own end") {
    test::ScratchDir dir;
    test::write_bytes(dir / "d.raw", std::vector<uint8_t>(1 << 20, 0));
    MachineConfig cfg = guest("job=blk-hostile");
    block::DiskSpec disk;
    disk.path = dir / "d.raw";
    cfg.disks.push_back(disk);
    auto m = Machine::create(cfg);
    REQUIRE(m);
    std::mutex mu;
    std::vector<MachineEvent> events;
    auto sub = (*m)->subscribe([&](const MachineEvent& e) {
        std::lock_guard lk(mu);
        events.push_back(e);
    });
    auto exit = (*m)->run();
    REQUIRE(exit);
    CHECK(to_exit_status(*exit) == 0); // blk-hostile: every malformed request answered as it must
    std::lock_guard lk(mu);
    std::vector<std::string> errors;
    for (const auto& e : events)
        if (e.kind == MachineEvent::Kind::Error) errors.push_back(e.message);
    REQUIRE(errors.size() == 1); // once per device, however often the guest insists
    CHECK(errors[0].find("virtio-blk0: queue stopped: ") == 0);
    CHECK(errors[0].find("(the device needs a reset)") != std::string::npos);
    CHECK(events.back().kind == MachineEvent::Kind::GuestExited);
}
