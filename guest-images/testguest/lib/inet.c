#include "lib/inet.h"

#include "lib/cmdline.h"

/* Summing little-endian 32-bit loads and folding gives the same 16-bit ones'
 * complement sum as network-order 16-bit words, byte-swapped; csum_fold()'s value
 * stored in memory order is therefore the right field. */
uint64_t csum_add(uint64_t sum, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    for (; n >= 4; p += 4, n -= 4) {
        uint32_t w;
        __builtin_memcpy(&w, p, 4);
        sum += w;
    }
    if (n >= 2) {
        uint16_t w;
        __builtin_memcpy(&w, p, 2);
        sum += w;
        p += 2;
        n -= 2;
    }
    if (n)
        sum += *p; /* the odd last byte is the high half of its word: the low in memory order */
    return sum;
}

uint16_t csum_fold(uint64_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

bool csum_complete(uint8_t *p, uint32_t len, uint32_t start, uint32_t offset)
{
    if (start + offset + 2 > len || start + offset < start)
        return false;
    uint16_t c = csum_fold(csum_add(0, p + start, len - start));
    put_csum(p + start + offset, c ? c : 0xffff);
    return true;
}

bool parse_ipv4(const char *s, uint8_t out[4])
{
    for (int i = 0; i < 4; i++) {
        unsigned v = 0, digits = 0;
        for (int d; (d = digit_value(*s, 10)) >= 0 && digits < 3; s++, digits++)
            v = v * 10 + (unsigned)d;
        if (!digits || v > 255 || *s != (i < 3 ? '.' : 0))
            return false;
        out[i] = (uint8_t)v;
        s++;
    }
    return true;
}

bool parse_mac(const char *s, uint8_t out[6])
{
    for (int i = 0; i < 6; i++) {
        int hi = digit_value(s[0], 16), lo = hi < 0 ? -1 : digit_value(s[1], 16);
        if (lo < 0 || s[2] != (i < 5 ? ':' : 0))
            return false;
        out[i] = (uint8_t)(hi << 4 | lo);
        s += 3;
    }
    return true;
}
