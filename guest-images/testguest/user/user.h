/* Ring-3 side: the job runner and the helpers jobs use. */
#pragma once
#include "kernel/bootinfo.h"
#include "lib/types.h"

NORETURN void user_main(void);

/* Exit statuses (also what `job=` results map to). */
#define EXIT_OK 0
#define EXIT_FAIL 1      /* the job ran and its check failed */
#define EXIT_USAGE 2     /* bad command line / request does not fit */
#define EXIT_EXCEPTION 3 /* unexpected CPU exception (reported by ring 0) */
/* The device jobs (blk-*, net-*). */
#define EXIT_IOERR 4         /* a disk answered a request with an error status */
#define EXIT_NODEV 5         /* no such device, or it failed to initialise */
#define EXIT_DEVICE_BROKEN 6 /* a request never completed, DEVICE_NEEDS_RESET, or the
                                device returned garbage (a used entry that names no request) */

/* Writes the status to the debug-exit port 0x501; if that returns, halts. */
NORETURN void guest_exit(int status);

/* Command-line arguments of the current job. On a bad value these print
 * "testguest: bad value for KEY: 'VALUE' (expected MIN..MAX)" and return false. */
bool arg_u64(const char *key, uint64_t def, uint64_t min, uint64_t max, uint64_t *out);
bool arg_str(const char *key, const char *def, char *out, size_t outsz);

/* Time from the TSC (frequency from ring-0 setup). */
uint64_t tsc_from_ms(uint64_t ms);
uint64_t us_from_tsc(uint64_t ticks);
void spin_ms(uint64_t ms);

/* Platform facts. */
unsigned platform_cpu_count(const char **source);
unsigned platform_cpuid_cpus(void);
uint64_t platform_ram_bytes(void);
bool platform_is_mapped(uint64_t addr, uint64_t len);

/* The ACPI power button and power-off, as the firmware tables describe them
 * (platform_acpi_power: false without ACPI or without either piece). */
struct acpi_power {
    uint64_t ged_events;        /* the GED's event register (MMIO, 32-bit, read clears) */
    uint64_t sleep_control;     /* the FADT's SLEEP_CONTROL_REG address... */
    uint8_t sleep_space;        /* ...in this space: 0 memory, 1 I/O port */
    uint8_t s5_type;            /* SLP_TYP for S5, from \_S5 */
};
bool platform_acpi_power(struct acpi_power *out);

/* The power button (user/power.c). power_init reads powerbutton=shutdown|ignore
 * (false on a bad value) and the ACPI tables; power_poll, called from waits,
 * checks the GED's event register at most every 10 ms: on a press it prints
 * "power button: shutting down" and enters ACPI S5 (does not return), or with
 * powerbutton=ignore prints "power button: ignored". */
bool power_init(void);
void power_poll(void);
/* Waits `ms` halted (SYS_SLEEP in 50 ms slices), polling the power button. */
void sleep_ms(uint64_t ms);
