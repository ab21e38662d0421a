#include "lib/console.h"
#include "lib/arch.h"
#include "lib/string.h"

#define COM1 0x3f8
#define LSR 5
#define LSR_THRE 0x20
#define LSR_POLL_MAX 100000   /* a UART that never drains must not hang us */

void console_putc(char c)
{
    for (int i = 0; i < LSR_POLL_MAX && !(inb(COM1 + LSR) & LSR_THRE); i++)
        ;
    outb(COM1, (uint8_t)c);
}

void console_write(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        console_putc(s[i]);
}

/* ---- formatting into a bounded buffer ---- */
struct sink {
    char *buf;
    size_t size;
    size_t len;
};

static void put(struct sink *s, char c)
{
    if (s->len + 1 < s->size)
        s->buf[s->len] = c;
    s->len++;
}

static void put_num(struct sink *s, uint64_t v, unsigned base, bool upper, bool neg,
                    int width, bool zero, bool left)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = digits[v % base];
        v /= base;
    } while (v);
    int len = n + (neg ? 1 : 0);
    if (neg && zero)
        put(s, '-');
    if (!left)
        for (; len < width; len++)
            put(s, zero ? '0' : ' ');
    if (neg && !zero)
        put(s, '-');
    while (n)
        put(s, tmp[--n]);
    if (left)
        for (; len < width; len++)
            put(s, ' ');
}

static void format(struct sink *s, const char *fmt, va_list ap)
{
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            put(s, *fmt);
            continue;
        }
        bool zero = false, left = false;
        int width = 0, lng = 0;
        for (fmt++;; fmt++) {
            if (*fmt == '0')
                zero = true;
            else if (*fmt == '-')
                left = true;
            else
                break;
        }
        while (*fmt >= '0' && *fmt <= '9')
            width = width * 10 + (*fmt++ - '0');
        while (*fmt == 'l' || *fmt == 'z') {
            lng++;
            fmt++;
        }
        switch (*fmt) {
        case 'd':
        case 'i': {
            int64_t v = lng ? va_arg(ap, int64_t) : va_arg(ap, int);
            put_num(s, v < 0 ? -(uint64_t)v : (uint64_t)v, 10, false, v < 0, width, zero, left);
            break;
        }
        case 'u':
        case 'x':
        case 'X': {
            uint64_t v = lng ? va_arg(ap, uint64_t) : va_arg(ap, unsigned);
            put_num(s, v, *fmt == 'u' ? 10 : 16, *fmt == 'X', false, width, zero, left);
            break;
        }
        case 'p':
            put(s, '0');
            put(s, 'x');
            put_num(s, (uint64_t)va_arg(ap, void *), 16, false, false, width, zero, left);
            break;
        case 'c':
            put(s, (char)va_arg(ap, int));
            break;
        case 's': {
            const char *str = va_arg(ap, const char *);
            if (!str)
                str = "(null)";
            int len = (int)strlen(str);
            if (!left)
                for (; len < width; len++)
                    put(s, ' ');
            while (*str)
                put(s, *str++);
            if (left)
                for (; len < width; len++)
                    put(s, ' ');
            break;
        }
        case '%':
            put(s, '%');
            break;
        case 0:
            return;
        default:
            put(s, '%');
            put(s, *fmt);
        }
    }
}

int kvprintf(const char *fmt, va_list ap)
{
    char buf[256];
    struct sink s = { buf, sizeof buf, 0 };
    format(&s, fmt, ap);
    size_t n = s.len < sizeof buf ? s.len : sizeof buf - 1;
    console_write(buf, n);
    return (int)s.len;
}

int kprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = kvprintf(fmt, ap);
    va_end(ap);
    return n;
}

int ksnprintf(char *buf, size_t size, const char *fmt, ...)
{
    struct sink s = { buf, size, 0 };
    va_list ap;
    va_start(ap, fmt);
    format(&s, fmt, ap);
    va_end(ap);
    if (size)
        buf[s.len < size ? s.len : size - 1] = 0;
    return (int)s.len;
}
