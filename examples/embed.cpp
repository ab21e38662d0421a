// The smallest embedding of libkiln: build a MachineConfig in code, create a Machine,
// run it, and use how it ended. Usage: kiln_embed_example KERNEL [CMDLINE]
//
//   $ kiln_embed_example build/guest-images/testguest.elf "job=exit status=7"
//   guest ended: guest-status, exit status 7 (the guest reported exit status 7)
#include <cstdio>

#include <kiln/kiln.hpp>

int main(int argc, char** argv) {
    if (argc < 2 || argc > 3) {
        std::fprintf(stderr, "usage: %s KERNEL [CMDLINE]\n", argv[0]);
        return 2;
    }
    kiln::setup_logging(spdlog::level::warn);
    kiln::MachineConfig cfg;
    cfg.kernel_path = argv[1];
    cfg.cmdline = argc == 3 ? argv[2] : "job=hello";
    cfg.memory_bytes = 64 * kiln::layout::MiB;
    cfg.cpus = 1;
    cfg.timeout_seconds = 60; // an embedder never waits forever on a guest

    auto machine = kiln::Machine::create(cfg);
    if (!machine) {
        std::fprintf(stderr, "cannot create the VM: %s\n", machine.error().message().c_str());
        return 125;
    }
    auto exit = (*machine)->run();
    if (!exit) {
        std::fprintf(stderr, "cannot run the VM: %s\n", exit.error().message().c_str());
        return 125;
    }
    int status = kiln::to_exit_status(*exit);
    std::printf("guest ended: %s, exit status %d (%s)\n", std::string(kiln::to_string(exit->reason)).c_str(),
                status, exit->detail.c_str());
    return status;
}
