/* How many CPUs, how much RAM, what is mapped: read from firmware tables in
 * ring 3 (everything the memory map names is mapped user-accessible).
 * CPU count: the larger of the MP table (floating pointer "_MP_" in
 * 0x9fc00..0xa0000 or 0xf0000..0x100000; Kiln writes one) and the ACPI MADT,
 * else CPUID. */
#include "lib/string.h"
#include "user/sys.h"
#include "user/user.h"

uint64_t platform_ram_bytes(void)
{
    uint64_t total = 0;
    for (uint32_t i = 0; i < boot.memmap_entries; i++)
        if (boot.memmap[i].type == MEM_RAM)
            total += boot.memmap[i].size;
    return total;
}

/* Mirrors paging.c: memory-map entries rounded to 2 MiB, the image, 3..4 GiB,
 * nothing at or above map_limit. */
bool platform_is_mapped(uint64_t addr, uint64_t len)
{
    uint64_t end = addr + len;
    if (end < addr || end > boot.map_limit)
        return false;
    if (addr >= GiB(3) && end <= GiB(4))
        return true;
    if (end <= boot.image_end)
        return true;
    for (uint32_t i = 0; i < boot.memmap_entries; i++) {
        const struct mem_region *r = &boot.memmap[i];
        if (addr >= ALIGN_DOWN(r->addr, MiB(2)) && end <= ALIGN_UP(r->addr + r->size, MiB(2)))
            return true;
    }
    return false;
}

static uint8_t checksum(const void *p, size_t n)
{
    uint8_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += ((const uint8_t *)p)[i];
    return sum;
}

static const uint8_t *scan(uint64_t from, uint64_t to, const char *sig, size_t siglen, size_t cksum_len)
{
    for (uint64_t a = from; a + 16 <= to; a += 16) {
        const uint8_t *p = (const uint8_t *)a;
        if (memcmp(p, sig, siglen) == 0 && checksum(p, cksum_len) == 0)
            return p;
    }
    return 0;
}

static unsigned mptable_cpus(void)
{
    const uint8_t *mpf = 0;
    if (platform_is_mapped(0x9fc00, 0x400))
        mpf = scan(0x9fc00, 0xa0000, "_MP_", 4, 16);
    if (!mpf && platform_is_mapped(0xf0000, 0x10000))
        mpf = scan(0xf0000, 0x100000, "_MP_", 4, 16);
    if (!mpf)
        return 0;
    uint32_t cfg_pa = *(const uint32_t *)(mpf + 4);
    if (cfg_pa == 0)
        return mpf[11] ? 2 : 0;         /* MP spec default configurations: 2 CPUs */
    if (!platform_is_mapped(cfg_pa, 44))
        return 0;
    const uint8_t *cfg = (const uint8_t *)(uint64_t)cfg_pa;
    uint16_t len = *(const uint16_t *)(cfg + 4);
    if (memcmp(cfg, "PCMP", 4) != 0 || !platform_is_mapped(cfg_pa, len) || checksum(cfg, len) != 0)
        return 0;
    uint16_t entries = *(const uint16_t *)(cfg + 34);
    const uint8_t *e = cfg + 44, *end = cfg + len;
    unsigned cpus = 0;
    for (uint16_t i = 0; i < entries && e < end; i++) {
        if (e[0] == 0) {                /* processor: 20 bytes, flags bit 0 = enabled */
            if (e[3] & 1)
                cpus++;
            e += 20;
        } else if (e[0] <= 4) {
            e += 8;
        } else {
            break;
        }
    }
    return cpus;
}

