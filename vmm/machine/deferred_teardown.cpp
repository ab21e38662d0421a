#include "vmm/machine/deferred_teardown.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <vector>

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace kiln {
namespace {

// Closes every fd of this process except those in `keep` (sorted). Async-signal-safe:
// it runs in a forked child of a possibly multi-threaded parent. False if the kernel
// has no close_range (before 5.9).
bool close_all_except(const int* keep, size_t n) {
    unsigned next = 0;
    for (size_t i = 0; i < n; ++i) {
        const auto k = static_cast<unsigned>(keep[i]);
        if (k > next && ::syscall(SYS_close_range, next, k - 1, 0) != 0) return false;
        next = k + 1;
    }
    return ::syscall(SYS_close_range, next, UINT_MAX, 0) == 0;
}

[[noreturn]] void child_main(const int* keep, size_t n, int ready_w, int parent_gone_r) {
    ::prctl(PR_SET_NAME, "kiln-teardown", 0, 0, 0);
    // Without close_range, give up at once: the parent sees EOF instead of the ready
    // byte and, holding its own references, tears the VM down itself as before.
    if (!close_all_except(keep, n)) ::_exit(0);
    const char byte = 1;
    while (::write(ready_w, &byte, 1) < 0 && errno == EINTR) {
    }
    ::close(ready_w);
    char c;
    while (::read(parent_gone_r, &c, 1) < 0 && errno == EINTR) {
    }
    ::_exit(0); // the last references to the VM go here
}

} // namespace

Result<void> defer_close_to_child(std::span<const int> keep) {
    int ready[2], parent_gone[2];
    if (::pipe2(ready, O_CLOEXEC) < 0) return fail_errno("pipe2");
    if (::pipe2(parent_gone, O_CLOEXEC) < 0) {
        ::close(ready[0]);
        ::close(ready[1]);
        return fail_errno("pipe2");
    }
    // Built before fork(): the child must not allocate.
    std::vector<int> kept(keep.begin(), keep.end());
    kept.push_back(ready[1]);
    kept.push_back(parent_gone[0]);
    std::sort(kept.begin(), kept.end());

    const pid_t pid = ::fork();
    if (pid == 0) child_main(kept.data(), kept.size(), ready[1], parent_gone[0]);
    const int fork_errno = errno;
    ::close(ready[1]);
    ::close(parent_gone[0]);
    if (pid < 0) {
        ::close(ready[0]);
        ::close(parent_gone[1]);
        return fail_errno("fork", fork_errno);
    }
    // Wait until the child has closed its copies of everything else (or died: EOF).
    char c;
    while (::read(ready[0], &c, 1) < 0 && errno == EINTR) {
    }
    ::close(ready[0]);
    // parent_gone[1] stays open on purpose until this process exits: that EOF is the
    // child's cue. It is close-on-exec, so nothing this process runs inherits it.
    return {};
}

} // namespace kiln
