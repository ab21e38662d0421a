// Bad input: one clear line on stderr, exit status 125, never a signal, a hang or a
// partial boot.
#include <doctest/doctest.h>

#include <algorithm>
#include <fstream>
#include <string>
#include <unistd.h>

#include "tests/support/process.hpp"

using kiln::test::run_kiln;

namespace {

std::string scratch(const std::string& name) { return std::string(KILN_BINARY_DIR) + "/bad-input-" + name; }

void write_file(const std::string& path, const std::string& data) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << data;
}

std::string read_prefix(const std::string& path, size_t n) {
    std::ifstream f(path, std::ios::binary);
    std::string s(n, '\0');
    f.read(s.data(), static_cast<std::streamsize>(n));
    s.resize(static_cast<size_t>(f.gcount()));
    return s;
}

// Runs kiln and checks the error contract; returns stderr for content checks.
std::string expect_error(std::vector<std::string> args, const kiln::test::ProcessOptions& opt = {}) {
    auto r = run_kiln(args, opt);
    INFO("stderr: " << r.err);
    INFO("stdout: " << r.out);
    REQUIRE_FALSE(r.timed_out);
    CHECK(r.term_signal == 0);
    CHECK(r.exit_code == 125);
    CHECK(r.out.empty());
    // Exactly one line, and it says it is kiln's error.
    CHECK(r.err.starts_with("kiln: error: "));
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    return r.err;
}

std::vector<std::string> run_args(const std::string& kernel, std::vector<std::string> extra = {}) {
    std::vector<std::string> a{"run", "--kernel", kernel, "--cmdline", "job=hello"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
}

} // namespace

TEST_CASE("bad input: missing kernel file") {
    auto err = expect_error(run_args("/nonexistent/vmlinux"));
    CHECK(err.find("/nonexistent/vmlinux") != std::string::npos);
    CHECK(err.find("No such file") != std::string::npos);
}

TEST_CASE("bad input: a file that is neither bzImage nor PVH ELF") {
    std::string p = scratch("garbage");
    write_file(p, std::string(8192, 'G'));
    auto err = expect_error(run_args(p));
    CHECK(err.find("bzImage") != std::string::npos);
}

TEST_CASE("bad input: an empty kernel file") {
    std::string p = scratch("empty");
    write_file(p, "");
    CHECK(expect_error(run_args(p)).find("empty") != std::string::npos);
}

TEST_CASE("bad input: a truncated ELF") {
    std::string p = scratch("truncated.elf");
    for (size_t n : {16, 64, 300, 4096}) {
        CAPTURE(n);
        write_file(p, read_prefix(TESTGUEST_ELF, n));
        expect_error(run_args(p));
    }
}

TEST_CASE("bad input: a truncated bzImage") {
    std::string p = scratch("truncated.bzimage");
    write_file(p, read_prefix(TESTGUEST_BZIMAGE, 1024));
    expect_error(run_args(p));
}

TEST_CASE("bad input: an initrd too large for the memory") {
    std::string p = scratch("huge.initrd");
    {
        std::ofstream f(p, std::ios::binary | std::ios::trunc);
    }
    REQUIRE(::truncate(p.c_str(), 200 << 20) == 0); // sparse: costs no disk
    auto err = expect_error(run_args(TESTGUEST_ELF, {"--initrd", p, "--memory", "64M"}));
    CHECK(err.find("initrd") != std::string::npos);
    expect_error(run_args(TESTGUEST_BZIMAGE, {"--initrd", p, "--memory", "64M"}));
}

TEST_CASE("bad input: memory sizes") {
    CHECK(expect_error(run_args(TESTGUEST_ELF, {"--memory", "0"})).find("--memory") != std::string::npos);
    CHECK(expect_error(run_args(TESTGUEST_ELF, {"--memory", "12XB"})).find("invalid size") != std::string::npos);
    CHECK(expect_error(run_args(TESTGUEST_ELF, {"--memory", "2K"})).find("too small") != std::string::npos);
    // More than the host can give: the kernel refuses the mapping.
    CHECK(expect_error(run_args(TESTGUEST_ELF, {"--memory", "60T"})).find("memory") != std::string::npos);
}

TEST_CASE("bad input: vCPU counts") {
    CHECK(expect_error(run_args(TESTGUEST_ELF, {"--cpus", "0"})).find("--cpus") != std::string::npos);
    CHECK(expect_error(run_args(TESTGUEST_ELF, {"--cpus", "100000"})).find("--cpus") != std::string::npos);
}

TEST_CASE("bad input: /dev/kvm missing or not accessible") {
    kiln::test::ProcessOptions missing;
    missing.env = {"KILN_KVM_DEVICE=/nonexistent/kvm"};
    CHECK(expect_error(run_args(TESTGUEST_ELF), missing).find("does not exist") != std::string::npos);
    // An unprivileged user cannot open the root-only /dev/kvm of these machines.
    if (::geteuid() == 0 && ::access("/usr/bin/setpriv", X_OK) == 0) {
        auto r = kiln::test::run_process({"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                          KILN_BIN, "run", "--kernel", TESTGUEST_ELF});
        INFO(r.err);
        CHECK(r.exit_code == 125);
        CHECK(r.err.find("not accessible") != std::string::npos);
        CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    }
}

TEST_CASE("bad input: unknown flag, no kernel, unknown command") {
    CHECK(expect_error({"run", "--kernel", TESTGUEST_ELF, "--frobnicate"}).find("--frobnicate") != std::string::npos);
    CHECK(expect_error({"run"}).find("no kernel") != std::string::npos);
    CHECK(expect_error({"run", "--cmdline", "x"}).find("no kernel") != std::string::npos);
    CHECK(expect_error({"launch"}).find("unknown command") != std::string::npos);
    CHECK(expect_error({}).find("no command") != std::string::npos);
}

TEST_CASE("cli: help and version succeed") {
    auto v = run_kiln({"--version"});
    CHECK(v.exit_code == 0);
    CHECK(v.out.starts_with("kiln "));
    auto h = run_kiln({"help"});
    CHECK(h.exit_code == 0);
    CHECK(h.out.find("kiln run") != std::string::npos);
    auto rh = run_kiln({"run", "--help"});
    CHECK(rh.exit_code == 0);
    CHECK(rh.out.find("Exit status") != std::string::npos);
}

TEST_CASE("bad input: issue 5's flags - a bad --memory option, a CPU outside kiln's set, a stats file that cannot be written") {
    CHECK(expect_error(run_args(TESTGUEST_ELF, {"--memory", "128M,hugepages=on,merge=on"}))
              .find("KSM does not merge hugetlb pages") != std::string::npos);
    CHECK(expect_error(run_args(TESTGUEST_ELF, {"--vcpu-affinity", "0=1000"}))
              .find("is outside the CPUs kiln may use") != std::string::npos);
    CHECK(expect_error(run_args(TESTGUEST_ELF, {"--numa-node", "999"})).find("no NUMA node 999") != std::string::npos);
    // Opened at start: a path that cannot be written fails before the guest runs.
    CHECK(expect_error(run_args(TESTGUEST_ELF, {"--stats-json", "/nonexistent/dir/s.json"}))
              .find("--stats-json: opening '/nonexistent/dir/s.json'") != std::string::npos);
}
