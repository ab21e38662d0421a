/* Small ring-3 helpers: exit, arguments, time. */
#include "lib/arch.h"
#include "lib/cmdline.h"
#include "lib/console.h"
#include "lib/string.h"
#include "user/sys.h"
#include "user/user.h"

#define EXIT_PORT 0x501

NORETURN void guest_exit(int status)
{
    outb(EXIT_PORT, (uint8_t)status);   /* traps; ring 0 performs it */
    sys_halt();                         /* only if the VMM ignored the exit */
}

bool arg_str(const char *key, const char *def, char *out, size_t outsz)
{
    bool cut = false;
    if (!cmdline_get(boot.cmdline, key, out, outsz, &cut)) {
        strlcpy(out, def, outsz);
        return true;
    }
    if (cut) {
        kprintf("testguest: value for %s is too long\n", key);
        return false;
    }
    return true;
}

bool arg_u64(const char *key, uint64_t def, uint64_t min, uint64_t max, uint64_t *out)
{
    char buf[32];
    bool cut = false;
    if (!cmdline_get(boot.cmdline, key, buf, sizeof buf, &cut)) {
        *out = def;
        return true;
    }
    if (cut || !parse_u64(buf, out) || *out < min || *out > max) {
        kprintf("testguest: bad value for %s: '%s' (expected %lu..%lu)\n", key, buf, min, max);
        return false;
    }
    return true;
}

uint64_t tsc_from_ms(uint64_t ms) { return ms * boot.tsc_khz; }
uint64_t us_from_tsc(uint64_t ticks) { return ticks / boot.tsc_khz * 1000 + ticks % boot.tsc_khz * 1000 / boot.tsc_khz; }

void spin_ms(uint64_t ms)
{
    uint64_t end = rdtsc() + tsc_from_ms(ms);
    while (rdtsc() < end) {
        power_poll();
        cpu_relax();
    }
}
