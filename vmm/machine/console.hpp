// Console: where the guest's serial output goes (stdout, a file, or nowhere), and the
// line matcher that ends the VM on --expect / --fail-on.
#pragma once

#include <optional>
#include <string>

#include "devices/legacy/serial.hpp"
#include "vmm/base/fd.hpp"
#include "vmm/base/regex.hpp"
#include "vmm/base/vm_exit.hpp"
#include "vmm/machine/config.hpp"

namespace kiln {

// Splits the byte stream into lines and tests each complete line.
class LineMatcher {
public:
    // Compiles both expressions (validated with the config already).
    [[nodiscard]] static Result<LineMatcher> create(const std::optional<std::string>& expect,
                                                    const std::optional<std::string>& fail_on, VmExitSink& exits);
    void feed(std::span<const uint8_t> bytes);

    // Lines longer than this are tested in pieces, so a guest cannot grow the buffer.
    static constexpr size_t kMaxLine = 4096;

private:
    explicit LineMatcher(VmExitSink& exits) : exits_(exits) {}
    void complete_line();
    std::optional<Regex> expect_, fail_on_;
    VmExitSink& exits_;
    std::string line_;
    bool done_ = false;
};

class Console final : public ByteSink {
public:
    [[nodiscard]] static Result<std::unique_ptr<Console>> create(const MachineConfig& cfg, VmExitSink& exits);
    void put(std::span<const uint8_t> bytes) override;

private:
    Console(Fd out, bool write_out, LineMatcher m) : out_(std::move(out)), write_out_(write_out), matcher_(std::move(m)) {}
    Fd out_;          // invalid for stdout (fd 1 is not ours to close) or none
    bool write_out_;  // false for --console none
    LineMatcher matcher_;
    std::mutex mu_;   // several vCPUs may print at once
};

} // namespace kiln
