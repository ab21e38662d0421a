/* The guest command line: space-separated words. Words of the form
 * key=value are arguments; everything else (and unknown keys, e.g.
 * virtio_mmio.device=...) is ignored. If a key appears twice the last one
 * wins. */
#pragma once
#include "lib/types.h"

/* Copies the value of `key` into out (terminated). Returns false if the key
 * is absent; a value longer than outsz-1 is truncated and `*truncated` set
 * (truncated may be NULL). */
bool cmdline_get(const char *cmdline, const char *key, char *out, size_t outsz, bool *truncated);

/* Decimal, or hex with 0x. Rejects empty strings, junk and overflow. */
bool parse_u64(const char *s, uint64_t *out);
/* The value of digit c in `base` (up to 16), or -1. */
int digit_value(char c, unsigned base);
