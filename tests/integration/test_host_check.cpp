// `kiln host check` and `kiln host paging set` on this machine, through the kiln binary:
// the JSON parses and agrees with the human report, the paging mode is what the module
// says, and on kvm_pvm (the development machines) a switch to EPT is refused.
#include <doctest/doctest.h>

#include <sys/stat.h>

#include <algorithm>
#include <string>

#include <nlohmann/json.hpp>

#include "tests/support/process.hpp"

using kiln::test::run_kiln;

namespace {

bool is_dir(const char* path) {
    struct stat st{};
    return ::stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

} // namespace

TEST_CASE("host check: --json parses, counts its checks and reports the paging mode") {
    const auto r = run_kiln({"host", "check", "--json"});
    INFO("stderr: " << r.err);
    REQUIRE_FALSE(r.timed_out);
    const auto j = nlohmann::json::parse(r.out); // throws, and so fails, on anything else
    REQUIRE(j["checks"].is_array());
    const auto& checks = j["checks"];
    CHECK(checks.size() == 10);
    CHECK(j["pass"].get<size_t>() + j["warn"].get<size_t>() + j["fail"].get<size_t>() == checks.size());
    CHECK(r.exit_code == (j["fail"] == 0 ? 0 : 1));
    for (const auto& c : checks) {
        CHECK(c["name"].is_string());
        CHECK((c["verdict"] == "pass" || c["verdict"] == "warn" || c["verdict"] == "fail"));
        CHECK_FALSE(c["detail"].get<std::string>().empty());
    }
    const auto paging = std::find_if(checks.begin(), checks.end(), [](const auto& c) { return c["name"] == "paging"; });
    REQUIRE(paging != checks.end());
    MESSAGE("this host: " << (*paging)["detail"].get<std::string>());
    if (is_dir("/sys/module/kvm_pvm")) {
        CHECK((*paging)["module"] == "kvm_pvm");
        CHECK((*paging)["mode"] == "shadow");
        CHECK((*paging)["verdict"] == "warn");
    }
    if (is_dir("/sys/module/kvm_pvm") || is_dir("/sys/module/kvm_intel") || is_dir("/sys/module/kvm_amd")) {
        const auto kvm = std::find_if(checks.begin(), checks.end(), [](const auto& c) { return c["name"] == "kvm"; });
        REQUIRE(kvm != checks.end());
        CHECK((*kvm)["verdict"] == "pass");
        CHECK((*kvm)["api_version"] == 12);
    }
}

TEST_CASE("host check: the human report has one line per check and a summary") {
    const auto r = run_kiln({"host", "check"});
    INFO("stdout: " << r.out);
    REQUIRE_FALSE(r.timed_out);
    CHECK(r.err.empty());
    CHECK(std::count(r.out.begin(), r.out.end(), '\n') == 11);
    CHECK(r.out.find("\n10 checks: ") != std::string::npos);
    CHECK(r.out.find("  paging        ") != std::string::npos);
}

TEST_CASE("host paging set: refused on kvm_pvm, and shadow is already in place") {
    if (!is_dir("/sys/module/kvm_pvm")) return; // a host with a switch: not exercised here
    auto r = run_kiln({"host", "paging", "set", "ept", "--dry-run"});
    CHECK(r.exit_code == 125);
    CHECK(r.out.empty());
    CHECK(r.err == "kiln: error: kvm_pvm always uses shadow paging; it has no switch\n");
    r = run_kiln({"host", "paging", "set", "shadow"});
    CHECK(r.exit_code == 0);
    CHECK(r.out == "kvm_pvm: paravirtualized KVM, always shadow paging: already shadow paging; nothing to do\n");
}
