// libkiln's public API: one include for an embedder (a scheduler, a test harness).
//
//   #include <kiln/kiln.hpp>
//
//   kiln::MachineConfig cfg;                    // plain data: kernel, memory, vCPUs, disks...
//   cfg.kernel_path = "testguest.elf";
//   cfg.cmdline = "job=exit status=3";
//   auto m = kiln::Machine::create(cfg);        // Result<unique_ptr<Machine>>: error text on failure
//   auto sub = (*m)->subscribe([](const kiln::MachineEvent& e) { ... });  // on the VM's threads
//   (*m)->start();                              // runs on a thread of its own
//   (*m)->pause(); (*m)->resume();              // from any thread
//   (*m)->stats();                              // vCPU run/wait time, KVM counters, memory, disks, NICs
//   (*m)->shutdown(std::chrono::seconds(10));   // ACPI power button, hard stop after the grace
//   auto exit = (*m)->wait();                   // or poll (*m)->state() / (*m)->exit()
//   int status = kiln::to_exit_status(*exit);   // what `kiln run` would exit with
//
// Logging is spdlog's default logger: call kiln::setup_logging(spdlog::level::warn)
// once for Kiln's quiet stderr default (as `kiln run`), or configure spdlog yourself.
// Any number of Machines may live in one process; each has its own threads. The
// control socket of `kiln run --api-sock` is the same API over HTTP (ApiServer).
// Link the CMake target `kiln`.
#pragma once

#include "vmm/api/api_server.hpp"     // ApiServer, MachineControl: serve a Machine's control API
#include "vmm/base/logging.hpp"       // setup_logging: Kiln's log lines on stderr, at a level
#include "vmm/base/vm_exit.hpp"       // VmExit, ExitReason, to_exit_status
#include "vmm/machine/config.hpp"     // MachineConfig, DiskSpec, NetSpec, MemoryBacking
#include "vmm/machine/machine.hpp"    // Machine
#include "vmm/machine/machine_events.hpp" // MachineEvent, MachineState, Subscription
#include "vmm/machine/run_stats.hpp"  // MachineStats
