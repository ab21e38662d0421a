/* The ACPI power button, polled from ring 3, and power-off through ACPI S5.
 *
 * A real OS takes the Generic Event Device's interrupt and runs its _EVT; this
 * guest has no IOAPIC driver, so its waits (sleep_ms, spin_ms, the net-echo
 * loop, job=idle) read the same event register (an MMIO exit, so at most every
 * POLL_MS), and on the power button bit do what Linux's poweroff does on a
 * hardware-reduced machine: write SLP_TYP(S5) | SLP_EN to the FADT's
 * SLEEP_CONTROL_REG. */
#include "lib/arch.h"
#include "lib/console.h"
#include "lib/string.h"
#include "user/sys.h"
#include "user/user.h"

#define POLL_MS 10
#define SLEEP_SLICE_MS 50
#define GED_POWER_BUTTON (1u << 1)      /* the bit Kiln's and QEMU's _EVT test */
#define SLP_TYP_SHIFT 2
#define SLP_TYP_MASK 0x1c
#define SLP_EN 0x20

static struct acpi_power acpi;
static bool have_button, ignore_button;
static uint64_t next_poll;

bool power_init(void)
{
    char mode[16];
    if (!arg_str("powerbutton", "shutdown", mode, sizeof mode))
        return false;
    if (strcmp(mode, "ignore") == 0) {
        ignore_button = true;
    } else if (strcmp(mode, "shutdown") != 0) {
        kprintf("testguest: bad value for powerbutton: '%s' (expected shutdown|ignore)\n", mode);
        return false;
    }
    have_button = platform_acpi_power(&acpi);
    return true;
}

static NORETURN void enter_s5(void)
{
    const uint8_t v = (uint8_t)(((acpi.s5_type << SLP_TYP_SHIFT) & SLP_TYP_MASK) | SLP_EN);
    if (acpi.sleep_space == 1)
        outb((uint16_t)acpi.sleep_control, v);
    else
        *(volatile uint8_t *)acpi.sleep_control = v;
    spin_ms(1000);                      /* the VMM ends the VM on the write */
    kprintf("power button: ACPI S5 did not power off\n");
    guest_exit(EXIT_FAIL);
}

void power_poll(void)
{
    if (!have_button)
        return;
    const uint64_t now = rdtsc();
    if (now < next_poll)
        return;
    next_poll = now + tsc_from_ms(POLL_MS);
    if (!(mmio_read32(acpi.ged_events) & GED_POWER_BUTTON))
        return;
    if (ignore_button) {
        kprintf("power button: ignored\n");
        return;
    }
    kprintf("power button: shutting down\n");
    have_button = false;                /* enter_s5's own wait must not poll again */
    enter_s5();
}

void sleep_ms(uint64_t ms)
{
    const uint64_t end = rdtsc() + tsc_from_ms(ms);
    for (uint64_t now = rdtsc(); now < end; now = rdtsc()) {
        const uint64_t left_ms = (end - now) / tsc_from_ms(1) + 1;
        if (have_button) {
            next_poll = 0;
            power_poll();
        }
        sys_sleep(left_ms < SLEEP_SLICE_MS || !have_button ? left_ms : SLEEP_SLICE_MS);
    }
}
