// The `virtio_mmio.device=SIZE@BASE:IRQ` kernel command-line words for the virtio-mmio
// devices a Platform describes: how kernels built with CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES
// (and the Kiln test guest) find them without ACPI or a device tree.
#pragma once

#include <string>
#include <vector>

#include "firmware/platform.hpp"

namespace kiln::firmware {

// One word per device, in device order: "virtio_mmio.device=4K@0xd0000000:5". SIZE is
// in K or M when it divides evenly (Linux parses it with memparse), BASE in hex, IRQ is
// the GSI. The caller appends them to the command line, space-separated.
[[nodiscard]] std::vector<std::string> virtio_mmio_cmdline_words(const Platform& platform);

// The same words joined with spaces (empty when there are no devices).
[[nodiscard]] std::string virtio_mmio_cmdline(const Platform& platform);

} // namespace kiln::firmware
