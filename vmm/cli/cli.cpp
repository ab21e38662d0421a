#include "vmm/cli/cli.hpp"

#include <charconv>
#include <cmath>
#include <optional>

#include "vmm/base/logging.hpp"

namespace kiln::cli {

std::string main_help() {
    return R"(kiln: a minimal virtual machine monitor for Linux KVM

Usage:
  kiln run --kernel FILE [options]   boot a kernel and exit with the guest's status
  kiln help [run]                    show this help, or the help of a command
  kiln --version                     print the version

Run 'kiln run --help' for the options of run, and the exit statuses.
)";
}

std::string run_help() {
    return R"(Usage: kiln run --kernel FILE [options]

Boots FILE (a bzImage, or an ELF vmlinux with a PVH entry note; the format is
detected from the contents) and exits with the guest's status.

Options:
  --kernel FILE        kernel to boot (required)
  --initrd FILE        initial ramdisk
  --cmdline STR        kernel command line
  --memory SIZE        guest RAM, e.g. 512M, 2G (default 512M)
  --cpus N             number of vCPUs (default 1)
  --console WHERE      stdout (default), file:PATH or none
  --timeout SECONDS    stop the VM after this long and exit 124
  --expect REGEX       exit 0 as soon as a console line matches
  --fail-on REGEX      exit 123 as soon as a console line matches
                       (default: kernel panic or Oops lines; '' disables)
                       REGEX is POSIX extended (grep -E), plus \b \w \s \d
  --log-level LEVEL    trace, debug, info, warn (default), error, off
  -h, --help           show this help

Exit status:
  N      the guest wrote N to the debug-exit port 0x501 (0-255)
  0      --expect matched
  119    the guest reset the machine
  120    the guest powered off without reporting a status
  121    triple fault
  122    emulation failure or another KVM internal error
  123    --fail-on matched
  124    --timeout expired
  125    kiln itself failed (bad flag, missing kernel, KVM error, ...)
  128+S  kiln was stopped by signal S (SIGINT, SIGTERM, SIGHUP)
)";
}

namespace {

Result<uint32_t> parse_count(const std::string& flag, const std::string& v) {
    uint32_t n = 0;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc() || p != v.data() + v.size())
        return fail("{}: '{}' is not a whole number", flag, v);
    return n;
}

Result<double> parse_seconds(const std::string& flag, const std::string& v) {
    double d = 0;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), d);
    if (ec != std::errc() || p != v.data() + v.size() || !std::isfinite(d))
        return fail("{}: '{}' is not a number of seconds", flag, v);
    if (d <= 0) return fail("{} must be a positive number of seconds, not '{}'", flag, v);
    return d;
}

Result<ConsoleConfig> parse_console(const std::string& v) {
    if (v == "stdout") return ConsoleConfig{ConsoleConfig::Kind::Stdout, {}};
    if (v == "none") return ConsoleConfig{ConsoleConfig::Kind::None, {}};
    if (v.starts_with("file:")) {
        if (v.size() == 5) return fail("--console file: needs a path (file:PATH)");
        return ConsoleConfig{ConsoleConfig::Kind::File, v.substr(5)};
    }
    return fail("--console: '{}' is not stdout, file:PATH or none", v);
}

Result<Command> parse_run(const std::vector<std::string>& args) {
    RunCommand run;
    MachineConfig& cfg = run.config;
    for (size_t i = 0; i < args.size(); ++i) {
        std::string flag = args[i];
        std::optional<std::string> inline_value;
        if (flag == "-h" || flag == "--help") return ShowHelp{run_help()};
        if (!flag.starts_with("--"))
            return fail("run: unexpected argument '{}' (see 'kiln run --help')", flag);
        if (auto eq = flag.find('='); eq != std::string::npos) {
            inline_value = flag.substr(eq + 1);
            flag = flag.substr(0, eq);
        }
        auto value = [&]() -> Result<std::string> {
            if (inline_value) return *inline_value;
            if (i + 1 >= args.size()) return fail("run: {} needs a value (see 'kiln run --help')", flag);
            return args[++i];
        };
        if (flag == "--kernel") {
            cfg.kernel_path = KILN_TRY(value());
            if (cfg.kernel_path.empty()) return fail("--kernel needs a file name");
        } else if (flag == "--initrd") {
            cfg.initrd_path = KILN_TRY(value());
            if (cfg.initrd_path.empty()) return fail("--initrd needs a file name");
        } else if (flag == "--cmdline") {
            cfg.cmdline = KILN_TRY(value());
        } else if (flag == "--memory") {
            cfg.memory_bytes = KILN_TRY_CTX(parse_size(KILN_TRY(value())), "--memory");
        } else if (flag == "--cpus") {
            cfg.cpus = KILN_TRY(parse_count(flag, KILN_TRY(value())));
        } else if (flag == "--console") {
            cfg.console = KILN_TRY(parse_console(KILN_TRY(value())));
        } else if (flag == "--timeout") {
            cfg.timeout_seconds = KILN_TRY(parse_seconds(flag, KILN_TRY(value())));
        } else if (flag == "--expect") {
            cfg.expect = KILN_TRY(value());
            if (cfg.expect->empty()) return fail("--expect needs a regular expression");
        } else if (flag == "--fail-on") {
            auto v = KILN_TRY(value());
            if (v.empty()) cfg.fail_on.reset();
            else cfg.fail_on = v;
        } else if (flag == "--log-level") {
            run.log_level = KILN_TRY(parse_log_level(KILN_TRY(value())));
        } else {
            return fail("run: unknown flag '{}' (see 'kiln run --help')", flag);
        }
    }
    if (cfg.kernel_path.empty()) return fail("run: no kernel given: use --kernel FILE (see 'kiln run --help')");
    KILN_TRY(cfg.validate());
    return run;
}

} // namespace

Result<Command> parse(const std::vector<std::string>& args) {
    if (args.empty()) return fail("no command given (try 'kiln help')");
    const std::string& cmd = args[0];
    std::vector<std::string> rest(args.begin() + 1, args.end());
    if (cmd == "--version" || cmd == "version") {
        if (!rest.empty()) return fail("{} takes no arguments", cmd);
        return ShowVersion{};
    }
    if (cmd == "help" || cmd == "--help" || cmd == "-h") {
        if (rest.empty()) return ShowHelp{main_help()};
        if (rest.size() == 1 && rest[0] == "run") return ShowHelp{run_help()};
        return fail("help: no such command '{}' (commands: run)", rest[0]);
    }
    if (cmd == "run") return parse_run(rest);
    if (cmd.starts_with("-")) return fail("unknown option '{}' (try 'kiln help')", cmd);
    return fail("unknown command '{}' (try 'kiln help')", cmd);
}

} // namespace kiln::cli
