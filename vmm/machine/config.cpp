#include "vmm/machine/config.hpp"

#include "vmm/base/regex.hpp"

#include <cctype>
#include <charconv>

namespace kiln {

Result<uint64_t> parse_size(std::string_view text) {
    auto bad = [&] {
        return fail("invalid size '{}' (expected a number with an optional K, M, G or T suffix, "
                    "like 512M or 2G)", text);
    };
    if (text.empty() || !std::isdigit(static_cast<unsigned char>(text[0]))) return bad();
    uint64_t value = 0;
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec == std::errc::result_out_of_range) return fail("size '{}' is too large", text);
    if (ec != std::errc()) return bad();
    std::string suffix(ptr, text.data() + text.size());
    for (auto& ch : suffix) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    unsigned shift = 0;
    if (suffix.empty() || suffix == "B") shift = 0;
    else if (suffix == "K" || suffix == "KB" || suffix == "KIB") shift = 10;
    else if (suffix == "M" || suffix == "MB" || suffix == "MIB") shift = 20;
    else if (suffix == "G" || suffix == "GB" || suffix == "GIB") shift = 30;
    else if (suffix == "T" || suffix == "TB" || suffix == "TIB") shift = 40;
    else return bad();
    if (shift && value > (UINT64_MAX >> shift)) return fail("size '{}' is too large", text);
    return value << shift;
}

Result<void> MachineConfig::validate() const {
    if (kernel_path.empty()) return fail("no kernel given (--kernel FILE)");
    if (memory_bytes == 0) return fail("--memory must be larger than 0");
    if (memory_bytes < 4 * layout::MiB)
        return fail("--memory {} KiB is too small: the minimum is 4M", memory_bytes >> 10);
    if (memory_bytes % (4 * layout::KiB) != 0) return fail("--memory must be a multiple of 4K");
    if (cpus == 0) return fail("--cpus must be at least 1");
    if (cpus > 255) return fail("--cpus {} is above the 255 vCPUs Kiln supports (xAPIC IDs)", cpus);
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
