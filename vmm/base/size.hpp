// Sizes as people write them on command lines: --memory 512M, --disk scratch=10G.
#pragma once

#include <cstdint>
#include <string_view>

#include "vmm/base/result.hpp"

namespace kiln {

// "512M", "2G", "1024K", "4096" (bytes), "1T"; binary units; case-insensitive suffix
// with optional "iB"/"B". Rejects zero-free garbage, overflow, negative numbers.
[[nodiscard]] Result<uint64_t> parse_size(std::string_view text);

} // namespace kiln
