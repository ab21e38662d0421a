// A child process (usually `kiln run ...`) running while a test inspects it: its threads,
// its output so far, its network. stdout and stderr go to memory files the test can read
// at any moment (no pipe to drain, so the child never blocks on them). The destructor
// kills (SIGKILL) and reaps a child the test did not wait for, so a failing REQUIRE
// leaves nothing behind.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include <sys/types.h>

namespace kiln::test {

class Background {
public:
    // argv[0] is looked up in PATH; stdin is /dev/null.
    explicit Background(std::vector<std::string> argv);
    ~Background();
    Background(const Background&) = delete;
    Background& operator=(const Background&) = delete;

    [[nodiscard]] pid_t pid() const { return pid_; }

    // Waits for the child (SIGKILL after `limit`): its exit status, or -1 when a signal
    // ended it (term_signal() says which).
    int wait(std::chrono::milliseconds limit = std::chrono::seconds(120));
    [[nodiscard]] int term_signal() const { return term_signal_; }
    void signal(int sig) const;
    [[nodiscard]] bool running();

    // Everything the child wrote so far.
    [[nodiscard]] std::string out() const;
    [[nodiscard]] std::string err() const;
    // True once stdout contains `text`; false after `limit` or when the child ended
    // without printing it.
    bool wait_for_output(const std::string& text, std::chrono::milliseconds limit = std::chrono::seconds(30));

    // Thread name -> Cpus_allowed_list, once every name in `want` exists (or 10 s pass).
    [[nodiscard]] std::map<std::string, std::string> threads(const std::vector<std::string>& want) const;

private:
    void reap(int status);

    pid_t pid_ = -1;
    int out_fd_ = -1, err_fd_ = -1;
    bool reaped_ = false;
    int term_signal_ = 0;
    int exit_code_ = -1;
};

// argv for `[prefix...] KILN_BIN args...` (prefix: `taskset -c 1`, `ip netns exec NS`).
std::vector<std::string> kiln_argv(const std::vector<std::string>& args, std::vector<std::string> prefix = {});

} // namespace kiln::test
