// `kiln host paging set`: planning against fake kvm_intel, kvm_amd and kvm_pvm trees, the
// refusal while a fake /proc holds a VM fd, the --dry-run text, already-in-mode, and
// carrying out a plan whose commands are harmless stand-ins for modprobe.
#include <doctest/doctest.h>

#include "tests/unit/test_host_tree.hpp"
#include "vmm/host/paging_switch.hpp"

using namespace kiln;
using namespace kiln::host;
using kiln::test::FakeHost;

namespace {

SwitchRoots roots_of(const FakeHost& h) { return {h.sys(), h.proc(), h.etc()}; }

std::string error_of(const Result<PagingSwitchPlan>& r) {
    REQUIRE_FALSE(r);
    return r.error().message();
}

} // namespace

TEST_CASE("paging switch: mode words") {
    CHECK(*parse_paging_target("ept") == PagingTarget::TwoDimensional);
    CHECK(*parse_paging_target("npt") == PagingTarget::TwoDimensional);
    CHECK(*parse_paging_target("shadow") == PagingTarget::Shadow);
    REQUIRE_FALSE(parse_paging_target("any"));
    CHECK(parse_paging_target("any").error().message() == "'any' is not ept, npt or shadow");
}

TEST_CASE("paging switch: kvm_intel to shadow, the file and the commands, and --dry-run's text") {
    FakeHost h;
    h.module("kvm_intel", "ept", "Y");
    h.mkdir("proc/1/fd");
    const auto plan = plan_paging_switch(PagingTarget::Shadow, roots_of(h));
    REQUIRE(plan);
    CHECK_FALSE(plan->nothing_to_do);
    CHECK(plan->module == "kvm_intel");
    CHECK(plan->summary == "kvm_intel: ept=Y -> ept=0 (shadow paging)");
    CHECK(plan->conf_path == h.etc() + "/modprobe.d/kiln-paging.conf");
    const std::string conf = "# Written by Kiln (kiln host paging set shadow). Delete this file and reload kvm_intel "
                             "for the module's default.\noptions kvm_intel ept=0\n";
    CHECK(plan->conf_text == conf);
    REQUIRE(plan->commands.size() == 2);
    CHECK(plan->commands[0] == std::vector<std::string>{"modprobe", "-r", "kvm_intel"});
    CHECK(plan->commands[1] == std::vector<std::string>{"modprobe", "kvm_intel"});
    CHECK(describe(*plan) == "# kvm_intel: ept=Y -> ept=0 (shadow paging)\n"
                             "cat > " + h.etc() + "/modprobe.d/kiln-paging.conf <<'EOF'\n" + conf +
                             "EOF\n"
                             "modprobe -r kvm_intel\n"
                             "modprobe kvm_intel\n");
}

TEST_CASE("paging switch: kvm_amd back to npt, asked for as ept") {
    FakeHost h;
    h.module("kvm_amd", "npt", "0");
    const auto plan = plan_paging_switch(*parse_paging_target("ept"), roots_of(h));
    REQUIRE(plan);
    CHECK(plan->summary == "kvm_amd: npt=0 -> npt=1 (two-dimensional paging)");
    CHECK(plan->conf_text.ends_with("\noptions kvm_amd npt=1\n"));
    CHECK(plan->conf_text.starts_with("# Written by Kiln (kiln host paging set npt)."));
    CHECK(plan->commands[0] == std::vector<std::string>{"modprobe", "-r", "kvm_amd"});
}

TEST_CASE("paging switch: already in the requested mode: say so, plan nothing") {
    FakeHost h;
    h.module("kvm_amd", "npt", "1");
    const auto plan = plan_paging_switch(PagingTarget::TwoDimensional, roots_of(h));
    REQUIRE(plan);
    CHECK(plan->nothing_to_do);
    CHECK(plan->commands.empty());
    CHECK(plan->summary == "kvm_amd: npt=1: already two-dimensional paging; nothing to do");
    CHECK(describe(*plan) == "# kvm_amd: npt=1: already two-dimensional paging; nothing to do\n");
    CHECK(*apply_paging_switch(*plan, h.sys()) == plan->summary);
    CHECK_FALSE(std::filesystem::exists(h.etc()));
}

