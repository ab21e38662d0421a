#include "tests/support/process.hpp"

#include <algorithm>
#include <cerrno>
#include <fcntl.h>
#include <csignal>
#include <cstring>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

namespace kiln::test {

namespace {
void set_nonblock(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }
} // namespace

ProcessResult run_process(const std::vector<std::string>& argv, const ProcessOptions& opt) {
    ProcessResult res;
    int out_pipe[2], err_pipe[2], in_pipe[2];
    if (::pipe2(out_pipe, O_CLOEXEC) || ::pipe2(err_pipe, O_CLOEXEC) || ::pipe2(in_pipe, O_CLOEXEC)) {
        res.err = "pipe failed";
        return res;
    }
    auto start = std::chrono::steady_clock::now();
    pid_t pid = ::fork();
    if (pid == 0) {
        ::dup2(in_pipe[0], 0);
        ::dup2(out_pipe[1], 1);
        ::dup2(err_pipe[1], 2);
        for (const auto& e : opt.env) ::putenv(const_cast<char*>(e.c_str()));
        std::vector<char*> args;
        for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        ::execvp(args[0], args.data());
        ::dprintf(2, "exec %s: %s\n", args[0], std::strerror(errno));
        ::_exit(127);
    }
    ::close(out_pipe[1]);
    ::close(err_pipe[1]);
    ::close(in_pipe[0]);
    if (!opt.stdin_data.empty())
        [[maybe_unused]] auto w = ::write(in_pipe[1], opt.stdin_data.data(), opt.stdin_data.size());
    ::close(in_pipe[1]);
    set_nonblock(out_pipe[0]);
    set_nonblock(err_pipe[0]);

    bool out_open = true, err_open = true;
    char buf[65536];
    while (out_open || err_open) {
        auto elapsed = std::chrono::steady_clock::now() - start;
        auto left = opt.limit - std::chrono::duration_cast<std::chrono::milliseconds>(elapsed);
        if (left.count() <= 0) {
            ::kill(pid, SIGKILL);
            res.timed_out = true;
            break;
        }
        pollfd fds[2] = {{out_open ? out_pipe[0] : -1, POLLIN, 0}, {err_open ? err_pipe[0] : -1, POLLIN, 0}};
        int n = ::poll(fds, 2, static_cast<int>(std::min<long>(left.count(), 1000)));
        if (n < 0 && errno != EINTR) break;
        for (int i = 0; i < 2; ++i) {
            if (!fds[i].revents) continue;
            ssize_t r = ::read(fds[i].fd, buf, sizeof buf);
            if (r > 0) {
                (i == 0 ? res.out : res.err).append(buf, static_cast<size_t>(r));
            } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                (i == 0 ? out_open : err_open) = false;
            }
        }
    }
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    res.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (WIFEXITED(status)) res.exit_code = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) res.term_signal = WTERMSIG(status);
    return res;
}

ProcessResult run_kiln(const std::vector<std::string>& args, const ProcessOptions& opt) {
    std::vector<std::string> argv{KILN_BIN};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_process(argv, opt);
}

} // namespace kiln::test
