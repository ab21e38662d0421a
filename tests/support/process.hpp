// Running a child process (usually `kiln run ...`) from an integration test: its exit
// status, stdout and stderr, with a hard wall-clock limit so a hung VMM fails the test
// instead of hanging the suite.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace kiln::test {

struct ProcessResult {
    int exit_code = -1;   // the exit status, or -1 when killed by a signal
    int term_signal = 0;  // the signal that ended it, 0 if it exited
    bool timed_out = false; // killed by run_process's own limit
    std::string out, err;
    double wall_seconds = 0;
};

struct ProcessOptions {
    std::chrono::milliseconds limit{std::chrono::seconds(120)};
    std::string stdin_data;        // written to the child's stdin, then closed
    std::vector<std::string> env;  // extra NAME=VALUE entries
};

ProcessResult run_process(const std::vector<std::string>& argv, const ProcessOptions& opt = {});

// `kiln run --kernel K --cmdline C extra...` with the built binary.
ProcessResult run_kiln(const std::vector<std::string>& args, const ProcessOptions& opt = {});

} // namespace kiln::test
