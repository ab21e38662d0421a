// Device discovery as `kiln run` hands it to the guest: the ACPI tables and the device
// tree Kiln writes for a real machine (two disks, three vCPUs) decompiled by the
// reference tools, and the command-line words the test guest finds its disks by.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "tests/support/files.hpp"
#include "tests/support/process.hpp"

using kiln::test::read_text;
using kiln::test::run_kiln;
using kiln::test::ScratchDir;
using kiln::test::run_process;
namespace fs = std::filesystem;

TEST_CASE("discovery: --dump-acpi and --dump-dtb describe the disks, vCPUs and IOAPIC the VM really has") {
    ScratchDir dir;
    const fs::path a = dir.path / "a.raw", b = dir.path / "b.raw";
    fs::resize_file((std::ofstream(a), a), 1 << 20);
    fs::resize_file((std::ofstream(b), b), 1 << 20);
    const fs::path acpi = dir.path / "acpi", dtb = dir.path / "kiln.dtb";
    auto r = run_kiln({"run", "--kernel", TESTGUEST_ELF, "--cpus", "3", "--memory", "64M", "--cmdline", "job=hello",
                       "--disk", "path=" + a.string(), "--disk", "path=" + b.string() + ",readonly=on",
                       "--dump-acpi", acpi.string(), "--dump-dtb", dtb.string()});
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    for (const char* t : {"RSDP", "XSDT", "FACP", "DSDT", "APIC"}) CHECK(fs::exists(acpi / (std::string(t) + ".aml")));

    auto iasl = run_process({"sh", "-c", "cd '" + acpi.string() + "' && iasl -d DSDT.aml APIC.aml 2>&1"});
    REQUIRE_MESSAGE(iasl.exit_code == 0, iasl.out);
    const std::string dsdt = read_text(acpi / "DSDT.dsl"), madt = read_text(acpi / "APIC.dsl");
    // One LNRO0005 device per disk, at the slots the machine put them, edge interrupts.
    size_t n = 0;
    for (size_t at = dsdt.find("\"LNRO0005\""); at != std::string::npos; at = dsdt.find("\"LNRO0005\"", at + 1)) ++n;
    CHECK(n == 2);
    CHECK(dsdt.find("0xD0000000") != std::string::npos);
    CHECK(dsdt.find("0xD0001000") != std::string::npos);
    CHECK(dsdt.find("Edge, ActiveHigh") != std::string::npos);
    CHECK(dsdt.find("0x00000005,") != std::string::npos); // disk 0's GSI
    CHECK(dsdt.find("0x00000006,") != std::string::npos); // disk 1's
    // Three local APICs and the IOAPIC after them.
    n = 0;
    for (size_t at = madt.find("Processor Local APIC"); at != std::string::npos;
         at = madt.find("Processor Local APIC", at + 1))
        ++n;
    CHECK(n == 3);
    CHECK(madt.find("I/O APIC") != std::string::npos);

    auto dtc = run_process({"dtc", "-I", "dtb", "-O", "dts", dtb.string()});
    REQUIRE_MESSAGE(dtc.exit_code == 0, dtc.err);
    CHECK(dtc.out.find("virtio_mmio@d0000000") != std::string::npos);
    CHECK(dtc.out.find("virtio_mmio@d0001000") != std::string::npos);
    CHECK(dtc.out.find("compatible = \"virtio,mmio\"") != std::string::npos);
    CHECK(dtc.out.find("cpu@2") != std::string::npos);
    // The bootargs the DTB carries are the command line the guest got: the user's words
    // and one virtio_mmio.device= word per disk.
    CHECK(dtc.out.find("bootargs = \"job=hello virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6\"") !=
          std::string::npos);
}

TEST_CASE("discovery: a bzImage guest boots with --dtb and --acpi off - a PVH kernel with --dtb is refused clearly") {
    auto r = run_kiln({"run", "--kernel", TESTGUEST_BZIMAGE, "--memory", "64M", "--cmdline", "job=exit status=7",
                       "--dtb", "--acpi", "off"});
    INFO(r.err);
    CHECK(r.exit_code == 7);
    r = run_kiln({"run", "--kernel", TESTGUEST_ELF, "--memory", "64M", "--cmdline", "job=hello", "--dtb"});
    CHECK(r.exit_code == 125);
    CHECK(r.err.find("device tree") != std::string::npos);
}

TEST_CASE("discovery: a --dump-acpi or --dump-dtb path that cannot be written is one line and status 125") {
    for (const auto& flags : {std::vector<std::string>{"--dump-dtb", "/nonexistent/kiln.dtb"},
                              std::vector<std::string>{"--dump-acpi", "/nonexistent/dir/acpi"}}) {
        CAPTURE(flags[0]);
        std::vector<std::string> args{"run", "--kernel", TESTGUEST_ELF, "--memory", "64M", "--cmdline", "job=hello"};
        args.insert(args.end(), flags.begin(), flags.end());
        auto r = run_kiln(args);
        CHECK(r.exit_code == 125);
        CHECK(r.err.find("kiln: error: " + flags[0] + ": ") == 0);
        CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    }
}
