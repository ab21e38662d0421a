#include "tests/support/background.hpp"

#include <doctest/doctest.h>

#include <csignal>
#include <filesystem>
#include <thread>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include "tests/support/files.hpp"

namespace kiln::test {

namespace fs = std::filesystem;

namespace {
std::string read_fd(int fd) {
    struct stat st {};
    if (fd < 0 || ::fstat(fd, &st) != 0) return {};
    std::string s(static_cast<size_t>(st.st_size), '\0');
    const ssize_t n = ::pread(fd, s.data(), s.size(), 0);
    s.resize(n > 0 ? static_cast<size_t>(n) : 0);
    return s;
}
} // namespace

Background::Background(std::vector<std::string> argv) {
    out_fd_ = ::memfd_create("background-stdout", MFD_CLOEXEC);
    err_fd_ = ::memfd_create("background-stderr", MFD_CLOEXEC);
    REQUIRE(out_fd_ >= 0);
    REQUIRE(err_fd_ >= 0);
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
        int null = ::open("/dev/null", O_RDONLY);
        ::dup2(null, 0);
        ::dup2(out_fd_, 1); // dup2 clears FD_CLOEXEC on the copy
        ::dup2(err_fd_, 2);
        std::vector<char*> c;
        for (auto& a : argv) c.push_back(a.data());
        c.push_back(nullptr);
        ::execvp(c[0], c.data());
        ::dprintf(2, "exec %s failed\n", c[0]);
        ::_exit(127);
    }
}

Background::~Background() {
    if (pid_ > 0 && !reaped_) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
    }
    if (out_fd_ >= 0) ::close(out_fd_);
    if (err_fd_ >= 0) ::close(err_fd_);
}

void Background::reap(int status) {
    reaped_ = true;
    if (WIFEXITED(status)) exit_code_ = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) term_signal_ = WTERMSIG(status);
}

int Background::wait(std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!reaped_) {
        int st = 0;
        const pid_t r = ::waitpid(pid_, &st, WNOHANG);
        if (r == pid_) {
            reap(st);
        } else if (r < 0) {
            reaped_ = true; // not our child any more: nothing to wait for
        } else if (std::chrono::steady_clock::now() >= deadline) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, &st, 0);
            reap(st);
        } else {
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
    }
    return exit_code_;
}

void Background::signal(int sig) const {
    if (pid_ > 0 && !reaped_) ::kill(pid_, sig);
}

bool Background::running() {
    if (reaped_) return false;
    int st = 0;
    if (::waitpid(pid_, &st, WNOHANG) == pid_) reap(st);
    return !reaped_;
}

std::string Background::out() const { return read_fd(out_fd_); }
std::string Background::err() const { return read_fd(err_fd_); }

bool Background::wait_for_output(const std::string& text, std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (true) {
        const bool alive = running(); // read after: the last words of a child that ended count
        if (out().find(text) != std::string::npos) return true;
        if (!alive || std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

std::map<std::string, std::string> Background::threads(const std::vector<std::string>& want) const {
    std::map<std::string, std::string> out;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
        out.clear();
        std::error_code ec;
        for (const auto& t : fs::directory_iterator(fmt::format("/proc/{}/task", pid_), ec)) {
            std::string name = read_text(t.path() / "comm");
            if (!name.empty() && name.back() == '\n') name.pop_back();
            const std::string status = read_text(t.path() / "status");
            const auto at = status.find("Cpus_allowed_list:");
            if (at == std::string::npos) continue;
            const auto b = status.find_first_not_of(" \t", at + 18);
            out[name] = status.substr(b, status.find('\n', b) - b);
        }
        bool all = true;
        for (const auto& w : want) all = all && out.count(w);
        if (all) return out;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return out;
}

std::vector<std::string> kiln_argv(const std::vector<std::string>& args, std::vector<std::string> prefix) {
    prefix.push_back(KILN_BIN);
    prefix.insert(prefix.end(), args.begin(), args.end());
    return prefix;
}

} // namespace kiln::test
