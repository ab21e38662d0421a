// The ACPI power button through the C++ API (libkiln), in this process: what a graceful
// stop does. The test guest polls the GED's event register in its waits and powers
// off through ACPI S5, like Linux does, or ignores the button (powerbutton=ignore).
#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <thread>

#include "tests/support/files.hpp"
#include "vmm/machine/machine.hpp"

using namespace kiln;
using namespace std::chrono_literals;

namespace {

MachineConfig idle_guest(const test::ScratchDir& dir, const std::string& cmdline) {
    MachineConfig cfg;
    cfg.kernel_path = TESTGUEST_ELF;
    cfg.cmdline = cmdline;
    cfg.memory_bytes = 64 * layout::MiB;
    cfg.cpus = 1;
    cfg.console = {ConsoleConfig::Kind::File, dir / "console.log"};
    cfg.timeout_seconds = 60;
    return cfg;
}

// Waits (up to 30 s) until the console shows `text`.
bool wait_for_console(const test::ScratchDir& dir, const std::string& text) {
    for (int i = 0; i < 3000; ++i) {
        if (test::read_text(dir / "console.log").find(text) != std::string::npos) return true;
        std::this_thread::sleep_for(10ms);
    }
    return false;
}

} // namespace

TEST_CASE("power button: a guest waiting in job=idle or a memfill hold powers off through ACPI S5 within a second") {
    // Both boot paths: the PVH entry gets the RSDP in hvm_start_info, the bzImage in
    // boot_params.
    for (auto [job, kernel] :
         {std::pair{"job=idle", TESTGUEST_ELF}, std::pair{"job=memfill mib=8 hold=60", TESTGUEST_BZIMAGE}}) {
        CAPTURE(job);
        test::ScratchDir dir;
        auto cfg = idle_guest(dir, job);
        cfg.kernel_path = kernel;
        auto m = Machine::create(cfg);
        REQUIRE_MESSAGE(m, m.error().message());
        Machine& vm = **m;
        CHECK_FALSE(vm.press_power_button()); // not running yet

        Result<VmExit> exit = fail("not run");
        std::thread runner([&] { exit = vm.run(); });
        CHECK(wait_for_console(dir, std::string(job) == "job=idle" ? "idle: waiting" : "memfill: filled"));
        const auto pressed = std::chrono::steady_clock::now();
        REQUIRE(vm.press_power_button());
        runner.join();
        const auto took = std::chrono::steady_clock::now() - pressed;
        REQUIRE(exit);
        CHECK(exit->reason == ExitReason::PowerOff);
        CHECK(exit->detail == "the guest powered off (ACPI S5)");
        CHECK(to_exit_status(*exit) == 120);
        CHECK(took < 1s);
        CHECK(test::read_text(dir / "console.log").find("power button: shutting down") != std::string::npos);
        CHECK_FALSE(vm.press_power_button()); // ended
    }
}

TEST_CASE("power button: with powerbutton=ignore the guest sees it and runs on until stopped") {
    test::ScratchDir dir;
    auto m = Machine::create(idle_guest(dir, "job=idle powerbutton=ignore"));
    REQUIRE(m);
    Machine& vm = **m;
    Result<VmExit> exit = fail("not run");
    std::thread runner([&] { exit = vm.run(); });
    CHECK(wait_for_console(dir, "idle: waiting"));
    REQUIRE(vm.press_power_button());
    CHECK(wait_for_console(dir, "power button: ignored"));
    std::this_thread::sleep_for(1s);
    CHECK(vm.stats().uptime_seconds > 1.0);
    CHECK(exit.error().message() == "not run"); // still running
    // The hard stop a graceful stop falls back on.
    vm.stop({ExitReason::Stopped, 0, "stopped by the test"});
    runner.join();
    REQUIRE(exit);
    CHECK(exit->reason == ExitReason::Stopped);
    CHECK(test::read_text(dir / "console.log").find("shutting down") == std::string::npos);
}

TEST_CASE("power button: without ACPI tables there is no button to press") {
    test::ScratchDir dir;
    auto cfg = idle_guest(dir, "job=idle seconds=30");
    cfg.acpi = false;
    auto m = Machine::create(cfg);
    REQUIRE(m);
    Machine& vm = **m;
    Result<VmExit> exit = fail("not run");
    std::thread runner([&] { exit = vm.run(); });
    CHECK(wait_for_console(dir, "idle: waiting"));
    auto r = vm.press_power_button();
    REQUIRE_FALSE(r);
    CHECK(r.error().message() == "the guest has no ACPI power button (--acpi off)");
    vm.stop({ExitReason::Stopped, 0, "stopped by the test"});
    runner.join();
    REQUIRE(exit);
    CHECK(exit->reason == ExitReason::Stopped);
}
