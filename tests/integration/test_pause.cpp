// Pause and resume through the C++ API (libkiln), in this process: a scheduler's view.
#include <doctest/doctest.h>

#include <chrono>
#include <thread>

#include "tests/support/files.hpp"
#include "vmm/machine/machine.hpp"

using namespace kiln;
using namespace std::chrono_literals;

TEST_CASE("embedding: pause parks every vCPU (no CPU time while paused), resume lets the guest finish") {
    test::ScratchDir dir;
    MachineConfig cfg;
    cfg.kernel_path = TESTGUEST_ELF;
    cfg.cmdline = "job=compute seconds=2";
    cfg.memory_bytes = 64 * layout::MiB;
    cfg.cpus = 2;
    cfg.console = {ConsoleConfig::Kind::File, dir / "console.log"};
    cfg.timeout_seconds = 60;
    auto m = Machine::create(cfg);
    REQUIRE(m);
    Machine& vm = **m;
    CHECK_FALSE(vm.pause()); // not running yet

    Result<VmExit> exit = fail("not run");
    std::thread runner([&] { exit = vm.run(); });
    while (vm.stats().uptime_seconds < 0.3) std::this_thread::sleep_for(10ms);

    REQUIRE(vm.pause());
    CHECK(vm.paused());
    const auto before = vm.stats();
    std::this_thread::sleep_for(1s);
    const auto after = vm.stats();
    REQUIRE(before.vcpus.size() == 2);
    for (size_t i = 0; i < 2; ++i) {
        CAPTURE(i);
        // Parked outside KVM_RUN: at most a few ms of CPU in a second.
        CHECK(after.vcpus[i].sched.run_ns - before.vcpus[i].sched.run_ns < 50'000'000ull);
    }
    REQUIRE(vm.resume());
    CHECK_FALSE(vm.paused());
    runner.join();
    REQUIRE(exit);
    CHECK(to_exit_status(*exit) == 0);
    CHECK(test::read_text(dir / "console.log").find("compute: iterations=") != std::string::npos);
    // The paused second shows: the boot vCPU ran for well under the VM's uptime.
    const auto end = vm.stats();
    CHECK(end.uptime_seconds >= 2.0);
    CHECK(double(end.vcpus[0].sched.run_ns) / 1e9 < end.uptime_seconds - 0.8);
    CHECK_FALSE(vm.resume()); // ended
}
