// Small reads of sysfs and procfs files, shared by the host modules. Each answers
// "nothing" instead of failing: a missing file is usually a finding, not an error.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::host {

[[nodiscard]] bool path_exists(const std::string& path);
// The first line of a file, without its newline; nullopt if it cannot be read.
[[nodiscard]] std::optional<std::string> read_line(const std::string& path);
// A whole decimal number, trailing blanks allowed ("12\n").
[[nodiscard]] std::optional<uint64_t> parse_u64(std::string_view s);
[[nodiscard]] std::optional<uint64_t> read_u64(const std::string& path);
// The N of every entry named `<prefix>N` in `dir` (node0, cpu12, but not cpufreq; with
// an empty prefix, /proc's PIDs or an fd directory's numbers), sorted.
[[nodiscard]] std::vector<unsigned> numbered_entries(const std::string& dir, std::string_view prefix);

} // namespace kiln::host
