#include "lib/cmdline.h"
#include "lib/string.h"

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

bool cmdline_get(const char *p, const char *key, char *out, size_t outsz, bool *truncated)
{
    size_t klen = strlen(key);
    bool found = false;
    while (*p) {
        while (is_space(*p))
            p++;
        const char *word = p;
        while (*p && !is_space(*p))
            p++;
        size_t wlen = (size_t)(p - word);
        if (wlen > klen && word[klen] == '=' && strncmp(word, key, klen) == 0) {
            size_t vlen = wlen - klen - 1;
            bool cut = vlen >= outsz;
            if (cut)
                vlen = outsz - 1;
            memcpy(out, word + klen + 1, vlen);
            out[vlen] = 0;
            if (truncated)
                *truncated = cut;
            found = true;
        }
    }
    return found;
}

int digit_value(char c, unsigned base)
{
    int d = -1;
    if (c >= '0' && c <= '9')
        d = c - '0';
    else if (c >= 'a' && c <= 'f')
        d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F')
        d = c - 'A' + 10;
    return d >= 0 && (unsigned)d < base ? d : -1;
}

bool parse_u64(const char *s, uint64_t *out)
{
    unsigned base = 10;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
    }
    if (!*s)
        return false;
    uint64_t v = 0;
    for (; *s; s++) {
        int d = digit_value(*s, base);
        if (d < 0)
            return false;
        if (v > (UINT64_MAX - (unsigned)d) / base)
            return false;
        v = v * base + d;
    }
    *out = v;
    return true;
}
