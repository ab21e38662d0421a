#include "vmm/base/size.hpp"

#include <cctype>
#include <charconv>
#include <string>

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

} // namespace kiln
