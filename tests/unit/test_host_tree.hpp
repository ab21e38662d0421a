// A fake host for the vmm/host tests: sys/, proc/, dev/ and etc/ under one scratch
// directory, with files, directories and symlinks made by relative path.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "tests/support/files.hpp"

namespace kiln::test {

struct FakeHost : ScratchDir {
    FakeHost() : ScratchDir("/tmp/kiln-host-XXXXXX") {}

    [[nodiscard]] std::string sys() const { return *this / "sys"; }
    [[nodiscard]] std::string proc() const { return *this / "proc"; }
    [[nodiscard]] std::string dev() const { return *this / "dev"; }
    [[nodiscard]] std::string etc() const { return *this / "etc"; }

    void write(const std::string& rel, const std::string& text) const {
        const auto p = path / rel;
        std::filesystem::create_directories(p.parent_path());
        std::ofstream(p) << text;
    }
    void mkdir(const std::string& rel) const { std::filesystem::create_directories(path / rel); }
    // A symlink at `rel` whose target is `target` (need not exist, as /proc's fd links).
    void symlink(const std::string& target, const std::string& rel) const {
        const auto p = path / rel;
        std::filesystem::create_directories(p.parent_path());
        REQUIRE(::symlink(target.c_str(), p.c_str()) == 0);
    }
    // A KVM vendor module with one parameter, as /sys/module shows it.
    void module(const std::string& name, const std::string& param = "", const std::string& value = "") const {
        mkdir("sys/module/" + name + "/parameters");
        if (!param.empty()) write("sys/module/" + name + "/parameters/" + param, value + "\n");
    }
};

} // namespace kiln::test
