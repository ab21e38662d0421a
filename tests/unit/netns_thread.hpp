// Unit tests that need network interfaces run their body on a thread with a network
// namespace of its own (unshare(CLONE_NEWNET) changes only the calling thread; threads
// it starts, and `ip` run from it, inherit the namespace), so every interface they make
// lives and dies there. doctest's assertions belong to its own thread: the body records
// failed expectations with EXPECT and they are reported afterwards.
#pragma once

#include <doctest/doctest.h>

#include <sched.h>

#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#define EXPECT(cond)                                                                                              \
    do {                                                                                                          \
        if (!(cond)) f.push_back(std::string(#cond) + " (line " + std::to_string(__LINE__) + ")");               \
    } while (0)

namespace kiln::test {

// Skipped, with a message, without CAP_SYS_ADMIN.
inline void run_in_netns(const std::function<void(std::vector<std::string>& f)>& body) {
    std::vector<std::string> failures;
    bool ran = false;
    std::thread t([&] {
        if (::unshare(CLONE_NEWNET) != 0) return;
        ran = true;
        // No IPv6 on new interfaces: the kernel's router solicitations and MLD reports
        // would be traffic the test did not send.
        for (const char* p : {"/proc/sys/net/ipv6/conf/all/disable_ipv6", "/proc/sys/net/ipv6/conf/default/disable_ipv6"})
            std::ofstream(p) << "1\n";
        body(failures);
    });
    t.join();
    if (!ran) {
        MESSAGE("no CAP_SYS_ADMIN for a private network namespace: skipped");
        return;
    }
    for (const auto& x : failures) FAIL_CHECK(x);
}

} // namespace kiln::test
