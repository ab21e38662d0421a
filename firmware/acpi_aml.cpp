#include "firmware/acpi_aml.hpp"

#include <algorithm>

#include <cstdlib>
#include <cstring>
#include <initializer_list>

namespace kiln::firmware::aml {

namespace {

// AML opcodes (ACPI 6.3 section 20.3).
constexpr uint8_t kZeroOp = 0x00, kOneOp = 0x01, kOnesOp = 0xff;
constexpr uint8_t kBytePrefix = 0x0a, kWordPrefix = 0x0b, kDWordPrefix = 0x0c, kQWordPrefix = 0x0e;
constexpr uint8_t kStringPrefix = 0x0d;
constexpr uint8_t kNameOp = 0x08, kScopeOp = 0x10, kBufferOp = 0x11, kPackageOp = 0x12;
constexpr uint8_t kExtOpPrefix = 0x5b, kDeviceOp = 0x82, kOpRegionOp = 0x80, kFieldOp = 0x81;
constexpr uint8_t kMethodOp = 0x14, kStoreOp = 0x70, kAndOp = 0x7b, kNotifyOp = 0x86, kLEqualOp = 0x93,
                  kIfOp = 0xa0, kLocal0Op = 0x60, kArg0Op = 0x68;
constexpr uint8_t kRootChar = '\\', kDualNamePrefix = 0x2e, kMultiNamePrefix = 0x2f, kNullName = 0x00;

// Resource descriptor tags (ACPI 6.3 section 6.4).
constexpr uint8_t kIrqNoFlagsTag = 0x22;     // small, type 4, length 2
constexpr uint8_t kIoTag = 0x47;             // small, type 8, length 7
constexpr uint8_t kEndTag = 0x79;            // small, type 0xf, length 1
constexpr uint8_t kMemory32FixedTag = 0x86;  // large, type 6
constexpr uint8_t kExtendedIrqTag = 0x89;    // large, type 9

// A programming error in a constant name: never input-dependent, so no Result.
[[noreturn]] void bad_name() { std::abort(); }

bool lead_char(char c) { return (c >= 'A' && c <= 'Z') || c == '_'; }
bool name_char(char c) { return lead_char(c) || (c >= '0' && c <= '9'); }

// reserve first: GCC 12 at -O3 otherwise warns (-Warray-bounds, a false positive) when
// a one-byte vector grows by insert.
void append(Bytes& out, const Bytes& more) {
    if (out.capacity() < out.size() + more.size()) out.reserve(std::max(out.size() + more.size(), 2 * out.capacity()));
    out.insert(out.end(), more.begin(), more.end());
}

template <class T>
void append_le(Bytes& out, T v) {
    for (size_t i = 0; i < sizeof(T); ++i) out.push_back(static_cast<uint8_t>(static_cast<uint64_t>(v) >> (8 * i)));
}

void append_seg(Bytes& out, std::string_view seg) {
    if (seg.empty() || seg.size() > 4 || !lead_char(seg[0])) bad_name();
    for (size_t i = 0; i < 4; ++i) {
        const char c = i < seg.size() ? seg[i] : '_';
        if (!name_char(c)) bad_name();
        out.push_back(static_cast<uint8_t>(c));
    }
}

// Opcode(s), PkgLength, then the body: Scope, Device, Buffer and Package all look so.
Bytes with_pkg(std::initializer_list<uint8_t> ops, const Bytes& body) {
    Bytes out(ops);
    append(out, pkg_length(body.size()));
    append(out, body);
    return out;
}

} // namespace

Bytes name_string(std::string_view path) {
    Bytes out;
    if (!path.empty() && path[0] == '\\') {
        out.push_back(kRootChar);
        path.remove_prefix(1);
    }
    std::vector<std::string_view> segs;
    while (!path.empty()) {
        const size_t dot = path.find('.');
        segs.push_back(path.substr(0, dot));
        if (dot == std::string_view::npos) break;
        path.remove_prefix(dot + 1);
        if (path.empty()) bad_name(); // trailing '.'
    }
    if (segs.empty()) {
        if (out.empty()) bad_name();
        out.push_back(kNullName);
    } else if (segs.size() == 2) {
        out.push_back(kDualNamePrefix);
    } else if (segs.size() > 2) {
        if (segs.size() > 255) bad_name();
        out.push_back(kMultiNamePrefix);
        out.push_back(static_cast<uint8_t>(segs.size()));
    }
    for (auto s : segs) append_seg(out, s);
    return out;
}

Bytes pkg_length(size_t body_len) {
    // The encoded length counts the PkgLength bytes themselves: 1 byte holds up to 63,
    // then a lead byte (count of following bytes in bits 7-6, low nibble in bits 3-0).
    if (body_len + 1 <= 0x3f) return {static_cast<uint8_t>(body_len + 1)};
    for (size_t n = 2; n <= 4; ++n) {
        const uint64_t total = body_len + n;
        if (total < (uint64_t{1} << (4 + 8 * (n - 1)))) {
            Bytes out{static_cast<uint8_t>(((n - 1) << 6) | (total & 0x0f))};
            for (size_t i = 1; i < n; ++i) out.push_back(static_cast<uint8_t>(total >> (4 + 8 * (i - 1))));
            return out;
        }
    }
    std::abort(); // 256 MiB of AML: not a table Kiln builds
}

Bytes integer(uint64_t v) {
    if (v == 0) return {kZeroOp};
    if (v == 1) return {kOneOp};
    if (v == UINT64_MAX) return {kOnesOp};
    Bytes out;
    if (v <= 0xff) {
        out.push_back(kBytePrefix);
        append_le(out, static_cast<uint8_t>(v));
    } else if (v <= 0xffff) {
        out.push_back(kWordPrefix);
        append_le(out, static_cast<uint16_t>(v));
    } else if (v <= 0xffffffff) {
        out.push_back(kDWordPrefix);
        append_le(out, static_cast<uint32_t>(v));
    } else {
        out.push_back(kQWordPrefix);
        append_le(out, v);
    }
    return out;
}

Bytes string(std::string_view s) {
    Bytes out{kStringPrefix};
    for (char c : s) {
        if (c <= 0) std::abort(); // AML strings are ASCII 0x01-0x7f (char is signed on x86)
        out.push_back(static_cast<uint8_t>(c));
    }
    out.push_back(0);
    return out;
}

Bytes eisa_id(std::string_view id) {
    // Three uppercase letters, 5 bits each ('A' = 1), then four hex digits; stored so
    // the bytes read in order are the vendor's two bytes big-endian, then the product's.
    if (id.size() != 7) std::abort();
    auto hex = [](char c) -> uint32_t {
        if (c >= '0' && c <= '9') return static_cast<uint32_t>(c - '0');
        if (c >= 'A' && c <= 'F') return static_cast<uint32_t>(c - 'A' + 10);
        std::abort();
    };
    for (size_t i = 0; i < 3; ++i)
        if (id[i] < 'A' || id[i] > 'Z') std::abort();
    const uint32_t v = (static_cast<uint32_t>(id[0] - 0x40) << 26) | (static_cast<uint32_t>(id[1] - 0x40) << 21) |
                       (static_cast<uint32_t>(id[2] - 0x40) << 16) | (hex(id[3]) << 12) | (hex(id[4]) << 8) |
                       (hex(id[5]) << 4) | hex(id[6]);
    return integer(__builtin_bswap32(v));
}

Bytes buffer(const Bytes& data) {
    Bytes body = integer(data.size());
    append(body, data);
    return with_pkg({kBufferOp}, body);
}

Bytes package(const std::vector<Bytes>& elements) {
    if (elements.size() > 255) std::abort(); // VarPackage would be needed
    Bytes body{static_cast<uint8_t>(elements.size())};
    for (const auto& e : elements) append(body, e);
    return with_pkg({kPackageOp}, body);
}

Bytes name(std::string_view path, const Bytes& value) {
    Bytes out{kNameOp};
    append(out, name_string(path));
    append(out, value);
    return out;
}

Bytes scope(std::string_view path, const std::vector<Bytes>& terms) {
    Bytes body = name_string(path);
    for (const auto& t : terms) append(body, t);
    return with_pkg({kScopeOp}, body);
}

Bytes device(std::string_view path, const std::vector<Bytes>& terms) {
    Bytes body = name_string(path);
    for (const auto& t : terms) append(body, t);
    return with_pkg({kExtOpPrefix, kDeviceOp}, body);
}

Bytes method(std::string_view path, uint8_t arg_count, bool serialized, const std::vector<Bytes>& terms) {
    if (arg_count > 7) std::abort();
    Bytes body = name_string(path);
    body.push_back(static_cast<uint8_t>(arg_count | (serialized ? 0x08 : 0))); // SyncLevel 0
    for (const auto& t : terms) append(body, t);
    return with_pkg({kMethodOp}, body);
}

Bytes local(uint8_t n) {
    if (n > 7) std::abort();
    return {static_cast<uint8_t>(kLocal0Op + n)};
}

Bytes arg(uint8_t n) {
    if (n > 6) std::abort();
    return {static_cast<uint8_t>(kArg0Op + n)};
}

Bytes store(const Bytes& value, const Bytes& target) {
    Bytes out{kStoreOp};
    append(out, value);
    append(out, target);
    return out;
}

Bytes and_(const Bytes& a, const Bytes& b) {
    Bytes out{kAndOp};
    append(out, a);
    append(out, b);
    out.push_back(kNullName); // no target: the result is the value of the expression
    return out;
}

Bytes lequal(const Bytes& a, const Bytes& b) {
    Bytes out{kLEqualOp};
    append(out, a);
    append(out, b);
    return out;
}

Bytes if_(const Bytes& predicate, const std::vector<Bytes>& terms) {
    Bytes body = predicate;
    for (const auto& t : terms) append(body, t);
    return with_pkg({kIfOp}, body);
}

Bytes notify(const Bytes& object, const Bytes& value) {
    Bytes out{kNotifyOp};
    append(out, object);
    append(out, value);
    return out;
}

Bytes operation_region(std::string_view name, RegionSpace space, uint64_t offset, uint64_t length) {
    Bytes out{kExtOpPrefix, kOpRegionOp};
    append_seg(out, name);
    out.push_back(static_cast<uint8_t>(space));
    append(out, integer(offset));
    append(out, integer(length));
    return out;
}

Bytes field(std::string_view region, FieldAccess access, bool lock, FieldUpdate update,
            const std::vector<FieldUnit>& units) {
    Bytes body = name_string(region);
    body.push_back(static_cast<uint8_t>(static_cast<uint8_t>(access) | (lock ? 0x10 : 0) |
                                        (static_cast<uint8_t>(update) << 5)));
    for (const auto& u : units) {
        append_seg(body, u.name);
        // A unit's bit count uses the PkgLength layout but counts only the bits, not
        // its own bytes (ACPI 6.3 section 20.2.5.2, NamedField).
        if (u.bits == 0 || u.bits >= (1u << 28)) std::abort();
        if (u.bits <= 0x3f) {
            body.push_back(static_cast<uint8_t>(u.bits));
        } else {
            const size_t follow = u.bits < (1u << 12) ? 1 : u.bits < (1u << 20) ? 2 : 3;
            body.push_back(static_cast<uint8_t>((follow << 6) | (u.bits & 0x0f)));
            for (size_t i = 0; i < follow; ++i) body.push_back(static_cast<uint8_t>(u.bits >> (4 + 8 * i)));
        }
    }
    return with_pkg({kExtOpPrefix, kFieldOp}, body);
}

ResourceTemplate& ResourceTemplate::memory32_fixed(bool read_write, uint32_t base, uint32_t length) {
    descriptors_.push_back(kMemory32FixedTag);
    append_le(descriptors_, uint16_t{9});
    descriptors_.push_back(read_write ? 1 : 0);
    append_le(descriptors_, base);
    append_le(descriptors_, length);
    return *this;
}

ResourceTemplate& ResourceTemplate::interrupt(bool consumer, bool edge, bool active_low, bool shared, uint32_t gsi) {
    descriptors_.push_back(kExtendedIrqTag);
    append_le(descriptors_, uint16_t{6}); // flags, count, one interrupt number
    descriptors_.push_back(static_cast<uint8_t>((consumer ? 1 : 0) | (edge ? 2 : 0) | (active_low ? 4 : 0) |
                                                (shared ? 8 : 0)));
    descriptors_.push_back(1);
    append_le(descriptors_, gsi);
    return *this;
}

ResourceTemplate& ResourceTemplate::io(uint16_t min, uint16_t max, uint8_t alignment, uint8_t length) {
    descriptors_.push_back(kIoTag);
    descriptors_.push_back(1); // decodes 16 address bits
    append_le(descriptors_, min);
    append_le(descriptors_, max);
    descriptors_.push_back(alignment);
    descriptors_.push_back(length);
    return *this;
}

ResourceTemplate& ResourceTemplate::irq_no_flags(uint8_t irq) {
    if (irq > 15) std::abort();
    descriptors_.push_back(kIrqNoFlagsTag);
    append_le(descriptors_, static_cast<uint16_t>(1u << irq));
    return *this;
}

Bytes ResourceTemplate::buffer() const {
    Bytes data = descriptors_;
    data.push_back(kEndTag);
    data.push_back(0);
    return aml::buffer(data);
}

uint8_t checksum(const uint8_t* data, size_t len) {
    uint8_t sum = 0;
    for (size_t i = 0; i < len; ++i) sum = static_cast<uint8_t>(sum + data[i]);
    return static_cast<uint8_t>(-sum);
}

Bytes sdt(const char (&signature)[5], uint8_t revision, const char (&oem_table_id)[9], const Bytes& body) {
    // Sized once and the body copied in (not appended): GCC 12 at -O3 sees a false
    // array-bounds overflow in vector::insert after a fixed-size construction.
    const uint64_t length = kSdtHeaderSize + body.size();
    Bytes out(length, 0);
    std::memcpy(out.data(), signature, 4);
    for (size_t i = 0; i < 4; ++i) out[4 + i] = static_cast<uint8_t>(length >> (8 * i));
    out[8] = revision;
    std::memcpy(out.data() + 10, kOemId, 6);
    std::memcpy(out.data() + 16, oem_table_id, 8);
    for (size_t i = 0; i < 4; ++i) out[24 + i] = static_cast<uint8_t>(kOemRevision >> (8 * i));
    std::memcpy(out.data() + 28, kCreatorId, 4);
    for (size_t i = 0; i < 4; ++i) out[32 + i] = static_cast<uint8_t>(kCreatorRevision >> (8 * i));
    std::copy(body.begin(), body.end(), out.begin() + kSdtHeaderSize);
    out[9] = checksum(out.data(), out.size());
    return out;
}

} // namespace kiln::firmware::aml
