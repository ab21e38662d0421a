// Paging-mode detection against fake sysfs trees (one per vendor module and setting),
// and against this host.
#include <doctest/doctest.h>

#include <sys/stat.h>

#include <string>

#include "tests/unit/test_host_tree.hpp"
#include "vmm/host/paging.hpp"

using namespace kiln::host;
using kiln::test::FakeHost;

TEST_CASE("paging: EPT or NPT on or off, kvm_pvm, nothing loaded") {
    struct Case {
        std::string module, param, value;
        PagingMode mode;
        std::string why;
    } cases[] = {
        {"kvm_intel", "ept", "Y", PagingMode::Ept, "kvm_intel: ept=Y"},
        {"kvm_intel", "ept", "N", PagingMode::Shadow, "kvm_intel: ept=N"},
        {"kvm_amd", "npt", "1", PagingMode::Npt, "kvm_amd: npt=1"},
        {"kvm_amd", "npt", "0", PagingMode::Shadow, "kvm_amd: npt=0"},
        {"kvm_pvm", "", "", PagingMode::Shadow, "kvm_pvm: paravirtualized KVM, always shadow paging"},
        {"kvm_intel", "", "", PagingMode::Unknown, "kvm_intel: parameter ept unreadable"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.why);
        FakeHost host;
        host.module("kvm", "tdp_mmu", "Y");
        host.module(c.module, c.param, c.value);
        const auto p = detect_paging(host.sys());
        CHECK(p.mode == c.mode);
        CHECK(p.module == c.module);
        CHECK(p.why == c.why);
    }
    FakeHost none;
    none.module("kvm");
    const auto p = detect_paging(none.sys());
    CHECK(p.mode == PagingMode::Unknown);
    CHECK(p.module.empty());
    CHECK(std::string(to_string(PagingMode::Shadow)) == "shadow");
    CHECK(std::string(to_string(PagingMode::Ept)) == "ept");
}

TEST_CASE("paging: this host's answer names a module whenever /dev/kvm exists") {
    const auto p = detect_paging();
    MESSAGE("this host: " << std::string(to_string(p.mode)) << " (" << p.why << ")");
    struct stat st{};
    if (::stat("/dev/kvm", &st) == 0) {
        CHECK_FALSE(p.module.empty());
        CHECK(p.mode != PagingMode::Unknown);
    }
}
