// The command line of `kiln`: parsing only, no side effects, so every flag and every
// error is unit-tested. main.cpp acts on the parsed Command.
#pragma once

#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <spdlog/common.h>

#include "vmm/base/result.hpp"
#include "devices/block/disk.hpp"
#include "vmm/host/paging_switch.hpp"
#include "vmm/machine/config.hpp"

namespace kiln::cli {

struct ShowHelp { std::string text; };
struct ShowVersion {};
struct RunCommand {
    MachineConfig config;
    std::string api_sock; // --api-sock PATH: serve the control API there (vmm/api)
    spdlog::level::level_enum log_level = spdlog::level::warn;
};

// `kiln disk create ...`: a qcow2 image, usually a child over a read-only base.
struct DiskCreateCommand {
    block::CreateSpec spec;
    spdlog::level::level_enum log_level = spdlog::level::warn;
};

// `kiln host check [--json]`: what this host offers Kiln (vmm/host/host_check.hpp).
struct HostCheckCommand {
    bool json = false;
};

// `kiln host paging set ept|npt|shadow [--dry-run]` (vmm/host/paging_switch.hpp).
struct HostPagingSetCommand {
    host::PagingTarget target = host::PagingTarget::TwoDimensional;
    bool dry_run = false;
};

// `kiln ctl --api-sock PATH ACTION`: a client of a running VM's control API.
struct CtlCommand {
    enum class Action : uint8_t { Status, Pause, Resume, Stop, Kill, Stats, Metrics, Events, Wait };
    std::string api_sock;
    Action action = Action::Status;
    std::optional<double> grace_seconds; // stop: before the hard stop (default: the server's, 10 s)
    bool wait = true;                    // stop, kill: return once the VM has ended
};

using Command = std::variant<ShowHelp, ShowVersion, RunCommand, DiskCreateCommand, HostCheckCommand,
                             HostPagingSetCommand, CtlCommand>;

// argv without the program name. Errors are one line, e.g.
// "run: unknown flag '--foo' (see 'kiln run --help')".
[[nodiscard]] Result<Command> parse(const std::vector<std::string>& args);

[[nodiscard]] std::string main_help();
[[nodiscard]] std::string run_help();
[[nodiscard]] std::string disk_help();
[[nodiscard]] std::string host_help();
[[nodiscard]] std::string ctl_help();

} // namespace kiln::cli
