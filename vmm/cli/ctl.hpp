// `kiln ctl`: the control API's client for shell scripts (exit statuses in ctl_help()).
#pragma once

#include "vmm/cli/cli.hpp"

namespace kiln::cli {

[[nodiscard]] int run_ctl(const CtlCommand& cmd);

} // namespace kiln::cli
