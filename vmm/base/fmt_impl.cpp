// fmt's out-of-line implementation, compiled once for all of Kiln.
//
// Debian ships libfmt only as a shared library, and Kiln's CLI is linked statically
// (no shared objects to load and relocate at start). fmt's header-only mode would do,
// but then every translation unit that formats gets its own local clones of fmt's
// large floating-point formatters (GCC's IPA-SRA `.isra` copies: about 300 KB of a
// 2.5 MB binary, all of it resident at start through fault-around). This file is what
// fmt 9's own src/format.cc contains, less the std::locale instantiations:
// FMT_STATIC_THOUSANDS_SEPARATOR (vmm/CMakeLists.txt) keeps std::locale, and with it
// another 400 KB of libstdc++, out of Kiln; Kiln never formats for a locale.
#include <fmt/format-inl.h>

FMT_BEGIN_NAMESPACE
namespace detail {

template FMT_API auto dragonbox::to_decimal(float x) noexcept -> dragonbox::decimal_fp<float>;
template FMT_API auto dragonbox::to_decimal(double x) noexcept -> dragonbox::decimal_fp<double>;

template FMT_API auto thousands_sep_impl(locale_ref) -> thousands_sep_result<char>;
template FMT_API auto decimal_point_impl(locale_ref) -> char;
template FMT_API void buffer<char>::append(const char*, const char*);
template FMT_API void vformat_to(buffer<char>&, string_view, basic_format_args<FMT_BUFFER_CONTEXT(char)>,
                                 locale_ref);

template FMT_API auto thousands_sep_impl(locale_ref) -> thousands_sep_result<wchar_t>;
template FMT_API auto decimal_point_impl(locale_ref) -> wchar_t;
template FMT_API void buffer<wchar_t>::append(const wchar_t*, const wchar_t*);

} // namespace detail
FMT_END_NAMESPACE
