// Fake kernels for the firmware unit tests: minimal bzImages and PVH ELFs built in
// memory, with every field a test might want to break exposed as an option.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "firmware/boot_params.hpp"
#include "vmm/memory/guest_memory.hpp"
#include "vmm/memory/layout.hpp"

namespace kiln::test {

inline constexpr uint64_t MiB = layout::MiB;

// A packed struct's field as a plain value: doctest's CHECK binds its operands to
// references, which a misaligned packed field cannot have.
template <class T>
T v(T x) {
    return x;
}

template <class T>
void put(std::vector<uint8_t>& buf, size_t off, T v) {
    if (buf.size() < off + sizeof(T)) buf.resize(off + sizeof(T));
    std::memcpy(buf.data() + off, &v, sizeof(T));
}

template <class T>
T get(const std::vector<uint8_t>& buf, size_t off) {
    T v;
    std::memcpy(&v, buf.data() + off, sizeof(T));
    return v;
}

// The end of the RAM range at 1 MiB for a guest of `bytes` below 3 GiB: the reserved
// legacy area [kLowRamEnd, 1 MiB) is backed on top of the request.
inline constexpr uint64_t low_ram_end_for(uint64_t bytes) {
    return bytes + (layout::kHighMemory - layout::kLowRamEnd);
}

// A guest of `bytes` usable RAM, actually mapped (lazily, so large sizes are cheap).
inline GuestMemory make_memory(uint64_t bytes) {
    auto plan = MemoryPlan::for_ram_size(bytes);
    auto mem = GuestMemory::create(*plan);
    return std::move(*mem);
}

// Reads a T from guest memory; the tests only read what the loader must have written.
template <class T>
T guest_read(const GuestMemory& mem, uint64_t addr) {
    auto r = mem.read_obj<T>(GuestAddress(addr));
    return r ? *r : T{};
}

inline std::string guest_string(const GuestMemory& mem, uint64_t addr, size_t max = 70000) {
    std::string s;
    for (size_t i = 0; i < max; ++i) {
        auto c = guest_read<char>(mem, addr + i);
        if (c == 0) break;
        s.push_back(c);
    }
    return s;
}

struct BzOptions {
    uint8_t setup_sects = 4;
    uint16_t version = 0x020f;
    uint8_t loadflags = firmware::linux_boot::kLoadedHigh;
    uint16_t xloadflags = firmware::linux_boot::kXlfKernel64 | firmware::linux_boot::kXlfCanBeLoadedAbove4G;
    uint8_t jump_len = 0x6a;                 // header runs to 0x202 + 0x6a = 0x26c
    uint32_t initrd_addr_max = 0x7fffffff;
    uint32_t cmdline_size = 2048;
    uint64_t pref_address = 0x100000;
    uint32_t init_size = 0;                  // 0: the payload size
    uint64_t payload_size = 64 * 1024;
    uint64_t setup_data = 0;
};

// Setup sectors with a 2.x header, then a payload of a recognisable pattern.
inline std::vector<uint8_t> make_bzimage(const BzOptions& o = {}) {
    const size_t sects = o.setup_sects ? o.setup_sects : 4;
    const size_t setup_size = (sects + 1) * 512;
    std::vector<uint8_t> img(setup_size + o.payload_size, 0);
    put<uint8_t>(img, 0x1f1, o.setup_sects);
    put<uint16_t>(img, 0x1fe, 0xaa55);
    put<uint8_t>(img, 0x200, 0xeb);
    put<uint8_t>(img, 0x201, o.jump_len);
    put<uint32_t>(img, 0x202, 0x53726448);   // "HdrS"
    put<uint16_t>(img, 0x206, o.version);
    put<uint8_t>(img, 0x211, o.loadflags);
    put<uint32_t>(img, 0x214, 0x100000);     // code32_start
    put<uint32_t>(img, 0x22c, o.initrd_addr_max);
    put<uint32_t>(img, 0x230, 0x200000);     // kernel_alignment
    put<uint8_t>(img, 0x234, 1);             // relocatable
    put<uint16_t>(img, 0x236, o.xloadflags);
    put<uint32_t>(img, 0x238, o.cmdline_size);
    put<uint64_t>(img, 0x250, o.setup_data);
    put<uint64_t>(img, 0x258, o.pref_address);
    put<uint32_t>(img, 0x260, o.init_size ? o.init_size : static_cast<uint32_t>(o.payload_size));
    // Bytes just past the header, to show they are not copied into boot_params.
    for (size_t i = 0x26c; i < 0x290; ++i) img[i] = 0xee;
    for (size_t i = 0; i < o.payload_size; ++i) img[setup_size + i] = static_cast<uint8_t>(i * 7 + 3);
    return img;
}

struct ElfSegment {
    uint64_t paddr = 0x100000;
    uint64_t file_size = 0x1000;
    uint64_t mem_size = 0x2000;
};

struct ElfNote {
    std::string name = std::string("Xen\0", 4);
    uint32_t type = 18;
    uint32_t desc_size = 4;                  // 4 or 8; other sizes for error tests
    uint64_t entry = 0x100000;
};

struct ElfOptions {
    bool is_64bit = true;
    uint16_t machine = 0;                    // 0: the right one for the class
    uint8_t data = 1;                        // little-endian
    std::vector<ElfSegment> segments = {ElfSegment{}};
    std::vector<ElfNote> notes = {ElfNote{}};
    bool note_segment = true;
};

inline uint64_t align4(uint64_t v) { return (v + 3) & ~uint64_t{3}; }

// An ELF with program headers right after the ELF header, then one PT_NOTE holding
// `notes`, then the PT_LOAD contents (a pattern), each page-aligned in the file.
inline std::vector<uint8_t> make_pvh_elf(const ElfOptions& o = {}) {
    const size_t ehsize = o.is_64bit ? 64 : 52;
    const size_t phentsize = o.is_64bit ? 56 : 32;
    const size_t phnum = o.segments.size() + (o.note_segment ? 1 : 0);
    std::vector<uint8_t> f(ehsize + phentsize * phnum, 0);
    const uint8_t ident[] = {0x7f, 'E', 'L', 'F', static_cast<uint8_t>(o.is_64bit ? 2 : 1), o.data, 1};
    for (size_t i = 0; i < sizeof(ident); ++i) put<uint8_t>(f, i, ident[i]);
    put<uint16_t>(f, 16, 2); // ET_EXEC
    put<uint16_t>(f, 18, o.machine ? o.machine : (o.is_64bit ? 62 : 3));
    put<uint32_t>(f, 20, 1);
    if (o.is_64bit) {
        put<uint64_t>(f, 32, ehsize); // phoff
        put<uint16_t>(f, 52, static_cast<uint16_t>(ehsize));
        put<uint16_t>(f, 54, static_cast<uint16_t>(phentsize));
        put<uint16_t>(f, 56, static_cast<uint16_t>(phnum));
    } else {
        put<uint32_t>(f, 28, static_cast<uint32_t>(ehsize));
        put<uint16_t>(f, 40, static_cast<uint16_t>(ehsize));
        put<uint16_t>(f, 42, static_cast<uint16_t>(phentsize));
        put<uint16_t>(f, 44, static_cast<uint16_t>(phnum));
    }
    auto put_phdr = [&](size_t i, uint32_t type, uint64_t off, uint64_t paddr, uint64_t filesz, uint64_t memsz,
                        uint64_t align) {
        const size_t at = ehsize + i * phentsize;
        if (o.is_64bit) {
            put<uint32_t>(f, at, type);
            put<uint64_t>(f, at + 8, off);
            put<uint64_t>(f, at + 16, paddr + 0xffffffff80000000ull); // vaddr: unused by PVH
            put<uint64_t>(f, at + 24, paddr);
            put<uint64_t>(f, at + 32, filesz);
            put<uint64_t>(f, at + 40, memsz);
            put<uint64_t>(f, at + 48, align);
        } else {
            put<uint32_t>(f, at, type);
            put<uint32_t>(f, at + 4, static_cast<uint32_t>(off));
            put<uint32_t>(f, at + 8, static_cast<uint32_t>(paddr));
            put<uint32_t>(f, at + 12, static_cast<uint32_t>(paddr));
            put<uint32_t>(f, at + 16, static_cast<uint32_t>(filesz));
            put<uint32_t>(f, at + 20, static_cast<uint32_t>(memsz));
            put<uint32_t>(f, at + 28, static_cast<uint32_t>(align));
        }
    };
    size_t ph = 0;
    if (o.note_segment) {
        const size_t note_off = f.size();
        for (const auto& n : o.notes) {
            const size_t at = f.size();
            put<uint32_t>(f, at, static_cast<uint32_t>(n.name.size()));
            put<uint32_t>(f, at + 4, n.desc_size);
            put<uint32_t>(f, at + 8, n.type);
            f.resize(at + 12 + align4(n.name.size()) + align4(n.desc_size), 0);
            std::memcpy(f.data() + at + 12, n.name.data(), n.name.size());
            const size_t desc = at + 12 + align4(n.name.size());
            if (n.desc_size == 4) put<uint32_t>(f, desc, static_cast<uint32_t>(n.entry));
            else if (n.desc_size == 8) put<uint64_t>(f, desc, n.entry);
        }
        put_phdr(ph++, 4, note_off, 0, f.size() - note_off, 0, 4);
    }
    for (const auto& s : o.segments) {
        const size_t off = (f.size() + 0xfff) & ~size_t{0xfff};
        f.resize(off + s.file_size, 0);
        for (size_t i = 0; i < s.file_size; ++i) f[off + i] = static_cast<uint8_t>(i * 13 + 1);
        put_phdr(ph++, 1, off, s.paddr, s.file_size, s.mem_size, 0x1000);
    }
    return f;
}

} // namespace kiln::test
