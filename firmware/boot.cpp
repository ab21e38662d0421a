// load_kernel(): detect the format, run its loader, then write what both formats share.
#include "firmware/boot.hpp"

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
    // Checked before anything is written, so a bad count leaves guest memory untouched.
    if (req.num_cpus == 0 || req.num_cpus > mptable::kMaxCpus)
        return fail("{} vCPUs requested; the boot tables describe 1 to {}", req.num_cpus, mptable::kMaxCpus);
    const KernelFormat format = KILN_TRY(detect_format(req.kernel));
    BootInfo info = KILN_TRY(format == KernelFormat::BzImage ? load_bzimage(mem, req) : load_pvh(mem, req));
    // The MP table serves both: neither boot path has ACPI tables yet.
    KILN_TRY(mptable::write(mem, req.num_cpus));
    return info;
}

} // namespace kiln::firmware
