// MachineConfig: everything that describes one VM, as plain validated data. The CLI,
// and later the control socket and embedders, all build one of these.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "vmm/base/result.hpp"
#include "vmm/memory/layout.hpp"

namespace kiln {

struct ConsoleConfig {
    enum class Kind : uint8_t { Stdout, File, None };
    Kind kind = Kind::Stdout;
    std::string path; // for File
};

// Panic and Oops lines of a Linux kernel: what a kernel-boot test fails on by default.
inline constexpr const char* kDefaultFailOn = R"(Kernel panic - not syncing|\bOops\b|BUG: kernel NULL pointer)";

struct MachineConfig {
    std::string kernel_path;
    std::string initrd_path;    // empty: none
    std::string cmdline;
    uint64_t memory_bytes = 512 * layout::MiB;
    uint32_t cpus = 1;
    ConsoleConfig console;
    std::optional<double> timeout_seconds;
    std::optional<std::string> expect;                   // ECMAScript regex
    std::optional<std::string> fail_on = kDefaultFailOn; // nullopt: never fail on output
    bool forward_stdin = false;  // feed the terminal's input to the serial port
    std::string kvm_path = "/dev/kvm";

    // Checks what can be checked without the host: sizes, counts, regex syntax.
    [[nodiscard]] Result<void> validate() const;
};

// "512M", "2G", "1024K", "4096" (bytes), "1T"; binary units; case-insensitive suffix
// with optional "iB"/"B". Rejects zero-free garbage, overflow, negative numbers.
[[nodiscard]] Result<uint64_t> parse_size(std::string_view text);

} // namespace kiln
