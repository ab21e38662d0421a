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

TEST_CASE("cli: disks and device discovery flags") {
    auto r = parse_run({"--kernel", "k", "--disk", "path=base.img,snapshot=on,cache=none", "--disk=scratch=1G",
                        "--acpi", "off", "--dtb", "--dump-acpi", "acpi-out", "--dump-dtb=kiln.dtb"});
    REQUIRE_MESSAGE(r, r.error().message());
    const auto& c = r->config;
    REQUIRE(c.disks.size() == 2);
    CHECK(c.disks[0].path == "base.img");
    CHECK(c.disks[0].snapshot);
    CHECK(c.disks[0].cache == block::Cache::None);
    CHECK(c.disks[1].path.empty());
    CHECK(c.disks[1].scratch_size == (uint64_t(1) << 30));
    CHECK_FALSE(c.acpi);
    CHECK(c.dtb);
    CHECK(c.dump_acpi_dir == "acpi-out");
    CHECK(c.dump_dtb_path == "kiln.dtb");
    auto d = parse_run({"--kernel", "k"});
    REQUIRE(d);
    CHECK(d->config.acpi);
    CHECK_FALSE(d->config.dtb);
    CHECK(d->config.disks.empty());

    CHECK(error_of({"run", "--kernel", "k", "--acpi", "maybe"}) == "--acpi: 'maybe' is not on or off");
    CHECK(error_of({"run", "--kernel", "k", "--dtb=yes"}) == "--dtb takes no value");
    CHECK(error_of({"run", "--kernel", "k", "--dump-acpi", ""}) == "--dump-acpi needs a directory");
    CHECK(error_of({"run", "--kernel", "k", "--disk"}) == "run: --disk needs a value (see 'kiln run --help')");
    CHECK(error_of({"run", "--kernel", "k", "--disk", "path=a,cache=maybe"}).find("cache") != std::string::npos);
    std::vector<std::string> many{"run", "--kernel", "k"};
    for (int i = 0; i < 20; ++i) many.insert(many.end(), {"--disk", "scratch=1M"});
    CHECK(error_of(many) == "20 disks and 0 NICs: at most 19 virtio devices fit the machine");
}

TEST_CASE("cli: kiln disk create") {
    auto c = parse({"disk", "create", "--backing", "base.img", "--backing-format=raw", "--cluster-size", "4K",
                    "child.qcow2"});
    REQUIRE_MESSAGE(c, c.error().message());
    REQUIRE(std::holds_alternative<cli::DiskCreateCommand>(*c));
    const auto& s = std::get<cli::DiskCreateCommand>(*c).spec;
    CHECK(s.path == "child.qcow2");
    CHECK(s.backing == "base.img");
    CHECK(s.backing_format == block::Format::Raw);
    CHECK(s.cluster_bits == 12);
    CHECK_FALSE(s.size);
    auto sized = parse({"disk", "create", "--size", "1T", "scratch.qcow2"});
    REQUIRE(sized);
    CHECK(*std::get<cli::DiskCreateCommand>(*sized).spec.size == (uint64_t(1) << 40));
    CHECK(std::holds_alternative<cli::ShowHelp>(*parse({"disk", "--help"})));
    CHECK(std::holds_alternative<cli::ShowHelp>(*parse({"help", "disk"})));

    CHECK(error_of({"disk", "create"}) == "disk create: no image name given (see 'kiln disk --help')");
    CHECK(error_of({"disk", "create", "x.qcow2"}) == "disk create: give --size, or --backing to take its size");
    CHECK(error_of({"disk", "create", "a", "b", "--size", "1G"}) ==
          "disk create: two image names, 'a' and 'b' (see 'kiln disk --help')");
    CHECK(error_of({"disk", "create", "--size", "1000", "x"}) == "--size must be a non-zero multiple of 512 bytes");
    CHECK(error_of({"disk", "create", "--size", "1G", "--cluster-size", "3K", "x"}) ==
          "--cluster-size must be a power of two from 512 to 2M, not 3072");
    CHECK(error_of({"disk", "create", "--size", "1G", "--backing-format", "raw", "x"}) ==
          "disk create: --backing-format without --backing");
    CHECK(error_of({"disk", "create", "--frob", "x"}) == "disk create: unknown flag '--frob' (see 'kiln disk --help')");
    CHECK(error_of({"disk", "remove", "x"}) == "disk: unknown command 'remove' (see 'kiln disk --help')");
}

