#include "vmm/host/host_files.hpp"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <charconv>

#include "vmm/base/file_io.hpp"

namespace kiln::host {

bool path_exists(const std::string& path) {
    struct stat st{};
    return ::stat(path.c_str(), &st) == 0;
}

std::optional<std::string> read_line(const std::string& path) {
    auto text = read_text_file(path);
    if (!text) return std::nullopt;
    return std::string(std::string_view(*text).substr(0, text->find('\n')));
}

std::optional<uint64_t> parse_u64(std::string_view s) {
    while (!s.empty() && (s.back() == ' ' || s.back() == '\n')) s.remove_suffix(1);
    uint64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
    return v;
}

std::optional<uint64_t> read_u64(const std::string& path) {
    auto line = read_line(path);
    if (!line) return std::nullopt;
    return parse_u64(*line);
}

std::vector<unsigned> numbered_entries(const std::string& dir, std::string_view prefix) {
    std::vector<unsigned> out;
    DIR* d = ::opendir(dir.c_str());
    if (!d) return out;
    while (const dirent* e = ::readdir(d)) {
        std::string_view name = e->d_name;
        if (!name.starts_with(prefix)) continue;
        name.remove_prefix(prefix.size());
        unsigned n = 0;
        auto [p, ec] = std::from_chars(name.data(), name.data() + name.size(), n);
        if (!name.empty() && ec == std::errc() && p == name.data() + name.size()) out.push_back(n);
    }
    ::closedir(d);
    std::sort(out.begin(), out.end());
    return out;
}

} // namespace kiln::host
