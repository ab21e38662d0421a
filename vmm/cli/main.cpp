// kiln: the command-line front end of libkiln. Parses, builds a Machine, runs it, and
// turns how it ended into the exit status documented in `kiln run --help`.
#include <csignal>
#include <optional>
#include <cstdio>
#include <cstdlib>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "kiln_version.hpp"
#include "vmm/api/api_server.hpp"
#include "vmm/base/logging.hpp"
#include "vmm/cli/cli.hpp"
#include "vmm/cli/ctl.hpp"
#include "vmm/host/cpu_placement.hpp"
#include "vmm/host/host_check.hpp"
#include "vmm/host/paging_switch.hpp"
#include "vmm/machine/deferred_teardown.hpp"
#include "vmm/machine/machine.hpp"

namespace {

int die(const kiln::Error& e) {
    std::fprintf(stderr, "kiln: error: %s\n", e.message().c_str());
    return kiln::exit_status::kHostError;
}

int run(kiln::cli::RunCommand cmd) {
    using namespace kiln;
    setup_logging(cmd.log_level);
    // A console piped into `head` must not kill the VMM with SIGPIPE.
    std::signal(SIGPIPE, SIG_IGN);

    // SIGINT/SIGTERM/SIGHUP are taken through a signalfd on the I/O thread, so they are
    // blocked before any vCPU thread exists (threads inherit the mask).
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&stop_signals, s);
    ::pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    Fd sigfd(::signalfd(-1, &stop_signals, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!sigfd) return die(Error::from_errno("signalfd"));

    // For tests and unusual hosts: another KVM device node.
    if (const char* dev = std::getenv("KILN_KVM_DEVICE"); dev && *dev) cmd.config.kvm_path = dev;

    // Interactive use: the terminal's input goes to the guest's serial port.
    cmd.config.forward_stdin = cmd.config.console.kind == ConsoleConfig::Kind::Stdout && ::isatty(STDIN_FILENO);

    // The control socket is bound first: a path in use fails before anything is built.
    std::optional<api::ApiListener> listener;
    if (!cmd.api_sock.empty()) {
        auto l = api::ApiListener::bind(cmd.api_sock);
        if (!l) return die(l.error());
        listener.emplace(std::move(*l));
    }

    auto machine = Machine::create(cmd.config);
    if (!machine) return die(machine.error());
    Machine& m = **machine;
    // This thread serves the VM's I/O events (console, timers, signals): on the I/O CPUs.
    if (auto p = host::pin_thread(::pthread_self(), m.placement().io_cpus); !p) return die(p.error());
    auto added = m.event_loop().add(sigfd.get(), EPOLLIN, [&](uint32_t) {
        signalfd_siginfo si{};
        if (::read(sigfd.get(), &si, sizeof si) == static_cast<ssize_t>(sizeof si))
            m.stop({ExitReason::Signal, static_cast<int>(si.ssi_signo),
                    fmt::format("stopped by signal {}", strsignal(static_cast<int>(si.ssi_signo)))});
    });
    if (!added) return die(added.error());

    // The control socket serves from its own thread for as long as the VM runs, and
    // hands the event streams their last line (guest-exited) before kiln exits.
    api::MachineControl control(m);
    std::unique_ptr<api::ApiServer> api_server;
    if (listener) {
        auto server = api::ApiServer::create(control, std::move(*listener));
        if (!server) return die(server.error());
        api_server = std::move(*server);
    }

    auto result = m.run();
    api_server.reset();
    if (!result) return die(result.error());
    const VmExit& e = *result;
    int status = to_exit_status(e);
    if (e.reason == ExitReason::GuestStatus || e.reason == ExitReason::ExpectMatched)
        spdlog::info("{} (exit status {})", e.detail, status);
    else
        std::fprintf(stderr, "kiln: %s (exit status %d)\n", e.detail.c_str(), status);
    // The verdict is out; let a child wait for KVM to destroy the VM (14-24 ms with an
    // irqchip) rather than whoever waits for this process. See deferred_teardown.hpp.
    if (auto d = defer_close_to_child(m.kvm_fds()); !d)
        spdlog::debug("tearing the VM down in-process: {}", d.error().message());
    return status;
}

// `kiln host check`: exit 1 when any check fails, so scripts can gate on it.
int host_check(const kiln::cli::HostCheckCommand& cmd) {
    const auto checks = kiln::host::check_host();
    if (cmd.json) std::printf("%s\n", kiln::host::checks_to_json(checks).dump(2).c_str());
    else std::fputs(kiln::host::format_checks(checks).c_str(), stdout);
    return kiln::host::any_failed(checks) ? 1 : 0;
}

int host_paging_set(const kiln::cli::HostPagingSetCommand& cmd) {
    auto plan = kiln::host::plan_paging_switch(cmd.target);
    if (!plan) return die(plan.error());
    if (plan->nothing_to_do) {
        std::printf("%s\n", plan->summary.c_str());
        return 0;
    }
    if (cmd.dry_run) {
        std::fputs(kiln::host::describe(*plan).c_str(), stdout);
        return 0;
    }
    auto done = kiln::host::apply_paging_switch(*plan);
    if (!done) return die(done.error());
    std::printf("%s\n", done->c_str());
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    auto cmd = kiln::cli::parse(args);
    if (!cmd) return die(cmd.error());
    return std::visit(
        [](auto&& c) -> int {
            using T = std::decay_t<decltype(c)>;
            if constexpr (std::is_same_v<T, kiln::cli::ShowHelp>) {
                std::fputs(c.text.c_str(), stdout);
                return 0;
            } else if constexpr (std::is_same_v<T, kiln::cli::ShowVersion>) {
                std::printf("kiln %s\n", KILN_VERSION);
                return 0;
            } else if constexpr (std::is_same_v<T, kiln::cli::DiskCreateCommand>) {
                kiln::setup_logging(c.log_level);
                if (auto r = kiln::block::create_image(c.spec); !r) return die(r.error());
                return 0;
            } else if constexpr (std::is_same_v<T, kiln::cli::HostCheckCommand>) {
                return host_check(c);
            } else if constexpr (std::is_same_v<T, kiln::cli::HostPagingSetCommand>) {
                return host_paging_set(c);
            } else if constexpr (std::is_same_v<T, kiln::cli::CtlCommand>) {
                return kiln::cli::run_ctl(c);
            } else {
                return run(std::move(c));
            }
        },
        std::move(*cmd));
}
