/* Internet checksums (RFC 1071) and address parsing for the network jobs and the
 * virtio-net driver. Addresses are kept as their bytes in packet order. */
#pragma once
#include "lib/types.h"

/* Adds the bytes [p, p+n) to a running checksum sum. A packet may be summed in
 * pieces; every piece but the last must have an even length. */
uint64_t csum_add(uint64_t sum, const void *p, size_t n);
/* The checksum field's value: the sum folded to 16 bits and complemented, to be
 * stored as it is in memory (put16_raw). 0 when the summed data (including a
 * checksum field) is intact. */
uint16_t csum_fold(uint64_t sum);

/* Completes a partial checksum (Linux's CHECKSUM_PARTIAL, virtio-net's NEEDS_CSUM):
 * the field at start + offset holds the pseudo-header's sum (folded, not
 * complemented); sums [start, len), field included, and stores the complement (0 as
 * 0xffff: the same in ones' complement, and what UDP needs, where 0 means "none").
 * False if the field lies beyond len. */
bool csum_complete(uint8_t *p, uint32_t len, uint32_t start, uint32_t offset);

/* Big-endian (network order) fields. */
static inline uint16_t get_be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline void put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
/* A checksum as csum_fold() returns it (already in memory order). */
static inline void put_csum(uint8_t *p, uint16_t c)
{
    p[0] = (uint8_t)c;
    p[1] = (uint8_t)(c >> 8);
}

/* "A.B.C.D" (decimal, each 0..255) into out[4]. */
bool parse_ipv4(const char *s, uint8_t out[4]);
/* "xx:xx:xx:xx:xx:xx" (hex) into out[6]. */
bool parse_mac(const char *s, uint8_t out[6]);
