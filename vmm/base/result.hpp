// Result<T>: every fallible call in Kiln returns one of these instead of throwing.
// Errors carry a human-readable context chain ("loading kernel 'x': reading: EIO"),
// so the CLI can print exactly one clear line.
#pragma once

#include <cerrno>
#include <cstring>
#include <expected>
#include <string>
#include <utility>

#include <fmt/format.h>

namespace kiln {

class Error {
public:
    Error() = default;
    explicit Error(std::string message, int sys_errno = 0)
        : message_(std::move(message)), errno_(sys_errno) {}

    // An error from the current errno, with context: "opening 'x': No such file".
    [[nodiscard]] static Error from_errno(std::string_view context) {
        int e = errno;
        return Error(fmt::format("{}: {}", context, std::strerror(e)), e);
    }
    [[nodiscard]] static Error from_errno(std::string_view context, int e) {
        return Error(fmt::format("{}: {}", context, std::strerror(e)), e);
    }

    // Prefix more context: err.context("loading kernel") -> "loading kernel: <old>".
    [[nodiscard]] Error context(std::string_view what) const {
        return Error(fmt::format("{}: {}", what, message_), errno_);
    }

    [[nodiscard]] const std::string& message() const noexcept { return message_; }
    [[nodiscard]] int sys_errno() const noexcept { return errno_; }

private:
    std::string message_;
    int errno_ = 0;
};

template <class T>
using Result = std::expected<T, Error>;

// Shorthand: `return fail("bad {}", x);`
template <class... Args>
[[nodiscard]] std::unexpected<Error> fail(fmt::format_string<Args...> f, Args&&... args) {
    return std::unexpected(Error(fmt::format(f, std::forward<Args>(args)...)));
}

[[nodiscard]] inline std::unexpected<Error> fail_errno(std::string_view context) {
    return std::unexpected(Error::from_errno(context));
}
[[nodiscard]] inline std::unexpected<Error> fail_errno(std::string_view context, int e) {
    return std::unexpected(Error::from_errno(context, e));
}

// Propagate an error with added context.
template <class T>
[[nodiscard]] std::unexpected<Error> with_context(const Result<T>& r, std::string_view what) {
    return std::unexpected(r.error().context(what));
}

} // namespace kiln

namespace kiln::detail {
template <class T>
T take(std::expected<T, Error>&& r) { return std::move(*r); }
inline void take(std::expected<void, Error>&&) {}
} // namespace kiln::detail

// Evaluate a Result-returning expression; on error return it from the enclosing
// function (KILN_TRY_CTX adds context first); otherwise yield the value. A GNU
// statement expression: GCC and Clang both have it, and it keeps call sites flat.
#define KILN_CONCAT_(a, b) a##b
#define KILN_CONCAT(a, b) KILN_CONCAT_(a, b)
#define KILN_TRY(expr) KILN_TRY_IMPL_(expr, KILN_CONCAT(kiln_try_r_, __COUNTER__))
#define KILN_TRY_IMPL_(expr, r)                                                                    \
    __extension__({                                                                                \
        auto r = (expr);                                                                           \
        if (!r) return std::unexpected(std::move(r).error());                                      \
        ::kiln::detail::take(std::move(r));                                                        \
    })
#define KILN_TRY_CTX(expr, ...) KILN_TRY_CTX_IMPL_(expr, KILN_CONCAT(kiln_try_r_, __COUNTER__), __VA_ARGS__)
#define KILN_TRY_CTX_IMPL_(expr, r, ...)                                                           \
    __extension__({                                                                                \
        auto r = (expr);                                                                           \
        if (!r) return std::unexpected(r.error().context(fmt::format(__VA_ARGS__)));               \
        ::kiln::detail::take(std::move(r));                                                        \
    })
