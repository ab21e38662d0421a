#include <doctest/doctest.h>

#include <string>

#include "vmm/machine/console.hpp"

using namespace kiln;

namespace {
struct Exits final : VmExitSink {
    std::vector<VmExit> got;
    void request_exit(VmExit e) override { got.push_back(std::move(e)); }
};
void feed(LineMatcher& m, std::string_view s) {
    m.feed({reinterpret_cast<const uint8_t*>(s.data()), s.size()});
}
} // namespace

TEST_CASE("console: --expect matches a whole line, once") {
    Exits exits;
    LineMatcher m(std::string("^Linux version"), std::nullopt, exits);
    feed(m, "Booting Linux version x\r\nLinux ver");
    CHECK(exits.got.empty()); // partial line, and the first line does not start with it
    feed(m, "sion 6.1\r\nLinux version again\n");
    REQUIRE(exits.got.size() == 1);
    CHECK(exits.got[0].reason == ExitReason::ExpectMatched);
    CHECK(exits.got[0].detail.find("Linux version 6.1") != std::string::npos);
}

TEST_CASE("console: the default --fail-on catches panics and Oops, not ordinary lines") {
    Exits exits;
    LineMatcher m(std::nullopt, std::string(kDefaultFailOn), exits);
    feed(m, "Freeing unused kernel memory\nOopsie daisy is not an oops\n");
    CHECK(exits.got.empty());
    feed(m, "[    1.0] Kernel panic - not syncing: VFS: Unable to mount root fs\n");
    REQUIRE(exits.got.size() == 1);
    CHECK(exits.got[0].reason == ExitReason::FailOnMatched);
    Exits e2;
    LineMatcher m2(std::nullopt, std::string(kDefaultFailOn), e2);
    feed(m2, "Oops: general protection fault, probably for non-canonical address\n");
    CHECK(e2.got.size() == 1);
}

TEST_CASE("console: fail-on wins over expect on the same line") {
    Exits exits;
    LineMatcher m(std::string("panic"), std::string("Kernel panic"), exits);
    feed(m, "Kernel panic - not syncing\n");
    REQUIRE(exits.got.size() == 1);
    CHECK(exits.got[0].reason == ExitReason::FailOnMatched);
}

TEST_CASE("console: overlong lines are tested in bounded pieces") {
    Exits exits;
    LineMatcher m(std::string("needle"), std::nullopt, exits);
    std::string hay(LineMatcher::kMaxLine * 3, 'x');
    feed(m, hay);
    CHECK(exits.got.empty());
    feed(m, "needle\n");
    CHECK(exits.got.size() == 1);
}
