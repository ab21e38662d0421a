/* Serial console on COM1 (16550 at 0x3f8) and a printf subset:
 * %d %i %u %x %X %c %s %p %%, flags '0' '-', width, length l/ll/z.
 * Lines end in "\n" only (no "\r"), so captured output splits cleanly.
 * Works in both rings; in ring 3 every in/out traps to the #GP emulator. */
#pragma once
#include "lib/types.h"

void console_putc(char c);
void console_write(const char *s, size_t n);
int kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int kvprintf(const char *fmt, va_list ap);
/* Formats into buf (always terminated); returns the untruncated length. */
int ksnprintf(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
