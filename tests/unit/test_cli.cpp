#include <doctest/doctest.h>

#include "vmm/cli/cli.hpp"

using namespace kiln;
using kiln::cli::parse;

namespace {
Result<cli::RunCommand> parse_run(std::vector<std::string> args) {
    args.insert(args.begin(), "run");
    auto c = parse(args);
    if (!c) return std::unexpected(c.error());
    if (!std::holds_alternative<cli::RunCommand>(*c)) return fail("not a run command");
    return std::get<cli::RunCommand>(*c);
}
std::string error_of(std::vector<std::string> args) {
    auto c = parse(args);
    REQUIRE_FALSE(c);
    return c.error().message();
}
} // namespace

TEST_CASE("cli: run with every flag") {
    auto r = parse_run({"--kernel", "vmlinux", "--initrd=initrd.img", "--cmdline", "console=ttyS0 quiet",
                        "--memory", "2G", "--cpus=4", "--console", "file:/tmp/out.log", "--timeout", "2.5",
                        "--expect", "login:", "--fail-on", "BUG", "--log-level", "debug"});
    REQUIRE(r);
    const auto& c = r->config;
    CHECK(c.kernel_path == "vmlinux");
    CHECK(c.initrd_path == "initrd.img");
    CHECK(c.cmdline == "console=ttyS0 quiet");
    CHECK(c.memory_bytes == (uint64_t(2) << 30));
    CHECK(c.cpus == 4);
    CHECK(c.console.kind == ConsoleConfig::Kind::File);
    CHECK(c.console.path == "/tmp/out.log");
    CHECK(c.timeout_seconds == doctest::Approx(2.5));
    CHECK(*c.expect == "login:");
    CHECK(*c.fail_on == "BUG");
    CHECK(r->log_level == spdlog::level::debug);
}

TEST_CASE("cli: defaults") {
    auto r = parse_run({"--kernel", "k"});
    REQUIRE(r);
    CHECK(r->config.memory_bytes == 512u << 20);
    CHECK(r->config.cpus == 1);
    CHECK(r->config.console.kind == ConsoleConfig::Kind::Stdout);
    CHECK_FALSE(r->config.timeout_seconds);
    CHECK_FALSE(r->config.expect);
    REQUIRE(r->config.fail_on);
    CHECK(*r->config.fail_on == kDefaultFailOn);
    CHECK(r->log_level == spdlog::level::warn);
    auto none = parse_run({"--kernel", "k", "--fail-on", "", "--console", "none"});
    REQUIRE(none);
    CHECK_FALSE(none->config.fail_on);
    CHECK(none->config.console.kind == ConsoleConfig::Kind::None);
}

TEST_CASE("cli: help and version") {
    auto h = parse({"help"});
    REQUIRE(h);
    CHECK(std::get<cli::ShowHelp>(*h).text.find("kiln run") != std::string::npos);
    auto rh = parse({"run", "--help"});
    REQUIRE(rh);
    CHECK(std::get<cli::ShowHelp>(*rh).text.find("Exit status") != std::string::npos);
    auto hr = parse({"help", "run"});
    REQUIRE(hr);
    CHECK(std::get<cli::ShowHelp>(*hr).text == cli::run_help());
    CHECK(std::holds_alternative<cli::ShowVersion>(*parse({"--version"})));
}

TEST_CASE("cli: errors are one clear line") {
    CHECK(error_of({}).find("no command") != std::string::npos);
    CHECK(error_of({"frobnicate"}) == "unknown command 'frobnicate' (try 'kiln help')");
    CHECK(error_of({"run", "--kernel", "k", "--bogus"}).find("unknown flag '--bogus'") != std::string::npos);
    CHECK(error_of({"run"}).find("no kernel given") != std::string::npos);
    CHECK(error_of({"run", "--kernel"}).find("--kernel needs a value") != std::string::npos);
    CHECK(error_of({"run", "--kernel", "k", "--memory", "0"}).find("--memory must be larger than 0") != std::string::npos);
    CHECK(error_of({"run", "--kernel", "k", "--memory", "lots"}).find("invalid size 'lots'") != std::string::npos);
    CHECK(error_of({"run", "--kernel", "k", "--memory", "99999999999T"}).find("too large") != std::string::npos);
    CHECK(error_of({"run", "--kernel", "k", "--cpus", "0"}).find("--cpus must be at least 1") != std::string::npos);
    CHECK(error_of({"run", "--kernel", "k", "--cpus", "two"}).find("not a whole number") != std::string::npos);
    CHECK(error_of({"run", "--kernel", "k", "--cpus", "1000"}).find("above") != std::string::npos);
    CHECK(error_of({"run", "--kernel", "k", "--timeout", "-1"}).find("positive") != std::string::npos);
    CHECK(error_of({"run", "--kernel", "k", "--timeout", "soon"}).find("not a number") != std::string::npos);
    CHECK(error_of({"run", "--kernel", "k", "--console", "tty"}).find("not stdout, file:PATH or none") != std::string::npos);
    CHECK(error_of({"run", "--kernel", "k", "--console", "file:"}).find("needs a path") != std::string::npos);
    CHECK(error_of({"run", "--kernel", "k", "--expect", "(unclosed"}).find("not a valid regular expression") != std::string::npos);
    CHECK(error_of({"run", "--kernel", "k", "--log-level", "loud"}).find("unknown log level") != std::string::npos);
    CHECK(error_of({"run", "stray"}).find("unexpected argument 'stray'") != std::string::npos);
    for (auto args : std::vector<std::vector<std::string>>{{"frob"}, {"run"}, {"run", "--kernel", "k", "--memory", "x"}})
        CHECK(error_of(args).find('\n') == std::string::npos);
}

TEST_CASE("size parsing") {
    CHECK(*parse_size("512M") == 512ull << 20);
    CHECK(*parse_size("2G") == 2ull << 30);
    CHECK(*parse_size("2g") == 2ull << 30);
    CHECK(*parse_size("2GiB") == 2ull << 30);
    CHECK(*parse_size("64K") == 64ull << 10);
    CHECK(*parse_size("1T") == 1ull << 40);
    CHECK(*parse_size("4096") == 4096);
    CHECK(*parse_size("0") == 0);
    for (auto bad : {"", "M", "-1G", "1.5G", "12Q", " 1G", "1G ", "0x10"}) {
        INFO(bad);
        CHECK_FALSE(parse_size(bad));
    }
    CHECK_FALSE(parse_size("17179869184G")); // 2^34 GiB = 2^64 bytes
    CHECK(parse_size("99999999999999999999999").error().message().find("too large") != std::string::npos);
}
