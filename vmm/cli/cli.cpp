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
  kiln disk create [options] FILE    make a qcow2 image, e.g. a child of a base image
  kiln host check [--json]           what this host offers Kiln: pass, warn or fail, and why
  kiln host paging set MODE          switch the host's KVM to ept/npt or shadow paging
  kiln ctl --api-sock PATH ACTION    control a VM started with --api-sock (see 'kiln help ctl')
  kiln help [run|disk|host|ctl]      show this help, or the help of a command
  kiln --version                     print the version

Run 'kiln run --help' for the options of run, and the exit statuses.
)";
}

std::string disk_help() {
    return R"(Usage: kiln disk create [--backing BASE [--backing-format raw|qcow2]] [--size SIZE]
                        [--cluster-size SIZE] FILE

Creates FILE, a new qcow2 (version 3) image. With --backing it is a copy-on-write child
of BASE: reads of what the VM has not written come from BASE, which is never written
(run VMs with --disk path=FILE). BASE is recorded as given, relative to FILE's
directory as QEMU resolves it; its format is probed unless given. The size defaults to
BASE's. FILE must not exist. The cost does not depend on the size.

Options:
  --backing BASE           the read-only image the child starts from
  --backing-format FMT     raw or qcow2 (default: probed from BASE)
  --size SIZE              virtual size, e.g. 10G (required without --backing)
  --cluster-size SIZE      512 to 2M, a power of two (default 64K)
  -h, --help               show this help
)";
}

std::string host_help() {
    return R"(Usage: kiln host check [--json]
       kiln host paging set ept|npt|shadow [--dry-run]

check: what this host offers Kiln, like libvirt's virt-host-validate. One line per
check, pass, warn or fail, and why: /dev/kvm and its API version, the KVM module and
its paging mode, KSM, transparent huge pages, huge pages per NUMA node, the NUMA
topology, io_uring, /dev/net/tun and /dev/vhost-net, the CPU frequency governor.
Exits 1 when a check fails, 0 otherwise.

paging set: switches the host's KVM between two-dimensional paging (ept and npt are
the same request: kvm_intel ept=1, kvm_amd npt=1) and shadow paging (ept=0, npt=0).
Writes /etc/modprobe.d/kiln-paging.conf and reloads the module (modprobe -r, then
modprobe). Refused while any VM runs (the PIDs are named), and on kvm_pvm, which
always shadows. Does nothing when the host already uses MODE.

