// Boots the test guest on the real /dev/kvm through the kiln binary and checks what the
// guest printed and the exit status kiln returned.
#include <doctest/doctest.h>

#include <algorithm>
#include <fstream>
#include <regex>
#include <string>

#include "tests/support/process.hpp"

using kiln::test::run_kiln;

namespace {

struct Guest {
    const char* name;
    const char* path;
    const char* boot; // what the guest reports as its boot path
};
const Guest kGuests[] = {{"pvh", TESTGUEST_ELF, "pvh"}, {"bzimage", TESTGUEST_BZIMAGE, "bzimage"}};

kiln::test::ProcessResult boot(const Guest& g, const std::string& cmdline, std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"run", "--kernel", g.path, "--cmdline", cmdline, "--memory", "128M"};
    args.insert(args.end(), extra.begin(), extra.end());
    return run_kiln(args);
}

std::string fmt_checked_in(int n) { return "smp: " + std::to_string(n) + " of " + std::to_string(n) + " cpus checked in"; }

void check_exit(const kiln::test::ProcessResult& r, int expected) {
    INFO("stdout: " << r.out);
    INFO("stderr: " << r.err);
    REQUIRE_FALSE(r.timed_out);
    CHECK(r.term_signal == 0);
    CHECK(r.exit_code == expected);
}

} // namespace

TEST_CASE("boot: job=hello prints the greeting, both boot formats") {
    for (const auto& g : kGuests) {
        CAPTURE(g.name);
        auto r = boot(g, "job=hello");
        check_exit(r, 0);
        CHECK(r.out.find("Hello from the Kiln test guest") != std::string::npos);
        CHECK(r.out.find(std::string("boot=") + g.boot) != std::string::npos);
        CHECK(r.out.find("memory=128 MiB") != std::string::npos);
        CHECK(r.err.empty());
    }
}

TEST_CASE("boot: job=exit passes the guest's status through unchanged") {
    for (const auto& g : kGuests) {
        for (int status : {0, 1, 42, 119, 255}) {
            CAPTURE(g.name);
            CAPTURE(status);
            check_exit(boot(g, "job=exit status=" + std::to_string(status)), status);
        }
    }
}

TEST_CASE("boot: reset, triple fault and emulation failure each end the VM with their own status") {
    for (const auto& g : kGuests) {
        CAPTURE(g.name);
        SUBCASE("i8042 reset") {
            auto r = boot(g, "job=reset");
            check_exit(r, 119);
            CHECK(r.err.find("reset") != std::string::npos);
        }
        SUBCASE("triple fault") {
            auto r = boot(g, "job=fault kind=triple");
            check_exit(r, 121);
            CHECK(r.err.find("vcpu0: triple fault") != std::string::npos);
        }
        SUBCASE("emulation failure: one line with the vCPU, RIP and instruction bytes") {
            auto r = boot(g, "job=fault kind=emulation");
            check_exit(r, 122);
            // popcnt (f3 0f b8 /r) on MMIO: KVM's emulator lacks it.
            static const std::regex line(
                R"(kiln: vcpu0: emulation failure at rip=0x[0-9a-f]+ .*instruction bytes: f3 0f b8 [0-9a-f ]+\(exit status 122\)
)");
            CHECK(std::regex_search(r.err, line));
            CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
        }
        SUBCASE("a ring-3 exception is the guest's own verdict (status 3)") {
            auto r = boot(g, "job=fault kind=gp");
            check_exit(r, 3);
            CHECK(r.out.find("testguest: exception 13") != std::string::npos);
        }
    }
}

TEST_CASE("boot: job=smp starts every vCPU (1, 2, 4)") {
    for (const auto& g : kGuests) {
        for (int cpus : {1, 2, 4}) {
            CAPTURE(g.name);
            CAPTURE(cpus);
            auto r = boot(g, "job=smp", {"--cpus", std::to_string(cpus), "--timeout", "60"});
            check_exit(r, cpus);
            CHECK(r.out.find(fmt_checked_in(cpus)) != std::string::npos);
        }
    }
}

TEST_CASE("boot: job=timer counts timer interrupts at a plausible rate") {
    for (const auto& g : kGuests) {
        CAPTURE(g.name);
        auto r = boot(g, "job=timer ms=500", {"--timeout", "60"});
        check_exit(r, 0);
        std::smatch m;
        REQUIRE(std::regex_search(r.out, m, std::regex(R"(timer: ticks=(\d+))")));
        CHECK(std::stoi(m[1]) > 0);
    }
}

