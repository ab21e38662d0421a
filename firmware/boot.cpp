// load_kernel(): detect the format, run its loader, then write what both formats share.
#include "firmware/boot.hpp"

#include <optional>

#include "firmware/acpi.hpp"
#include "firmware/boot_params.hpp"
#include "firmware/bytes.hpp"
#include "firmware/elf.hpp"
#include "firmware/loader.hpp"
#include "firmware/mptable.hpp"

namespace kiln::firmware {

std::string_view to_string(KernelFormat f) {
    switch (f) {
    case KernelFormat::BzImage: return "bzImage";
    case KernelFormat::PvhElf: return "PVH ELF";
    }
    return "unknown";
}

Result<KernelFormat> detect_format(std::span<const uint8_t> kernel) {
    using namespace linux_boot;
    if (kernel.empty()) return fail("the kernel file is empty");
    if (read_le<uint32_t>(kernel, kHeaderMagicOffset) == kHeaderMagic &&
        read_le<uint16_t>(kernel, kBootFlagOffset) == kBootFlag)
        return KernelFormat::BzImage;
    if (elf::has_elf_magic(kernel)) return KernelFormat::PvhElf;
    return fail("not a bzImage or an ELF kernel (no \"HdrS\" Linux boot header and no ELF magic)");
}

Result<BootInfo> load_kernel(const GuestMemory& mem, const BootRequest& req) {
    // Checked before anything is written, so a bad request leaves guest memory untouched.
    if (req.num_cpus == 0 || req.num_cpus > mptable::kMaxCpus)
        return fail("{} vCPUs requested; the boot tables describe 1 to {}", req.num_cpus, mptable::kMaxCpus);
    const Platform platform = req.platform ? *req.platform : Platform::standard(req.num_cpus);
    if (platform.num_cpus != req.num_cpus)
        return fail("the boot request has {} vCPUs but its platform describes {}", req.num_cpus, platform.num_cpus);
    KILN_TRY_CTX(platform.validate(), "machine description");
    std::optional<acpi::Tables> tables;
    if (req.acpi) tables = KILN_TRY(acpi::build(platform));
    const KernelFormat format = KILN_TRY(detect_format(req.kernel));

    BootInfo info = KILN_TRY(format == KernelFormat::BzImage ? load_bzimage(mem, req) : load_pvh(mem, req));
    // Both boot paths get the MP table (kernels without ACPI, or booted with acpi=off)
    // and, when asked, the ACPI tables the loaders pointed the kernel at.
    KILN_TRY(mptable::write(mem, platform));
    if (tables) {
        if (tables->rsdp_address != info.acpi_rsdp)
            return fail("internal error: the RSDP is at {:#x}, the kernel was told {:#x}", tables->rsdp_address,
                        info.acpi_rsdp);
        KILN_TRY(acpi::write(mem, *tables));
    }
    return info;
}

} // namespace kiln::firmware
