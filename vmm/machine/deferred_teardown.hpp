// Deferred KVM teardown: lets a short-lived `kiln run` exit as soon as the verdict is
// known instead of waiting for KVM to destroy the VM.
//
// Why: KVM destroys a VM when the last reference to it is dropped, and with an
// in-kernel irqchip that destruction waits for SRCU grace periods while it unregisters
// the PIC and IOAPIC from the I/O buses: 14-24 ms measured on the development hosts,
// against 0.4 ms without an irqchip, most of a trivial guest's start-to-exit time.
// Nothing of the guest's result depends on it.
//
// How: fork() a child that closes every descriptor except the VM's and vCPUs', tells
// the parent so, and waits for the parent to exit (EOF on a pipe only the parent holds);
// its own exit then drops the last references and KVM tears the VM down there, with the
// child reparented to init (or the nearest subreaper). The parent keeps nothing else
// alive in the child: disk files, their locks, sockets and the console pipes are closed
// in the child before the parent goes on, so they are released exactly when the parent
// releases them. Guest RAM is MADV_DONTFORK (GuestMemory), so fork() copies no guest
// page tables. The CPU the teardown costs is spent in the child: bench/spawn.c, a
// subreaper, adds it to the figures it reports.
//
// For the CLI only: a library embedder that outlives its VMs needs none of this.
#pragma once

#include <span>

#include "vmm/base/result.hpp"

namespace kiln {

// Hands the last close of `keep` (the VM and vCPU fds) to a child process that exits
// after this process does. On failure nothing has changed and the caller just exits.
[[nodiscard]] Result<void> defer_close_to_child(std::span<const int> keep);

} // namespace kiln
