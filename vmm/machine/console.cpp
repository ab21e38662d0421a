#include "vmm/machine/console.hpp"

#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>
#include <unistd.h>

namespace kiln {

Result<LineMatcher> LineMatcher::create(const std::optional<std::string>& expect,
                                        const std::optional<std::string>& fail_on, VmExitSink& exits) {
    LineMatcher m(exits);
    if (expect && !expect->empty()) m.expect_ = KILN_TRY_CTX(Regex::compile(*expect), "--expect");
    if (fail_on && !fail_on->empty()) m.fail_on_ = KILN_TRY_CTX(Regex::compile(*fail_on), "--fail-on");
    m.line_.reserve(kMaxLine);
    return m;
}

void LineMatcher::feed(std::span<const uint8_t> bytes) {
    if (done_ || (!expect_ && !fail_on_)) return;
    for (uint8_t b : bytes) {
        if (b == '\n' || line_.size() >= kMaxLine) {
            complete_line();
            if (done_) return;
            if (b == '\n') continue;
        }
        if (b != '\r') line_.push_back(static_cast<char>(b));
    }
}

void LineMatcher::complete_line() {
    // fail-on first: a panic line that also matches --expect is still a failure.
    if (fail_on_ && fail_on_->search(line_)) {
        done_ = true;
        exits_.request_exit({ExitReason::FailOnMatched, 0,
                             fmt::format("console line matched --fail-on: {}", line_)});
    } else if (expect_ && expect_->search(line_)) {
        done_ = true;
        exits_.request_exit({ExitReason::ExpectMatched, 0,
                             fmt::format("console line matched --expect: {}", line_)});
    }
    line_.clear();
}

Result<std::unique_ptr<Console>> Console::create(const MachineConfig& cfg, VmExitSink& exits) {
    Fd out;
    bool write_out = cfg.console.kind != ConsoleConfig::Kind::None;
    if (cfg.console.kind == ConsoleConfig::Kind::File) {
        out = KILN_TRY_CTX(Fd::open(cfg.console.path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644),
                           "console");
    }
    auto m = KILN_TRY(LineMatcher::create(cfg.expect, cfg.fail_on, exits));
    return std::unique_ptr<Console>(new Console(std::move(out), write_out, std::move(m)));
}

void Console::put(std::span<const uint8_t> bytes) {
    std::lock_guard lk(mu_);
    if (write_out_) {
        int fd = out_.valid() ? out_.get() : STDOUT_FILENO;
        size_t off = 0;
        while (off < bytes.size()) {
            ssize_t n = ::write(fd, bytes.data() + off, bytes.size() - off);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                // A closed pipe or full disk must not stop the guest: drop console output.
                write_out_ = false;
                spdlog::warn("console output stopped: {}", std::strerror(errno));
                break;
            }
            off += static_cast<size_t>(n);
        }
    }
    matcher_.feed(bytes);
}

} // namespace kiln