Options:
  --json         check: one JSON object with every check and its figures
  --dry-run      paging set: print the file and the commands, change nothing
  -h, --help     show this help
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
  --memory SIZE[,OPT]  guest RAM, e.g. 512M, 2G (default 512M), with options:
                         hugepages=on   2 MiB hugetlb pages, reserved in advance
                                        (sysctl vm.nr_hugepages=N)
                         hugetlbfs=DIR  take them from that hugetlbfs mount
                         thp=on|off     transparent huge pages (default on,
                                        off with merge=on)
                         merge=on       let KSM merge identical pages (not
                                        with hugepages)
  --cpus N             number of vCPUs (default 1)
  --numa-node K        run on host NUMA node K: one vCPU per CPU of the node (all
                       vCPUs share the node's CPUs when there are more vCPUs than
                       CPUs), disk and network workers on the node, guest memory
                       bound to it
  --vcpu-affinity SPEC pin vCPUs: VCPU=CPULIST entries separated by ',', e.g.
                       0=2,1=3 or 0=2-3,1=4-5; a ',' piece without '=' continues
                       the previous list (0=2-3,8,1=4: vCPU 0 on CPUs 2, 3, 8);
                       repeatable; unlisted vCPUs get a CPU each, in order.
                       Every CPU named must be one kiln may use (its cpuset, e.g.
                       a batch job's allocation). Without these two flags the
                       vCPUs may run on any of those CPUs and the kernel spreads
                       them
  --console WHERE      stdout (default), file:PATH or none
  --timeout SECONDS    stop the VM after this long and exit 124
  --expect REGEX       exit 0 as soon as a console line matches
  --fail-on REGEX      exit 123 as soon as a console line matches
                       (default: kernel panic or Oops lines; '' disables)
                       REGEX is POSIX extended (grep -E), plus \b \w \s \d
  --disk SPEC          a virtio-blk disk (repeatable; the guest sees them in order):
                         path=FILE[,format=raw|qcow2][,readonly=on][,snapshot=on]
                         [,cache=none|writeback][,queues=N][,serial=ID]
                       or scratch=SIZE: an empty sparse disk, gone at exit.
                       snapshot=on: writes go to a temporary overlay, discarded
                       when kiln ends however it ends; FILE is only read.
                       cache=none opens the files O_DIRECT (default writeback).
  --net SPEC           a virtio-net NIC on a TAP (repeatable):
                         tap=NAME[,mac=MAC][,queues=N][,mtu=N]   an existing TAP
                         tap=auto[,bridge=BR][,mac=MAC][,queues=N][,mtu=N]
                       tap=auto: kiln creates a TAP (kiln0, kiln1, ...), adds it
                       to BR if given, and it is gone when kiln ends, however it
                       ends. queues: queue pairs (default one per vCPU; 1 for an
                       existing TAP made without multi_queue). mac: default
                       derived from --name, so a named VM keeps its MAC
  --name NAME          the VM's name (logs; the seed of generated MACs)
  --acpi on|off        ACPI tables for the guest (default on)
  --dtb                also pass a device tree (SETUP_DTB; bzImage kernels)
  --paging MODE        ept (or npt), shadow or any (default): refuse to run on a
                       host whose KVM uses other second-level paging
  --stats-json FILE    at the end, write the run's statistics to FILE as JSON:
                       per vCPU its run time, run-queue wait time, timeslices,
                       CPUs allowed and KVM's counters (exits, halt polling);
                       memory backing, RSS, huge pages, KSM-merged pages; per
                       NIC frames and bytes each way, drops
  --api-sock PATH      serve the control API (HTTP/1.1, JSON) on a unix socket at
                       PATH (mode 0600): state, pause/resume/stop/kill, stats,
                       Prometheus metrics, an event stream. See 'kiln help ctl'
                       and docs/api/openapi.yaml
  --dump-acpi DIR      write each ACPI table to DIR/<SIGNATURE>.aml
  --dump-dtb FILE      write the device tree blob to FILE
  --log-level LEVEL    trace, debug, info, warn (default), error, off
  -h, --help           show this help

Devices: every virtio device is described three ways at once: ACPI (LNRO0005
devices in the DSDT), virtio_mmio.device=SIZE@BASE:IRQ words appended to the command
line, and (with --dtb) virtio,mmio device-tree nodes.

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

// A "--flag=value" or "--flag [value]" argument: its name, and the value when inline.
struct Flag {
    std::string name;
    std::optional<std::string> inline_value;
};

Flag split_flag(const std::string& arg) {
    if (const auto eq = arg.find('='); arg.starts_with("--") && eq != std::string::npos)
        return {arg.substr(0, eq), arg.substr(eq + 1)};
    return {arg, std::nullopt};
}

// The flag's value: inline, or the next argument (then `i` moves past it). The error
// names the command: "{command}: --size needs a value{hint}".
Result<std::string> flag_value(const Flag& f, const std::vector<std::string>& args, size_t& i,
                               std::string_view command, std::string_view hint) {
    if (f.inline_value) return *f.inline_value;
    if (i + 1 >= args.size()) return fail("{}: {} needs a value{}", command, f.name, hint);
    return args[++i];
}

Result<Command> parse_run(const std::vector<std::string>& args) {
    RunCommand run;
    MachineConfig& cfg = run.config;
    for (size_t i = 0; i < args.size(); ++i) {
        if (args[i] == "-h" || args[i] == "--help") return ShowHelp{run_help()};
        if (!args[i].starts_with("--"))
            return fail("run: unexpected argument '{}' (see 'kiln run --help')", args[i]);
        const Flag f = split_flag(args[i]);
        const std::string& flag = f.name;
        auto value = [&] { return flag_value(f, args, i, "run", " (see 'kiln run --help')"); };
        if (flag == "--dtb") { // the one flag without a value
            if (f.inline_value) return fail("--dtb takes no value");
            cfg.dtb = true;
        } else if (flag == "--kernel") {
            cfg.kernel_path = KILN_TRY(value());
            if (cfg.kernel_path.empty()) return fail("--kernel needs a file name");
        } else if (flag == "--initrd") {
            cfg.initrd_path = KILN_TRY(value());
            if (cfg.initrd_path.empty()) return fail("--initrd needs a file name");
        } else if (flag == "--cmdline") {
            cfg.cmdline = KILN_TRY(value());
        } else if (flag == "--memory") {
            auto spec = KILN_TRY(parse_memory_spec(KILN_TRY(value())));
            cfg.memory_bytes = spec.bytes;
            cfg.memory_backing = std::move(spec.backing);
        } else if (flag == "--cpus") {
            cfg.cpus = KILN_TRY(parse_count(flag, KILN_TRY(value())));
        } else if (flag == "--numa-node") {
            cfg.numa_node = KILN_TRY(parse_count(flag, KILN_TRY(value())));
        } else if (flag == "--vcpu-affinity") {
            auto more = KILN_TRY(host::parse_vcpu_affinity(KILN_TRY(value())));
            cfg.vcpu_affinity.insert(cfg.vcpu_affinity.end(), more.begin(), more.end());
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
        } else if (flag == "--disk") {
            cfg.disks.push_back(KILN_TRY(block::parse_disk_spec(KILN_TRY(value()))));
        } else if (flag == "--net") {
            cfg.nets.push_back(KILN_TRY(net::parse_net_spec(KILN_TRY(value()))));
        } else if (flag == "--name") {
            cfg.name = KILN_TRY(value());
            if (cfg.name.empty()) return fail("--name needs a name");
        } else if (flag == "--acpi") {
            const auto v = KILN_TRY(value());
            if (v != "on" && v != "off") return fail("--acpi: '{}' is not on or off", v);
            cfg.acpi = v == "on";
        } else if (flag == "--paging") {
            const auto v = KILN_TRY(value());
            if (v == "any") cfg.paging = MachineConfig::Paging::Any;
            else if (v == "ept" || v == "npt") cfg.paging = MachineConfig::Paging::TwoDimensional;
            else if (v == "shadow") cfg.paging = MachineConfig::Paging::Shadow;
            else return fail("--paging: '{}' is not ept, npt, shadow or any", v);
        } else if (flag == "--stats-json") {
            cfg.stats_json_path = KILN_TRY(value());
            if (cfg.stats_json_path.empty()) return fail("--stats-json needs a file name");
        } else if (flag == "--api-sock") {
            run.api_sock = KILN_TRY(value());
            if (run.api_sock.empty()) return fail("--api-sock needs a path");
        } else if (flag == "--dump-acpi") {
            cfg.dump_acpi_dir = KILN_TRY(value());
            if (cfg.dump_acpi_dir.empty()) return fail("--dump-acpi needs a directory");
        } else if (flag == "--dump-dtb") {
            cfg.dump_dtb_path = KILN_TRY(value());
            if (cfg.dump_dtb_path.empty()) return fail("--dump-dtb needs a file name");
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

Result<Command> parse_disk(const std::vector<std::string>& args) {
    if (args.empty() || args[0] == "-h" || args[0] == "--help" || args[0] == "help") return ShowHelp{disk_help()};
    if (args[0] != "create") return fail("disk: unknown command '{}' (see 'kiln disk --help')", args[0]);
    DiskCreateCommand cmd;
    block::CreateSpec& spec = cmd.spec;
    for (size_t i = 1; i < args.size(); ++i) {
        std::string flag = args[i];
        if (flag == "-h" || flag == "--help") return ShowHelp{disk_help()};
        if (!flag.starts_with("--")) {
            if (!spec.path.empty())
                return fail("disk create: two image names, '{}' and '{}' (see 'kiln disk --help')", spec.path, flag);
            spec.path = flag;
            continue;
        }
        const Flag f = split_flag(flag);
        auto value = [&] { return flag_value(f, args, i, "disk create", ""); };
        flag = f.name;
        if (flag == "--backing") {
            spec.backing = KILN_TRY(value());
            if (spec.backing.empty()) return fail("--backing needs a file name");
        } else if (flag == "--backing-format") {
            const auto v = KILN_TRY(value());
            if (v == "raw") spec.backing_format = block::Format::Raw;
            else if (v == "qcow2") spec.backing_format = block::Format::Qcow2;
            else return fail("--backing-format: '{}' is not raw or qcow2", v);
        } else if (flag == "--size") {
            spec.size = KILN_TRY_CTX(parse_size(KILN_TRY(value())), "--size");
            if (*spec.size == 0 || *spec.size % 512) return fail("--size must be a non-zero multiple of 512 bytes");
        } else if (flag == "--cluster-size") {
            const uint64_t c = KILN_TRY_CTX(parse_size(KILN_TRY(value())), "--cluster-size");
            if (c < 512 || c > (2u << 20) || (c & (c - 1)))
                return fail("--cluster-size must be a power of two from 512 to 2M, not {}", c);
            spec.cluster_bits = static_cast<uint32_t>(__builtin_ctzll(c));
        } else if (flag == "--log-level") {
            cmd.log_level = KILN_TRY(parse_log_level(KILN_TRY(value())));
        } else {
            return fail("disk create: unknown flag '{}' (see 'kiln disk --help')", flag);
        }
    }
    if (spec.path.empty()) return fail("disk create: no image name given (see 'kiln disk --help')");
    if (spec.backing.empty() && !spec.size) return fail("disk create: give --size, or --backing to take its size");
    if (spec.backing.empty() && spec.backing_format != block::Format::Auto)
        return fail("disk create: --backing-format without --backing");
    return cmd;
}

bool is_help(const std::string& a) { return a == "-h" || a == "--help" || a == "help"; }

Result<Command> parse_host(const std::vector<std::string>& args) {
    if (args.empty() || is_help(args[0])) return ShowHelp{host_help()};
    if (args[0] == "check") {
        HostCheckCommand cmd;
        for (size_t i = 1; i < args.size(); ++i) {
            if (is_help(args[i])) return ShowHelp{host_help()};
            if (args[i] != "--json") return fail("host check: unknown argument '{}' (see 'kiln host --help')", args[i]);
            cmd.json = true;
        }
        return cmd;
    }
    if (args[0] == "paging") {
        if (args.size() >= 2 && is_help(args[1])) return ShowHelp{host_help()};
        if (args.size() < 2 || args[1] != "set")
            return fail("host paging: expected 'set ept|npt|shadow' (see 'kiln host --help')");
        HostPagingSetCommand cmd;
        std::string mode; // as given, for the error naming two
        for (size_t i = 2; i < args.size(); ++i) {
            const std::string& a = args[i];
            if (is_help(a)) return ShowHelp{host_help()};
            if (a == "--dry-run") {
                cmd.dry_run = true;
            } else if (a.starts_with("-")) {
                return fail("host paging set: unknown flag '{}' (see 'kiln host --help')", a);
            } else if (!mode.empty()) {
                return fail("host paging set: one mode, not '{}' and '{}'", mode, a);
            } else {
                cmd.target = KILN_TRY_CTX(host::parse_paging_target(a), "host paging set");
                mode = a;
            }
        }
        if (mode.empty()) return fail("host paging set: no mode given: ept, npt or shadow (see 'kiln host --help')");
        return cmd;
    }
    return fail("host: unknown command '{}' (see 'kiln host --help')", args[0]);
}

Result<Command> parse_ctl(const std::vector<std::string>& args) {
    CtlCommand cmd;
    std::optional<std::string> action;
    for (size_t i = 0; i < args.size(); ++i) {
        if (is_help(args[i])) return ShowHelp{ctl_help()};
        const Flag f = split_flag(args[i]);
        const std::string& a = f.name;
        auto value = [&] { return flag_value(f, args, i, "ctl", " (see 'kiln help ctl')"); };
        if (a == "--api-sock") {
            cmd.api_sock = KILN_TRY(value());
            if (cmd.api_sock.empty()) return fail("ctl: --api-sock needs a path");
        } else if (a == "--grace") {
            const std::string v = KILN_TRY(value());
            double g = 0;
            auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), g);
            if (ec != std::errc() || p != v.data() + v.size() || !std::isfinite(g) || g < 0 || g > 3600)
                return fail("ctl: --grace: '{}' is not a number of seconds from 0 to 3600", v);
            cmd.grace_seconds = g;
        } else if (a == "--no-wait") {
            cmd.wait = false;
        } else if (a.starts_with("-")) {
            return fail("ctl: unknown flag '{}' (see 'kiln help ctl')", a);
        } else if (action) {
            return fail("ctl: one action, not '{}' and '{}'", *action, a);
        } else {
            action = a;
        }
    }
    if (cmd.api_sock.empty()) return fail("ctl: no socket given: use --api-sock PATH (see 'kiln help ctl')");
    if (!action) return fail("ctl: no action given: status, pause, resume, stop, kill, stats, metrics, events or wait");
    using A = CtlCommand::Action;
    static const std::pair<const char*, A> actions[] = {
        {"status", A::Status}, {"pause", A::Pause},     {"resume", A::Resume}, {"stop", A::Stop}, {"kill", A::Kill},
        {"stats", A::Stats},   {"metrics", A::Metrics}, {"events", A::Events}, {"wait", A::Wait}};
    bool found = false;
    for (const auto& [name, act] : actions)
        if (*action == name) {
            cmd.action = act;
            found = true;
        }
    if (!found)
        return fail("ctl: unknown action '{}' (status, pause, resume, stop, kill, stats, metrics, events, wait)",
                    *action);
    if (cmd.grace_seconds && cmd.action != A::Stop) return fail("ctl: --grace applies to stop only");
    if (!cmd.wait && cmd.action != A::Stop && cmd.action != A::Kill)
        return fail("ctl: --no-wait applies to stop and kill only");
    return cmd;
}

} // namespace

std::string ctl_help() {
    return R"(Usage: kiln ctl --api-sock PATH ACTION [--grace SECONDS] [--no-wait]

A client of the control API of a VM started with 'kiln run --api-sock PATH'.

Actions:
  status     print the VM's state, configuration, uptime (and exit, once ended)
  pause      park every vCPU; prints the new state
  resume     let them run again
  stop       ask the guest to shut down (ACPI power button), and stop it hard after
             --grace SECONDS (default 10) if it has not; waits until the VM has ended
  kill       end the VM at once; waits until it has ended
  stats      print the VM's statistics as JSON (vCPUs, memory, disks, NICs)
  metrics    print them in the Prometheus text format
  events     print the VM's events, one JSON object per line, until it ends
  wait       wait until the VM ends; exit with the VM's exit status

Options:
  --grace SECONDS   stop: the grace period before the hard stop (0 to 3600)
  --no-wait         stop, kill: return once the request is accepted

Exit status: 0 done; 1 the VM or its API refused the request (e.g. pausing a VM
that is being stopped, or too many event streams open; the reason is printed); 2 no
VM serves on PATH (none started there, or it has ended: kiln removes the socket as it
exits); 125 bad usage, a broken connection or a malformed answer. 'wait' exits with
the VM's own exit status, as 'kiln run' would (so a guest status of 1, 2 or 125 reads
like the above: a guest that wants to be unambiguous keeps to 3-118); start it while
the VM runs.
)";
}

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
        if (rest.size() == 1 && rest[0] == "disk") return ShowHelp{disk_help()};
        if (rest.size() == 1 && rest[0] == "host") return ShowHelp{host_help()};
        if (rest.size() == 1 && rest[0] == "ctl") return ShowHelp{ctl_help()};
        return fail("help: no such command '{}' (commands: run, disk, host, ctl)", rest[0]);
    }
    if (cmd == "run") return parse_run(rest);
    if (cmd == "disk") return parse_disk(rest);
    if (cmd == "host") return parse_host(rest);
    if (cmd == "ctl") return parse_ctl(rest);
    if (cmd.starts_with("-")) return fail("unknown option '{}' (try 'kiln help')", cmd);
    return fail("unknown command '{}' (try 'kiln help')", cmd);
}

} // namespace kiln::cli