static const uint8_t *acpi_table(const uint8_t *rsdp, const char *sig)
{
    bool xsdt = rsdp[15] >= 2 && *(const uint64_t *)(rsdp + 24);
    uint64_t root = xsdt ? *(const uint64_t *)(rsdp + 24) : *(const uint32_t *)(rsdp + 16);
    if (!platform_is_mapped(root, 36))
        return 0;
    const uint8_t *r = (const uint8_t *)root;
    uint32_t len = *(const uint32_t *)(r + 4);
    if (!platform_is_mapped(root, len))
        return 0;
    unsigned step = xsdt ? 8 : 4;
    for (uint32_t off = 36; off + step <= len; off += step) {
        uint64_t t = xsdt ? *(const uint64_t *)(r + off) : *(const uint32_t *)(r + off);
        if (platform_is_mapped(t, 8) && memcmp((const void *)t, sig, 4) == 0 &&
            platform_is_mapped(t, *(const uint32_t *)(t + 4)))
            return (const uint8_t *)t;
    }
    return 0;
}

/* The RSDP from the loader, else found by scanning the BIOS area; 0 if none. */
static const uint8_t *find_rsdp(void)
{
    const uint8_t *rsdp = 0;
    if (boot.rsdp && platform_is_mapped(boot.rsdp, 36))
        rsdp = (const uint8_t *)boot.rsdp;
    else if (platform_is_mapped(0xe0000, 0x20000))
        rsdp = scan(0xe0000, 0x100000, "RSD PTR ", 8, 20);
    if (!rsdp || memcmp(rsdp, "RSD PTR ", 8) != 0)
        return 0;
    return rsdp;
}

static unsigned madt_cpus(void)
{
    const uint8_t *rsdp = find_rsdp();
    if (!rsdp)
        return 0;
    const uint8_t *madt = acpi_table(rsdp, "APIC");
    if (!madt)
        return 0;
    uint32_t len = *(const uint32_t *)(madt + 4);
    unsigned cpus = 0;
    for (uint32_t off = 44; off + 2 <= len;) {
        const uint8_t *e = madt + off;
        if (e[1] < 2)
            break;
        if (e[0] == 0 && e[1] >= 8 && (*(const uint32_t *)(e + 4) & 1))
            cpus++;                     /* processor local APIC, enabled */
        else if (e[0] == 9 && e[1] >= 16 && (*(const uint32_t *)(e + 8) & 1))
            cpus++;                     /* processor local x2APIC, enabled */
        off += e[1];
    }
    return cpus;
}

/* Logical CPUs per package, as the VMM's CPUID says (SYS_CPUID: the ring-0
 * view). Only a guess at the machine's CPU count: sockets are invisible. */
unsigned platform_cpuid_cpus(void)
{
    uint32_t r[4];
    sys_cpuid(0, 0, r);
    uint32_t max_leaf = r[0];
    sys_cpuid(1, 0, r);
    unsigned n = (r[3] & (1u << 28)) ? (r[1] >> 16) & 0xff : 1;   /* HTT */
    if (max_leaf >= 0xb) {
        for (uint32_t sub = 0; sub < 8; sub++) {
            sys_cpuid(0xb, sub, r);
            if (((r[2] >> 8) & 0xff) == 0)
                break;
            if ((r[1] & 0xffff) > n)
                n = r[1] & 0xffff;
        }
    }
    return n ? n : 1;
}

unsigned platform_cpu_count(const char **source)
{
    /* Both tables when both exist: SeaBIOS (QEMU pc/q35) writes an MP table
     * listing only the CPUs it saw itself, while its MADT lists them all. */
    unsigned mp = mptable_cpus(), acpi = madt_cpus(), n;
    const char *src;
    if (mp && mp >= acpi) {
        n = mp;
        src = "mptable";
    } else if (acpi) {
        n = acpi;
        src = "acpi";
    } else {
        n = platform_cpuid_cpus();
        src = "cpuid";
    }
    if (source)
        *source = src;
    return n;
}

