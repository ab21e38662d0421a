// The two kernel loaders behind load_kernel(), and the format detection that picks one.
// Internal to firmware/ (and its tests); the machine calls load_kernel().
#pragma once

#include <span>

#include "firmware/boot.hpp"

namespace kiln::firmware {

// From the file's contents: a bzImage has "HdrS" at 0x202 and the 0xAA55 boot flag at
// 0x1fe; anything with the ELF magic is taken for a PVH ELF (parse_pvh judges the rest).
[[nodiscard]] Result<KernelFormat> detect_format(std::span<const uint8_t> kernel);

// Linux boot protocol, 64-bit entry: payload at 1 MiB, boot_params at layout::kZeroPage.
[[nodiscard]] Result<BootInfo> load_bzimage(const GuestMemory& mem, const BootRequest& req);

// PVH: ELF segments at their physical addresses, hvm_start_info at layout::kPvhStartInfo.
[[nodiscard]] Result<BootInfo> load_pvh(const GuestMemory& mem, const BootRequest& req);

} // namespace kiln::firmware
