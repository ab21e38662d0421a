#include "firmware/virtio_mmio_cmdline.hpp"

#include <fmt/format.h>

namespace kiln::firmware {

namespace {

std::string memparse_size(uint64_t size) {
    constexpr uint64_t KiB = 1024, MiB = 1024 * KiB, GiB = 1024 * MiB;
    if (size != 0 && size % GiB == 0) return fmt::format("{}G", size / GiB);
    if (size != 0 && size % MiB == 0) return fmt::format("{}M", size / MiB);
    if (size != 0 && size % KiB == 0) return fmt::format("{}K", size / KiB);
    return fmt::format("{}", size);
}

} // namespace

std::vector<std::string> virtio_mmio_cmdline_words(const Platform& platform) {
    std::vector<std::string> words;
    for (const auto& d : platform.virtio_mmio)
        words.push_back(fmt::format("virtio_mmio.device={}@{:#x}:{}", memparse_size(d.size), d.base, d.gsi));
    return words;
}

std::string virtio_mmio_cmdline(const Platform& platform) {
    std::string s;
    for (const auto& w : virtio_mmio_cmdline_words(platform)) {
        if (!s.empty()) s += ' ';
        s += w;
    }
    return s;
}

} // namespace kiln::firmware
