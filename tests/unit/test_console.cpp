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
    auto m = LineMatcher::create(std::string("^Linux version"), std::nullopt, exits).value();
    feed(m, "Booting Linux version x\r\nLinux ver");
    CHECK(exits.got.empty()); // partial line, and the first line does not start with it
    feed(m, "sion 6.1\r\nLinux version again\n");
    REQUIRE(exits.got.size() == 1);
    CHECK(exits.got[0].reason == ExitReason::ExpectMatched);
    CHECK(exits.got[0].detail.find("Linux version 6.1") != std::string::npos);
}

TEST_CASE("console: the default --fail-on catches panics and Oops, not ordinary lines") {
    Exits exits;
    auto m = LineMatcher::create(std::nullopt, std::string(kDefaultFailOn), exits).value();
    feed(m, "Freeing unused kernel memory\nOopsie daisy is not an oops\n");
    CHECK(exits.got.empty());
    feed(m, "[    1.0] Kernel panic - not syncing: VFS: Unable to mount root fs\n");
    REQUIRE(exits.got.size() == 1);
    CHECK(exits.got[0].reason == ExitReason::FailOnMatched);
    Exits e2;
    auto m2 = LineMatcher::create(std::nullopt, std::string(kDefaultFailOn), e2).value();
    feed(m2, "Oops: general protection fault, probably for non-canonical address\n");
    CHECK(e2.got.size() == 1);
}

TEST_CASE("console: fail-on wins over expect on the same line") {
    Exits exits;
    auto m = LineMatcher::create(std::string("panic"), std::string("Kernel panic"), exits).value();
    feed(m, "Kernel panic - not syncing\n");
    REQUIRE(exits.got.size() == 1);
    CHECK(exits.got[0].reason == ExitReason::FailOnMatched);
}

TEST_CASE("console: overlong lines are tested in bounded pieces") {
    Exits exits;
    auto m = LineMatcher::create(std::string("needle"), std::nullopt, exits).value();
    std::string hay(LineMatcher::kMaxLine * 3, 'x');
    feed(m, hay);
    CHECK(exits.got.empty());
    feed(m, "needle\n");
    CHECK(exits.got.size() == 1);
}

TEST_CASE("console: expressions are POSIX extended (grep -E), with word boundaries") {
    Exits exits;
    auto m = LineMatcher::create(std::string(R"(^\[ *[0-9]+\.[0-9]+\] (ok|done)\b)"), std::nullopt, exits).value();
    feed(m, "[    1.5] okay\n[    1.5] oks\n");
    CHECK(exits.got.empty());
    feed(m, "[   12.250] done: all tests\n");
    CHECK(exits.got.size() == 1);
}

TEST_CASE("console: a line with NUL bytes is matched past them") {
    Exits exits;
    auto m = LineMatcher::create(std::string("tail"), std::nullopt, exits).value();
    feed(m, std::string_view("head\0tail\n", 10));
    CHECK(exits.got.size() == 1);
}

TEST_CASE("console: a bad expression is refused with the flag and the reason") {
    Exits exits;
    auto m = LineMatcher::create(std::string("(unclosed"), std::nullopt, exits);
    REQUIRE_FALSE(m);
    const std::string msg = m.error().message();
    CHECK(msg.find("--expect") != std::string::npos);
    CHECK(msg.find("(unclosed") != std::string::npos);
}

TEST_CASE("console: a hostile long line of alternations does not exhaust the stack") {
    Exits exits;
    auto m = LineMatcher::create(std::string("(a|b)*c"), std::nullopt, exits).value();
    std::string line(LineMatcher::kMaxLine - 1, 'a');
    line += "c\n";
    feed(m, line);
    CHECK(exits.got.size() == 1);
}

TEST_CASE("console: \\d and \\D work as digit classes, and stay literal inside brackets") {
    CHECK(Regex::rewrite_digit_classes(R"(filled \d+ MiB)") == "filled [0-9]+ MiB");
    CHECK(Regex::rewrite_digit_classes(R"(\D\.\d)") == R"([^0-9]\.[0-9])");
    CHECK(Regex::rewrite_digit_classes(R"([\d]\d)") == R"([\d][0-9])");
    CHECK(Regex::rewrite_digit_classes(R"([]\d]\d)") == R"([]\d][0-9])");
    Exits exits;
    auto m = LineMatcher::create(std::string(R"(filled \d+ MiB)"), std::nullopt, exits).value();
    feed(m, "filled x MiB\nmemfill: filled 12 MiB\n");
    CHECK(exits.got.size() == 1);
}