TEST_CASE("cli: --paging") {
    CHECK(parse_run({"--kernel", "k"})->config.paging == MachineConfig::Paging::Any);
    CHECK(parse_run({"--kernel", "k", "--paging", "ept"})->config.paging == MachineConfig::Paging::TwoDimensional);
    CHECK(parse_run({"--kernel", "k", "--paging=npt"})->config.paging == MachineConfig::Paging::TwoDimensional);
    CHECK(parse_run({"--kernel", "k", "--paging", "shadow"})->config.paging == MachineConfig::Paging::Shadow);
    CHECK(error_of({"run", "--kernel", "k", "--paging", "tdp"}) == "--paging: 'tdp' is not ept, npt, shadow or any");
}

TEST_CASE("cli: kiln host check and kiln host paging set") {
    auto check = parse({"host", "check"});
    REQUIRE(check);
    REQUIRE(std::holds_alternative<cli::HostCheckCommand>(*check));
    CHECK_FALSE(std::get<cli::HostCheckCommand>(*check).json);
    auto json = parse({"host", "check", "--json"});
    REQUIRE(json);
    CHECK(std::get<cli::HostCheckCommand>(*json).json);

    auto set = parse({"host", "paging", "set", "shadow", "--dry-run"});
    REQUIRE(set);
    REQUIRE(std::holds_alternative<cli::HostPagingSetCommand>(*set));
    CHECK(std::get<cli::HostPagingSetCommand>(*set).target == host::PagingTarget::Shadow);
    CHECK(std::get<cli::HostPagingSetCommand>(*set).dry_run);
    for (const char* word : {"ept", "npt"}) {
        auto two = parse({"host", "paging", "set", "--dry-run", word});
        REQUIRE(two);
        CHECK(std::get<cli::HostPagingSetCommand>(*two).target == host::PagingTarget::TwoDimensional);
    }
    auto real = parse({"host", "paging", "set", "ept"});
    REQUIRE(real);
    CHECK_FALSE(std::get<cli::HostPagingSetCommand>(*real).dry_run);

    for (std::vector<std::string> help : std::vector<std::vector<std::string>>{
             {"host"}, {"host", "--help"}, {"host", "-h"}, {"help", "host"}, {"host", "check", "--help"},
             {"host", "paging", "--help"}, {"host", "paging", "set", "ept", "-h"}}) {
        auto h = parse(help);
        REQUIRE(h);
        REQUIRE(std::holds_alternative<cli::ShowHelp>(*h));
        CHECK(std::get<cli::ShowHelp>(*h).text == cli::host_help());
    }
    CHECK(cli::main_help().find("kiln host check") != std::string::npos);

    CHECK(error_of({"host", "status"}) == "host: unknown command 'status' (see 'kiln host --help')");
    CHECK(error_of({"host", "check", "--yaml"}) == "host check: unknown argument '--yaml' (see 'kiln host --help')");
    CHECK(error_of({"host", "paging"}) == "host paging: expected 'set ept|npt|shadow' (see 'kiln host --help')");
    CHECK(error_of({"host", "paging", "get"}) == "host paging: expected 'set ept|npt|shadow' (see 'kiln host --help')");
    CHECK(error_of({"host", "paging", "set"}) ==
          "host paging set: no mode given: ept, npt or shadow (see 'kiln host --help')");
    CHECK(error_of({"host", "paging", "set", "--dry-run"}) ==
          "host paging set: no mode given: ept, npt or shadow (see 'kiln host --help')");
    CHECK(error_of({"host", "paging", "set", "any"}) == "host paging set: 'any' is not ept, npt or shadow");
    CHECK(error_of({"host", "paging", "set", "ept", "shadow"}) == "host paging set: one mode, not 'ept' and 'shadow'");
    CHECK(error_of({"host", "paging", "set", "ept", "--force"}) ==
          "host paging set: unknown flag '--force' (see 'kiln host --help')");
}

