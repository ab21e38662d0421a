#include "vmm/machine/config.hpp"

#include <unistd.h>

#include "firmware/platform.hpp"
#include "vmm/base/regex.hpp"

#include <cctype>
#include <charconv>

namespace kiln {

std::string MachineConfig::vm_name() const {
    return name.empty() ? fmt::format("kiln-{}", ::getpid()) : name;
}

Result<void> MachineConfig::validate() const {
    if (kernel_path.empty()) return fail("no kernel given (--kernel FILE)");
    if (memory_bytes == 0) return fail("--memory must be larger than 0");
    if (memory_bytes < 4 * layout::MiB)
        return fail("--memory {} KiB is too small: the minimum is 4M", memory_bytes >> 10);
    if (memory_bytes % (4 * layout::KiB) != 0) return fail("--memory must be a multiple of 4K");
    KILN_TRY(memory_backing.validate());
    if (cpus == 0) return fail("--cpus must be at least 1");
    if (cpus > firmware::Platform::kMaxCpus)
        return fail("--cpus {} is above the {} vCPUs Kiln supports (xAPIC IDs)", cpus, firmware::Platform::kMaxCpus);
    if (disks.size() + nets.size() > layout::kVirtioMmioMaxDevices)
        return fail("{} disks and {} NICs: at most {} virtio devices fit the machine", disks.size(), nets.size(),
                    layout::kVirtioMmioMaxDevices);
    if (console.kind == ConsoleConfig::Kind::File && console.path.empty())
        return fail("--console file: needs a path (file:PATH)");
    if (timeout_seconds && !(*timeout_seconds > 0))
        return fail("--timeout must be a positive number of seconds");
    if (cmdline.size() + 1 > layout::kCmdlineMax)
        return fail("--cmdline is {} bytes, above the {} Kiln can pass", cmdline.size(),
                    layout::kCmdlineMax - 1);
    if (expect) (void)KILN_TRY_CTX(Regex::compile(*expect), "--expect");
    if (fail_on) (void)KILN_TRY_CTX(Regex::compile(*fail_on), "--fail-on");
    return {};
}

} // namespace kiln