TEST_CASE("paging switch: kvm_pvm has no switch, and without a module there is nothing to switch") {
    FakeHost h;
    h.module("kvm_pvm");
    CHECK(error_of(plan_paging_switch(PagingTarget::TwoDimensional, roots_of(h))) ==
          "kvm_pvm always uses shadow paging; it has no switch");
    const auto shadow = plan_paging_switch(PagingTarget::Shadow, roots_of(h));
    REQUIRE(shadow);
    CHECK(shadow->nothing_to_do);
    CHECK(shadow->summary ==
          "kvm_pvm: paravirtualized KVM, always shadow paging: already shadow paging; nothing to do");

    FakeHost none;
    none.module("kvm");
    CHECK(error_of(plan_paging_switch(PagingTarget::Shadow, roots_of(none))) ==
          "no KVM vendor module (kvm_intel, kvm_amd, kvm_pvm) is loaded: nothing to switch");
}

TEST_CASE("paging switch: refused while VMs run, naming the PIDs that hold them") {
    FakeHost h;
    h.module("kvm_intel", "ept", "Y");
    h.symlink("anon_inode:kvm-vm", "proc/4242/fd/7");
    h.symlink("/dev/null", "proc/4242/fd/0");
    h.symlink("anon_inode:kvm-vcpu:0", "proc/99/fd/5"); // a vCPU alone is not the VM fd
    h.symlink("/dev/kvm", "proc/98/fd/3");
    h.symlink("anon_inode:kvm-vm", "proc/5000/fd/12");
    h.symlink("4242", "proc/self"); // not a PID directory of its own
    CHECK(pids_holding_vms(h.proc()) == std::vector<int>{4242, 5000});
    CHECK(error_of(plan_paging_switch(PagingTarget::Shadow, roots_of(h))) ==
          "refusing to reload kvm_intel while VMs run: PIDs 4242, 5000 hold anon_inode:kvm-vm; stop them first");

    std::filesystem::remove(h.path / "proc/5000/fd/12");
    CHECK(error_of(plan_paging_switch(PagingTarget::Shadow, roots_of(h))) ==
          "refusing to reload kvm_intel while VMs run: PID 4242 holds anon_inode:kvm-vm; stop it first");
    // Already in the mode: nothing would be reloaded, so running VMs do not matter.
    CHECK(plan_paging_switch(PagingTarget::TwoDimensional, roots_of(h))->nothing_to_do);
}

TEST_CASE("paging switch: carrying out a plan writes the file and runs each command in order") {
    FakeHost h;
    h.module("kvm_intel", "ept", "Y");
    h.mkdir("etc/modprobe.d");
    auto plan = plan_paging_switch(PagingTarget::Shadow, roots_of(h));
    REQUIRE(plan);
    // Stand-ins for modprobe, which cannot run here: the first records that it ran, the
    // second does what the reload would, as sysfs shows it.
    const std::string marker = h / "ran";
    const std::string ept = h.sys() + "/module/kvm_intel/parameters/ept";
    plan->commands = {{"sh", "-c", "echo first > " + marker}, {"sh", "-c", "echo N > " + ept}};
    const auto done = apply_paging_switch(*plan, h.sys());
    REQUIRE(done);
    CHECK(*done == "kvm_intel reloaded: kvm_intel: ept=N (shadow paging)");
    CHECK(kiln::test::read_text(plan->conf_path) == plan->conf_text);
    CHECK(kiln::test::read_text(marker) == "first\n");

    // A reload that did not take (another options file wins, say) is an error.
    h.module("kvm_intel", "ept", "Y");
    plan->commands = {{"true"}};
    CHECK(apply_paging_switch(*plan, h.sys()).error().message() ==
          "kvm_intel reloaded, but kvm_intel: ept=Y: not shadow paging");

    plan->commands = {{"sh", "-c", "exit 3"}, {"sh", "-c", "echo second > " + marker}};
    const auto failed = apply_paging_switch(*plan, h.sys());
    REQUIRE_FALSE(failed);
    CHECK(failed.error().message() == plan->conf_path +
                                          " written (kvm_intel takes it when next loaded); reloading now failed: "
                                          "'sh -c exit 3' exited with status 3");
    CHECK(kiln::test::read_text(marker) == "first\n"); // stopped at the first failure

    plan->commands = {{"/nonexistent/modprobe"}};
    CHECK(apply_paging_switch(*plan, h.sys()).error().message().ends_with(
        "'/nonexistent/modprobe' exited with status 127"));

    plan->conf_path = h / "no/such/dir/kiln-paging.conf";
    CHECK(apply_paging_switch(*plan, h.sys()).error().message().starts_with("opening '" + plan->conf_path + "'"));
}
