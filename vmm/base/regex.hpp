// Regex: a compiled POSIX extended regular expression (the syntax of grep -E, with
// glibc's \b, \w, \s, \< and \> extensions, plus \d and \D, which people write out of
// habit and Kiln rewrites to [0-9] and [^0-9]), for --expect and --fail-on.
//
// Why not std::regex: its matcher recurses per character, so a long hostile console
// line can exhaust a vCPU thread's stack, and it pulls libstdc++'s locale machinery
// (about 400 KB) into the static kiln binary, all of it resident at start. glibc's
// matcher is an automaton over the line with bounded stack use.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include <regex.h>

#include "vmm/base/result.hpp"

namespace kiln {

class Regex {
public:
    [[nodiscard]] static Result<Regex> compile(const std::string& pattern) {
        auto re = std::make_unique<regex_t>();
        const std::string posix = rewrite_digit_classes(pattern);
        int rc = ::regcomp(re.get(), posix.c_str(), REG_EXTENDED | REG_NOSUB);
        if (rc != 0) {
            char msg[256];
            ::regerror(rc, re.get(), msg, sizeof msg);
            return fail("'{}' is not a valid regular expression: {}", pattern, msg);
        }
        return Regex(std::move(re));
    }

    Regex(Regex&&) noexcept = default;
    Regex& operator=(Regex&&) noexcept = default;
    ~Regex() {
        if (re_) ::regfree(re_.get());
    }

    // True if the expression matches anywhere in `text` (which may hold NUL bytes:
    // REG_STARTEND bounds the match by the view, not by a terminator).
    [[nodiscard]] bool search(std::string_view text) const {
        regmatch_t span{0, static_cast<regoff_t>(text.size())};
        return ::regexec(re_.get(), text.data(), 1, &span, REG_STARTEND) == 0;
    }

    // \d -> [0-9] and \D -> [^0-9] outside bracket expressions (inside them a backslash
    // is an ordinary character in POSIX, so they are left alone).
    [[nodiscard]] static std::string rewrite_digit_classes(std::string_view p) {
        std::string out;
        out.reserve(p.size() + 8);
        bool in_bracket = false;
        for (size_t i = 0; i < p.size(); ++i) {
            const char c = p[i];
            if (in_bracket) {
                out += c;
                // ']' right after '[' or '[^' is a literal member, not the end.
                const bool first = out.size() >= 2 && (out[out.size() - 2] == '[' ||
                                                       (out[out.size() - 2] == '^' && out.size() >= 3 &&
                                                        out[out.size() - 3] == '['));
                if (c == ']' && !first) in_bracket = false;
            } else if (c == '\\' && i + 1 < p.size()) {
                const char n = p[++i];
                if (n == 'd') out += "[0-9]";
                else if (n == 'D') out += "[^0-9]";
                else (out += c) += n;
            } else {
                if (c == '[') in_bracket = true;
                out += c;
            }
        }
        return out;
    }

private:
    explicit Regex(std::unique_ptr<regex_t> re) : re_(std::move(re)) {}
    std::unique_ptr<regex_t> re_; // regex_t must not move once compiled: keep it on the heap
};

} // namespace kiln