TEST_CASE("boot: job=compute runs in ring 3 and reports a rate") {
    for (const auto& g : kGuests) {
        CAPTURE(g.name);
        auto r = boot(g, "job=compute seconds=1", {"--timeout", "60"});
        check_exit(r, 0);
        std::smatch m;
        REQUIRE(std::regex_search(r.out, m, std::regex(R"(compute: iterations=(\d+))")));
        CHECK(std::stoull(m[1]) > 0);
    }
}

TEST_CASE("boot: job=memfill fills guest memory") {
    for (const auto& g : kGuests) {
        CAPTURE(g.name);
        auto r = boot(g, "job=memfill mib=64 seconds=0", {"--timeout", "60"});
        check_exit(r, 0);
        CHECK(r.out.find("memfill: filled 64 MiB") != std::string::npos);
        // Asking for more than the guest has is the guest's usage error.
        check_exit(boot(g, "job=memfill mib=4096"), 2);
    }
}

TEST_CASE("run: --timeout stops a guest that does not end, with status 124") {
    auto r = boot(kGuests[0], "job=memfill mib=1 seconds=600", {"--timeout", "1.5"});
    check_exit(r, 124);
    CHECK(r.wall_seconds < 20);
    CHECK(r.err.find("timed out") != std::string::npos);
}

TEST_CASE("run: --expect ends the VM with 0 when a console line matches") {
    auto r = boot(kGuests[0], "job=memfill mib=1 seconds=600", {"--expect", "^memfill: filled", "--timeout", "60"});
    check_exit(r, 0);
    CHECK(r.wall_seconds < 30);
}

TEST_CASE("run: --fail-on ends the VM with 123 when a console line matches") {
    auto r = boot(kGuests[1], "job=memfill mib=1 seconds=600", {"--fail-on", "filled \\d+ MiB", "--timeout", "60"});
    check_exit(r, 123);
    CHECK(r.err.find("--fail-on") != std::string::npos);
}

TEST_CASE("run: --console file:PATH and none") {
    std::string path = std::string(KILN_BINARY_DIR) + "/console-test.log";
    std::remove(path.c_str());
    auto r = boot(kGuests[0], "job=hello", {"--console", "file:" + path});
    check_exit(r, 0);
    CHECK(r.out.empty());
    std::ifstream f(path);
    std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    CHECK(text.find("Hello from the Kiln test guest") != std::string::npos);
    auto n = boot(kGuests[0], "job=hello", {"--console", "none"});
    check_exit(n, 0);
    CHECK(n.out.empty());
}

TEST_CASE("embedding: the example program runs a guest through the C++ API") {
    auto r = kiln::test::run_process({EMBED_EXAMPLE, TESTGUEST_ELF, "job=exit status=7"});
    check_exit(r, 7);
    CHECK(r.out.find("guest ended: guest-status, exit status 7") != std::string::npos);
    auto h = kiln::test::run_process({EMBED_EXAMPLE, TESTGUEST_BZIMAGE});
    check_exit(h, 0);
    CHECK(h.out.find("Hello from the Kiln test guest") != std::string::npos);
}

TEST_CASE("boot: --paging refuses a host whose paging differs, in one line, and runs where it matches") {
    // This host's mode, as Kiln detects it, from its info log.
    auto r = kiln::test::run_kiln({"run", "--kernel", TESTGUEST_ELF, "--memory", "64M", "--cmdline",
                                   "job=exit status=0", "--log-level", "info"});
    REQUIRE(r.exit_code == 0);
    const bool shadow = r.err.find("host paging: shadow") != std::string::npos;
    const bool two_d = r.err.find("host paging: ept") != std::string::npos ||
                       r.err.find("host paging: npt") != std::string::npos;
    REQUIRE_MESSAGE((shadow || two_d), r.err);
    const std::string match = shadow ? "shadow" : "ept", other = shadow ? "ept" : "shadow";
    r = kiln::test::run_kiln({"run", "--kernel", TESTGUEST_ELF, "--memory", "64M", "--cmdline", "job=exit status=3",
                              "--paging", match});
    CHECK(r.exit_code == 3);
    r = kiln::test::run_kiln({"run", "--kernel", TESTGUEST_ELF, "--memory", "64M", "--cmdline", "job=exit status=3",
                              "--paging", other});
    CHECK(r.exit_code == 125);
    CHECK(r.err.find("kiln: error: --paging " + other + ": this host's KVM uses") == 0);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
}
