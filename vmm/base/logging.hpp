// Logging: spdlog on stderr, prefixed "kiln:", quiet by default (warn) so a kernel-boot
// test's stderr holds only what matters.
#pragma once

#include <string_view>

#include <spdlog/spdlog.h>

#include "vmm/base/result.hpp"

namespace kiln {

// "trace", "debug", "info", "warn", "error", "off".
[[nodiscard]] Result<spdlog::level::level_enum> parse_log_level(std::string_view name);
void setup_logging(spdlog::level::level_enum level);

} // namespace kiln
