/* kiln-exit N: report status N (0..255) through the debug-exit port 0x501 (Kiln's, and
 * QEMU's isa-debug-exit at iobase 0x501), then exit(0) if the VMM did not stop the VM.
 *
 * Why a program: Debian's cloud kernel is built without CONFIG_DEVPORT, so there is no
 * /dev/port for busybox to write to. This is freestanding (no libc): ioperm(2) for the
 * one port, one `outb`, and the exit system call. build.sh compiles it with the host's
 * gcc as a static binary for the initramfs. */
#define SYS_EXIT 60
#define SYS_IOPERM 173
#define SYS_WRITE 1
#define DEBUG_EXIT_PORT 0x501

static long syscall3(long nr, long a, long b, long c) {
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return ret;
}

static void say(const char *msg) {
    long len = 0;
    while (msg[len]) ++len;
    syscall3(SYS_WRITE, 2, (long)msg, len);
}

/* Called from _start with the initial stack pointer: argc, then argv[]. */
__attribute__((used, noreturn)) static void kiln_exit_main(long *sp) {
    long argc = sp[0];
    char **argv = (char **)(sp + 1);
    long status = -1;
    if (argc == 2 && argv[1][0]) {
        status = 0;
        for (const char *p = argv[1]; *p; ++p) {
            if (*p < '0' || *p > '9' || status > 255) { status = -1; break; }
            status = status * 10 + (*p - '0');
        }
    }
    if (status < 0 || status > 255) {
        say("usage: kiln-exit N   (N = 0..255)\n");
        syscall3(SYS_EXIT, 2, 0, 0);
    }
    if (syscall3(SYS_IOPERM, DEBUG_EXIT_PORT, 1, 1) != 0) {
        say("kiln-exit: ioperm(0x501) failed\n");
        syscall3(SYS_EXIT, 1, 0, 0);
    }
    unsigned char byte = (unsigned char)status;
    unsigned short port = DEBUG_EXIT_PORT;
    __asm__ volatile("outb %0, %1" : : "a"(byte), "Nd"(port));
    syscall3(SYS_EXIT, 0, 0, 0); /* no debug-exit device: the caller powers off instead */
    for (;;) {}
}

__asm__(".globl _start\n"
        "_start:\n"
        "  mov %rsp, %rdi\n"
        "  and $-16, %rsp\n"
        "  call kiln_exit_main\n");
