/* mkbzimage SETUP.BIN IMAGE.ELF OUT.BZIMAGE
 *
 * Packages the linked guest ELF as a Linux bzImage: the setup sectors from
 * boot/setup.S, followed by the ELF's PT_LOAD segments as one flat image that
 * a loader puts at 0x100000 (code32_start). Patches setup_sects, syssize and
 * init_size (memory from 0x100000 to the end of .bss/.noinit, page-aligned).
 * Host tool; plain C, no dependencies. */
#include <elf.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOAD_ADDR 0x100000u

static unsigned char *slurp(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(n > 0 ? (size_t)n : 1);
    if (!buf || n < 0 || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "%s: read error\n", path);
        exit(1);
    }
    fclose(f);
    *size = (size_t)n;
    return buf;
}

static void die(const char *what)
{
    fprintf(stderr, "mkbzimage: %s\n", what);
    exit(1);
}

static void put32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s SETUP.BIN IMAGE.ELF OUT.BZIMAGE\n", argv[0]);
        return 2;
    }
    size_t setup_size, elf_size;
    unsigned char *setup = slurp(argv[1], &setup_size);
    unsigned char *elf = slurp(argv[2], &elf_size);

    if (setup_size < 1024 || setup_size % 512 || setup_size / 512 - 1 > 255)
        die("setup must be 2..256 sectors");
    if (memcmp(setup + 0x202, "HdrS", 4) != 0 || setup[0x1fe] != 0x55 || setup[0x1ff] != 0xaa)
        die("setup has no boot-protocol header");

    if (elf_size < sizeof(Elf64_Ehdr))
        die("ELF too small");
    Elf64_Ehdr eh;
    memcpy(&eh, elf, sizeof eh);
    if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
        eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phoff + (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr) > elf_size)
        die("not a usable ELF64 file");

    uint64_t lo = UINT64_MAX, file_end = 0, mem_end = 0;
    for (int i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        memcpy(&ph, elf + eh.e_phoff + (uint64_t)i * sizeof ph, sizeof ph);
        if (ph.p_type != PT_LOAD || ph.p_memsz == 0)
            continue;
        if (ph.p_offset + ph.p_filesz > elf_size)
            die("segment outside the file");
        if (ph.p_paddr < lo)
            lo = ph.p_paddr;
        if (ph.p_paddr + ph.p_filesz > file_end)
            file_end = ph.p_paddr + ph.p_filesz;
        if (ph.p_paddr + ph.p_memsz > mem_end)
            mem_end = ph.p_paddr + ph.p_memsz;
    }
    if (lo != LOAD_ADDR)
        die("image must be linked at 0x100000");
    if (file_end - lo > 64u << 20 || mem_end - lo > 512u << 20)
        die("image unreasonably large");

    size_t payload_size = (size_t)(file_end - lo);
    unsigned char *payload = calloc(1, payload_size ? payload_size : 1);
    if (!payload)
        die("out of memory");
    for (int i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        memcpy(&ph, elf + eh.e_phoff + (uint64_t)i * sizeof ph, sizeof ph);
        if (ph.p_type == PT_LOAD && ph.p_filesz)
            memcpy(payload + (ph.p_paddr - lo), elf + ph.p_offset, ph.p_filesz);
    }

    uint32_t init_size = (uint32_t)(((mem_end - lo) + 4095) & ~4095ull);
    setup[0x1f1] = (unsigned char)(setup_size / 512 - 1);        /* setup_sects */
    put32(setup + 0x1f4, (uint32_t)((payload_size + 15) / 16));  /* syssize */
    put32(setup + 0x260, init_size);                             /* init_size */

    FILE *out = fopen(argv[3], "wb");
    if (!out || fwrite(setup, 1, setup_size, out) != setup_size ||
        fwrite(payload, 1, payload_size, out) != payload_size || fclose(out) != 0) {
        perror(argv[3]);
        return 1;
    }
    free(payload);
    free(elf);
    free(setup);
    printf("mkbzimage: %s: setup %zu bytes, payload %zu bytes, init_size 0x%x\n", argv[3], setup_size,
           payload_size, init_size);
    return 0;
}
