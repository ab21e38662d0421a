// Running the format peers (iasl, dtc, qemu-img, ...) from unit tests: a shell command
// under timeout(1) and its combined output. Scratch directories and file helpers come
// from tests/support/files.hpp.
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include "firmware/platform.hpp"
#include "tests/support/files.hpp"

namespace kiln::test {

struct ToolRun {
    int status = -1;  // exit status, -1 if it did not exit normally
    std::string out;  // stdout and stderr
};

// `cmd` is a shell command line (the caller quotes its arguments), run by sh -c under
// timeout(1): killed after 60 s, so a hung peer fails the test instead of hanging it.
inline ToolRun run_tool(const std::string& cmd) {
    ToolRun r;
    std::string quoted;
    for (char c : cmd) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
    const std::string line = "timeout 60 sh -c '" + quoted + "' 2>&1";
    FILE* f = ::popen(line.c_str(), "r");
    if (f == nullptr) return r;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) r.out.append(buf, n);
    const int st = ::pclose(f);
    r.status = st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return r;
}

inline bool have_tool(const std::string& name) {
    return run_tool("command -v " + name + " >/dev/null").status == 0;
}

// Whitespace runs collapsed to one space, so a test can compare a block of output
// without depending on indentation.
inline std::string squeeze(const std::string& s) {
    return std::regex_replace(s, std::regex("\\s+"), " ");
}

// Kiln's standard machine with `virtio_devices` virtio-mmio slots, named dev0, dev1, ...
inline firmware::Platform platform_with(uint32_t cpus, uint32_t virtio_devices) {
    auto p = firmware::Platform::standard(cpus);
    for (uint32_t i = 0; i < virtio_devices; ++i) REQUIRE(p.add_virtio_mmio(fmt::format("dev{}", i)));
    return p;
}

} // namespace kiln::test