TEST_CASE("cli: placement and memory flags of issue 5") {
    auto r = parse_run({"--kernel", "k", "--cpus", "3", "--numa-node", "1", "--vcpu-affinity", "0=2-3,8",
                        "--vcpu-affinity=1=4", "--memory", "1G,merge=on", "--stats-json", "/tmp/s.json"});
    REQUIRE(r);
    const auto& c = r->config;
    REQUIRE(c.numa_node);
    CHECK(*c.numa_node == 1);
    REQUIRE(c.vcpu_affinity.size() == 2); // repeated flags concatenate
    CHECK(c.vcpu_affinity[0].vcpu == 0);
    CHECK(c.vcpu_affinity[0].cpus.to_string() == "2-3,8");
    CHECK(c.vcpu_affinity[1].vcpu == 1);
    CHECK(c.vcpu_affinity[1].cpus.to_string() == "4");
    CHECK(c.memory_bytes == 1ull << 30);
    CHECK(c.memory_backing.merge);
    CHECK(c.stats_json_path == "/tmp/s.json");

    auto d = parse_run({"--kernel", "k"});
    REQUIRE(d);
    CHECK_FALSE(d->config.numa_node);
    CHECK(d->config.vcpu_affinity.empty());
    CHECK(d->config.memory_backing == MemoryBacking{});

    CHECK(error_of({"run", "--kernel", "k", "--numa-node", "x"}) == "--numa-node: 'x' is not a whole number");
    CHECK(error_of({"run", "--kernel", "k", "--vcpu-affinity", "0"}).starts_with("--vcpu-affinity '0'"));
    CHECK(error_of({"run", "--kernel", "k", "--memory", "1G,hugepages=on,merge=on"})
              .find("KSM does not merge hugetlb pages") != std::string::npos);
    CHECK(error_of({"run", "--kernel", "k", "--stats-json", ""}) == "--stats-json needs a file name");
}

TEST_CASE("cli: --api-sock and kiln ctl, and their errors") {
    auto r = parse_run({"--kernel", "k", "--api-sock=/run/vm1.sock"});
    REQUIRE(r);
    CHECK(r->api_sock == "/run/vm1.sock");
    CHECK(error_of({"run", "--kernel", "k", "--api-sock", ""}) == "--api-sock needs a path");
    CHECK(error_of({"run", "--kernel", "k", "--api-sock"}) == "run: --api-sock needs a value (see 'kiln run --help')");

    auto c = parse({"ctl", "--api-sock", "/s", "stop", "--grace=2.5", "--no-wait"});
    REQUIRE(c);
    REQUIRE(std::holds_alternative<cli::CtlCommand>(*c));
    const auto& ctl = std::get<cli::CtlCommand>(*c);
    CHECK(ctl.api_sock == "/s");
    CHECK(ctl.action == cli::CtlCommand::Action::Stop);
    CHECK(ctl.grace_seconds == doctest::Approx(2.5));
    CHECK_FALSE(ctl.wait);
    auto w = parse({"ctl", "wait", "--api-sock=/s"});
    REQUIRE(w);
    CHECK(std::get<cli::CtlCommand>(*w).action == cli::CtlCommand::Action::Wait);
    CHECK(std::holds_alternative<cli::ShowHelp>(*parse({"ctl", "--help"})));
    CHECK(std::holds_alternative<cli::ShowHelp>(*parse({"help", "ctl"})));

    CHECK(error_of({"ctl", "status"}) == "ctl: no socket given: use --api-sock PATH (see 'kiln help ctl')");
    CHECK(error_of({"ctl", "--api-sock"}) == "ctl: --api-sock needs a value (see 'kiln help ctl')");
    CHECK(error_of({"ctl", "--api-sock", "/s"}).starts_with("ctl: no action given"));
    CHECK(error_of({"ctl", "--api-sock", "/s", "explode"}).starts_with("ctl: unknown action 'explode'"));
    CHECK(error_of({"ctl", "--api-sock", "/s", "pause", "resume"}) == "ctl: one action, not 'pause' and 'resume'");
    CHECK(error_of({"ctl", "--api-sock", "/s", "--bogus", "status"}) ==
          "ctl: unknown flag '--bogus' (see 'kiln help ctl')");
    for (const char* g : {"abc", "-1", "3601", "nan", "1x"})
        CHECK(error_of({"ctl", "--api-sock", "/s", "stop", "--grace", g}) ==
              fmt::format("ctl: --grace: '{}' is not a number of seconds from 0 to 3600", g));
    CHECK(error_of({"ctl", "--api-sock", "/s", "pause", "--grace", "1"}) == "ctl: --grace applies to stop only");
    CHECK(error_of({"ctl", "--api-sock", "/s", "status", "--no-wait"}) == "ctl: --no-wait applies to stop and kill only");
}
