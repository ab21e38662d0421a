// A small AML encoder (ACPI 6.3, chapter 20 "ACPI Machine Language Specification"):
// just the objects Kiln's DSDT needs. Every function returns the encoded bytes of one
// term, so a definition block is built by nesting calls:
//
//   scope("\\_SB_", {device("VR00", {name("_HID", string("LNRO0005")), ...})})
//
// Names are given as ASL writes them ("_SB_", "\\_SB_.VR00"); a segment shorter than
// four characters is padded with '_' as iasl does. Names are Kiln's own constants, not
// input: an invalid one is a programming error (checked by the unit tests).
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace kiln::firmware::aml {

using Bytes = std::vector<uint8_t>;

// A NameString: optional root prefix '\', then one or more '.'-separated segments.
[[nodiscard]] Bytes name_string(std::string_view path);
// The PkgLength encoding for a body of `body_len` bytes (the PkgLength counts itself).
[[nodiscard]] Bytes pkg_length(size_t body_len);

// Data objects.
[[nodiscard]] Bytes integer(uint64_t v);          // Zero/One/Ones or the smallest prefix
[[nodiscard]] Bytes string(std::string_view s);   // ASCII, NUL-terminated
[[nodiscard]] Bytes eisa_id(std::string_view id); // "PNP0501" -> the compressed DWORD
[[nodiscard]] Bytes buffer(const Bytes& data);
[[nodiscard]] Bytes package(const std::vector<Bytes>& elements);

// Named objects and scopes.
[[nodiscard]] Bytes name(std::string_view path, const Bytes& value);
[[nodiscard]] Bytes scope(std::string_view path, const std::vector<Bytes>& terms);
[[nodiscard]] Bytes device(std::string_view path, const std::vector<Bytes>& terms);

// Control methods and the terms Kiln's methods use (ACPI 6.3 sections 19.6 and 20.2.5).
// A value or target is any encoded term: integer(), local(), arg(), or name_string()
// for a named object.
[[nodiscard]] Bytes method(std::string_view path, uint8_t arg_count, bool serialized,
                           const std::vector<Bytes>& terms); // Method (PATH, N, Serialized) {...}
[[nodiscard]] Bytes local(uint8_t n);                           // Local0..Local7
[[nodiscard]] Bytes arg(uint8_t n);                             // Arg0..Arg6
[[nodiscard]] Bytes store(const Bytes& value, const Bytes& target); // target = value
[[nodiscard]] Bytes and_(const Bytes& a, const Bytes& b);       // (a & b), no target
[[nodiscard]] Bytes lequal(const Bytes& a, const Bytes& b);     // (a == b)
[[nodiscard]] Bytes if_(const Bytes& predicate, const std::vector<Bytes>& terms);
[[nodiscard]] Bytes notify(const Bytes& object, const Bytes& value); // Notify (object, value)

// OperationRegion (NAME, space, offset, length) and Field (NAME, access, lock, update)
// {unit, bits, ...}: registers the AML reads and writes.
enum class RegionSpace : uint8_t { SystemMemory = 0, SystemIO = 1 };
enum class FieldAccess : uint8_t { Any = 0, Byte = 1, Word = 2, DWord = 3, QWord = 4, Buffer = 5 };
enum class FieldUpdate : uint8_t { Preserve = 0, WriteAsOnes = 1, WriteAsZeros = 2 };
struct FieldUnit {
    std::string_view name; // one NameSeg
    uint32_t bits = 0;
};
[[nodiscard]] Bytes operation_region(std::string_view name, RegionSpace space, uint64_t offset, uint64_t length);
[[nodiscard]] Bytes field(std::string_view region, FieldAccess access, bool lock, FieldUpdate update,
                          const std::vector<FieldUnit>& units);

// A ResourceTemplate (a Buffer of resource descriptors ending with an End Tag), as
// ACPI 6.3 section 6.4 encodes them.
class ResourceTemplate {
public:
    // Memory32Fixed(ReadWrite|ReadOnly, base, length).
    ResourceTemplate& memory32_fixed(bool read_write, uint32_t base, uint32_t length);
    // Interrupt(ResourceConsumer|Producer, Edge|Level, ActiveHigh|ActiveLow,
    // Exclusive|Shared) {gsi}: the Extended Interrupt Descriptor.
    ResourceTemplate& interrupt(bool consumer, bool edge, bool active_low, bool shared, uint32_t gsi);
    // IO(Decode16, min, max, alignment, length).
    ResourceTemplate& io(uint16_t min, uint16_t max, uint8_t alignment, uint8_t length);
    // IRQNoFlags() {irq}: an ISA IRQ, edge-triggered, active high, exclusive.
    ResourceTemplate& irq_no_flags(uint8_t irq);

    // The Buffer term, End Tag appended (checksum 0: "treated as if the checksum
    // operation succeeded", which is what iasl emits).
    [[nodiscard]] Bytes buffer() const;

private:
    Bytes descriptors_;
};

// A complete system description table: the 36-byte header (OEM ID "KILN  ", creator
// "KILN" revision 1, checksum filled) followed by `body`.
inline constexpr char kOemId[] = "KILN  ";
inline constexpr char kCreatorId[] = "KILN";
inline constexpr uint32_t kOemRevision = 1;
inline constexpr uint32_t kCreatorRevision = 1;
inline constexpr size_t kSdtHeaderSize = 36;
[[nodiscard]] Bytes sdt(const char (&signature)[5], uint8_t revision, const char (&oem_table_id)[9],
                        const Bytes& body);

// The byte that makes `data` sum to zero, given the checksum byte is still zero.
[[nodiscard]] uint8_t checksum(const uint8_t* data, size_t len);

} // namespace kiln::firmware::aml
