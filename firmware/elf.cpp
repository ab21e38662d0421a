#include "firmware/elf.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>
#include <string_view>

#include "firmware/bytes.hpp"

namespace kiln::firmware::elf {

namespace {

constexpr std::array<uint8_t, 4> kMagic = {0x7f, 'E', 'L', 'F'};
constexpr size_t kEiClass = 4, kEiData = 5;
constexpr uint8_t kClass32 = 1, kClass64 = 2, kDataLittleEndian = 1;
constexpr uint16_t kMachine386 = 3, kMachineX86_64 = 62;
constexpr uint32_t kPtLoad = 1, kPtNote = 4;

struct [[gnu::packed]] Elf32Header {
    uint8_t ident[16];
    uint16_t type, machine;
    uint32_t version, entry, phoff, shoff, flags;
    uint16_t ehsize, phentsize, phnum, shentsize, shnum, shstrndx;
};
static_assert(sizeof(Elf32Header) == 52);
static_assert(offsetof(Elf32Header, phoff) == 28 && offsetof(Elf32Header, phnum) == 44);

struct [[gnu::packed]] Elf64Header {
    uint8_t ident[16];
    uint16_t type, machine;
    uint32_t version;
    uint64_t entry, phoff, shoff;
    uint32_t flags;
    uint16_t ehsize, phentsize, phnum, shentsize, shnum, shstrndx;
};
static_assert(sizeof(Elf64Header) == 64);
static_assert(offsetof(Elf64Header, phoff) == 32 && offsetof(Elf64Header, phnum) == 56);

struct [[gnu::packed]] Elf32Phdr {
    uint32_t type, offset, vaddr, paddr, filesz, memsz, flags, align;
};
static_assert(sizeof(Elf32Phdr) == 32);

struct [[gnu::packed]] Elf64Phdr {
    uint32_t type, flags;
    uint64_t offset, vaddr, paddr, filesz, memsz, align;
};
static_assert(sizeof(Elf64Phdr) == 56);
static_assert(offsetof(Elf64Phdr, paddr) == 24 && offsetof(Elf64Phdr, memsz) == 40);

// One program header, whichever the class.
struct Phdr {
    uint32_t type = 0;
    uint64_t offset = 0, paddr = 0, filesz = 0, memsz = 0, align = 0;
};

struct Header {
    bool is_64bit = false;
    uint64_t phoff = 0;
    uint16_t phentsize = 0, phnum = 0;
};

Result<Header> parse_header(std::span<const uint8_t> file) {
    if (file.size() <= kEiData) return fail("truncated ELF: the file is only {} bytes", file.size());
    const uint8_t cls = file[kEiClass];
    if (cls != kClass32 && cls != kClass64) return fail("ELF kernel has an unknown ELF class {}", cls);
    if (file[kEiData] != kDataLittleEndian) return fail("ELF kernel is big-endian, not x86");

    Header h;
    h.is_64bit = cls == kClass64;
    uint16_t machine = 0;
    if (h.is_64bit) {
        auto eh = read_struct<Elf64Header>(file, 0);
        if (!eh) return fail("truncated ELF: the file is {} bytes, an ELF64 header needs 64", file.size());
        machine = eh->machine;
        h.phoff = eh->phoff;
        h.phentsize = eh->phentsize;
        h.phnum = eh->phnum;
        if (machine != kMachineX86_64) return fail("ELF64 kernel is for machine {}, not x86-64", machine);
        if (h.phentsize < sizeof(Elf64Phdr))
            return fail("ELF kernel has {}-byte program headers (ELF64 needs {})", h.phentsize, sizeof(Elf64Phdr));
    } else {
        auto eh = read_struct<Elf32Header>(file, 0);
        if (!eh) return fail("truncated ELF: the file is {} bytes, an ELF32 header needs 52", file.size());
        machine = eh->machine;
        h.phoff = eh->phoff;
        h.phentsize = eh->phentsize;
        h.phnum = eh->phnum;
        if (machine != kMachine386) return fail("ELF32 kernel is for machine {}, not i386", machine);
        if (h.phentsize < sizeof(Elf32Phdr))
            return fail("ELF kernel has {}-byte program headers (ELF32 needs {})", h.phentsize, sizeof(Elf32Phdr));
    }
    if (h.phnum == 0) return fail("ELF kernel has no program headers");
    // phentsize * phnum fits easily in 64 bits (both are 16-bit); only the add can overflow.
    const uint64_t table = uint64_t{h.phentsize} * h.phnum;
    if (!range_in(h.phoff, table, file.size()))
        return fail("truncated ELF: program headers at {:#x}+{:#x} are past the end of the {}-byte file", h.phoff,
                    table, file.size());
    return h;
}

Phdr read_phdr(std::span<const uint8_t> file, const Header& h, uint16_t i) {
    const uint64_t at = h.phoff + uint64_t{i} * h.phentsize; // in range: parse_header checked the table
    Phdr p;
    if (h.is_64bit) {
        auto raw = *read_struct<Elf64Phdr>(file, at);
        p = {raw.type, raw.offset, raw.paddr, raw.filesz, raw.memsz, raw.align};
    } else {
        auto raw = *read_struct<Elf32Phdr>(file, at);
        p = {raw.type, raw.offset, raw.paddr, raw.filesz, raw.memsz, raw.align};
    }
    return p;
}

// Walks the notes of one PT_NOTE segment looking for Xen's PHYS32_ENTRY. Each note is
// namesz, descsz, type, then name and desc, each padded to the segment's alignment
// (4 by the gABI; 8-aligned note segments exist too).
Result<std::optional<uint64_t>> find_pvh_entry(std::span<const uint8_t> notes, uint64_t align) {
    constexpr std::string_view kXen("Xen\0", 4);
    uint64_t pos = 0;
    while (pos < notes.size()) {
        auto namesz = read_le<uint32_t>(notes, pos);
        auto descsz = read_le<uint32_t>(notes, pos + 4);
        auto type = read_le<uint32_t>(notes, pos + 8);
        if (!namesz || !descsz || !type) return fail("truncated ELF: a note header runs past its PT_NOTE segment");
        const uint64_t name_at = pos + 12;
        const uint64_t desc_at = name_at + align_up(*namesz, align); // u32 + u32 cannot overflow u64
        const uint64_t next = desc_at + align_up(*descsz, align);
        if (!range_in(name_at, *namesz, notes.size()) || !range_in(desc_at, *descsz, notes.size()))
            return fail("truncated ELF: a note runs past its PT_NOTE segment");
        const auto name = notes.subspan(name_at, *namesz);
        const bool is_xen = name.size() == kXen.size() && std::memcmp(name.data(), kXen.data(), kXen.size()) == 0;
        if (is_xen && *type == kXenElfNotePhys32Entry) {
            // Linux emits the address with _ASM_PTR (8 bytes on x86-64); others use 4.
            if (*descsz == 4) return std::optional<uint64_t>(*read_le<uint32_t>(notes, desc_at));
            if (*descsz == 8) {
                const uint64_t entry = *read_le<uint64_t>(notes, desc_at);
                if (entry > UINT32_MAX) return fail("PVH entry point {:#x} is above 4 GiB", entry);
                return std::optional<uint64_t>(entry);
            }
            return fail("PVH entry note has a {}-byte address (expected 4 or 8)", *descsz);
        }
        pos = next;
    }
    return std::optional<uint64_t>();
}

} // namespace

bool has_elf_magic(std::span<const uint8_t> file) {
    return file.size() >= kMagic.size() && std::equal(kMagic.begin(), kMagic.end(), file.begin());
}

Result<PvhImage> parse_pvh(std::span<const uint8_t> file) {
    if (!has_elf_magic(file)) return fail("not an ELF file");
    const Header h = KILN_TRY(parse_header(file));

    PvhImage img;
    img.is_64bit = h.is_64bit;
    std::optional<uint64_t> entry;
    for (uint16_t i = 0; i < h.phnum; ++i) {
        const Phdr p = read_phdr(file, h, i);
        if (p.type == kPtLoad) {
            if (!range_in(p.offset, p.filesz, file.size()))
                return fail("truncated ELF: segment {} at {:#x}+{:#x} is past the end of the {}-byte file", i,
                            p.offset, p.filesz, file.size());
            if (p.filesz > p.memsz)
                return fail("ELF segment {} has more file bytes ({:#x}) than memory bytes ({:#x})", i, p.filesz,
                            p.memsz);
            uint64_t end;
            if (__builtin_add_overflow(p.paddr, p.memsz, &end))
                return fail("ELF segment {} at {:#x}+{:#x} wraps around the address space", i, p.paddr, p.memsz);
            if (p.memsz > 0) img.segments.push_back({p.paddr, p.offset, p.filesz, p.memsz});
        } else if (p.type == kPtNote && !entry) {
            auto notes = sub_span(file, p.offset, p.filesz);
            if (!notes)
                return fail("truncated ELF: note segment {} at {:#x}+{:#x} is past the end of the {}-byte file", i,
                            p.offset, p.filesz, file.size());
            entry = KILN_TRY(find_pvh_entry(*notes, p.align == 8 ? 8 : 4));
        }
    }
    if (!entry) return fail("ELF kernel has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY)");
    if (img.segments.empty()) return fail("ELF kernel has no loadable segments");
    img.entry = *entry;
    return img;
}

} // namespace kiln::firmware::elf