/* An AML integer (ZeroOp, OneOp, Byte/Word/DWord/QWordPrefix) at p, within end. */
static bool aml_integer(const uint8_t *p, const uint8_t *end, uint64_t *out)
{
    static const uint8_t sizes[] = { [0x0a] = 1, [0x0b] = 2, [0x0c] = 4, [0x0d] = 0, [0x0e] = 8 };
    if (p >= end)
        return false;
    if (p[0] == 0x00 || p[0] == 0x01) {
        *out = p[0];
        return true;
    }
    if (p[0] < 0x0a || p[0] > 0x0e || sizes[p[0]] == 0 || p + 1 + sizes[p[0]] > end)
        return false;
    uint64_t v = 0;
    for (unsigned i = 0; i < sizes[p[0]]; i++)
        v |= (uint64_t)p[1 + i] << (8 * i);
    *out = v;
    return true;
}

static const uint8_t *find_bytes(const uint8_t *from, const uint8_t *end, const void *what, size_t n)
{
    for (const uint8_t *p = from; p + n <= end; p++)
        if (memcmp(p, what, n) == 0)
            return p;
    return 0;
}

/* What an OS's ACPI code would learn, without an AML interpreter: the FADT's
 * SLEEP_CONTROL_REG (a Generic Address Structure), the SLP_TYP of \_S5 in the
 * DSDT (Name (_S5, Package () {N, ...})), and the event register of the
 * Generic Event Device: the first SystemMemory OperationRegion after the
 * "ACPI0013" _HID (Kiln's and QEMU microvm's _EVT read it). */
bool platform_acpi_power(struct acpi_power *out)
{
    memset(out, 0, sizeof *out);
    const uint8_t *rsdp = find_rsdp();
    const uint8_t *fadt = rsdp ? acpi_table(rsdp, "FACP") : 0;
    if (!fadt || *(const uint32_t *)(fadt + 4) < 256)
        return false;
    out->sleep_space = fadt[244];
    out->sleep_control = *(const uint64_t *)(fadt + 248);
    if (!out->sleep_control || out->sleep_space > 1 ||
        (out->sleep_space == 0 && !platform_is_mapped(out->sleep_control, 1)))
        return false;

    uint64_t dsdt_pa = *(const uint64_t *)(fadt + 140);
    if (!dsdt_pa)
        dsdt_pa = *(const uint32_t *)(fadt + 40);
    if (!dsdt_pa || !platform_is_mapped(dsdt_pa, 36) || memcmp((const void *)dsdt_pa, "DSDT", 4) != 0)
        return false;
    const uint8_t *dsdt = (const uint8_t *)dsdt_pa;
    uint32_t len = *(const uint32_t *)(dsdt + 4);
    if (!platform_is_mapped(dsdt_pa, len))
        return false;
    const uint8_t *end = dsdt + len;

    static const uint8_t s5[] = { 0x08, '_', 'S', '5', '_', 0x12 };   /* NameOp _S5_ PackageOp */
    const uint8_t *p = find_bytes(dsdt + 36, end, s5, sizeof s5);
    if (!p)
        return false;
    p += sizeof s5;
    if (p >= end)
        return false;
    p += 1 + (*p >> 6) + 1;             /* PkgLength (lead byte + following), NumElements */
    uint64_t type;
    if (!aml_integer(p, end, &type) || type > 7)
        return false;
    out->s5_type = (uint8_t)type;

    static const uint8_t ged_hid[] = { 0x0d, 'A', 'C', 'P', 'I', '0', '0', '1', '3', 0 };
    static const uint8_t op_region[] = { 0x5b, 0x80 };
    p = find_bytes(dsdt + 36, end, ged_hid, sizeof ged_hid);
    while (p && (p = find_bytes(p, end, op_region, sizeof op_region)) != 0) {
        p += 2 + 4;                     /* OpRegionOp NameSeg */
        uint64_t addr;
        if (p < end && p[0] == 0 && aml_integer(p + 1, end, &addr) && platform_is_mapped(addr, 4)) {
            out->ged_events = addr;
            break;
        }
    }
    return out->ged_events != 0;
}
