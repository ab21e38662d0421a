#include "vmm/machine/machine.hpp"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "devices/virtio/blk.hpp"
#include "devices/virtio/net.hpp"
#include "firmware/acpi.hpp"
#include "firmware/fdt.hpp"
#include "firmware/virtio_mmio_cmdline.hpp"
#include "vmm/base/file_io.hpp"
#include "vmm/host/cpu_placement.hpp"
#include "vmm/host/disk_irq.hpp"
#include "vmm/host/numa.hpp"
#include "vmm/host/paging.hpp"
#include "vmm/machine/cpuid.hpp"
#include "vmm/machine/vcpu_setup.hpp"

namespace kiln {

namespace {

// Reads a whole file for the loader; sizes come from fstat so a FIFO or directory fails
// with a clear message instead of a partial read.
Result<std::vector<uint8_t>> read_file(const std::string& path, const char* what) {
    auto fd = Fd::open(path, O_RDONLY);
    if (!fd) return std::unexpected(fd.error().context(what));
    struct stat st{};
    if (::fstat(fd->get(), &st) < 0) return fail_errno(fmt::format("{}: stat '{}'", what, path));
    if (!S_ISREG(st.st_mode)) return fail("{} '{}' is not a regular file", what, path);
    std::vector<uint8_t> data(static_cast<size_t>(st.st_size));
    size_t off = 0;
    while (off < data.size()) {
        ssize_t n = ::read(fd->get(), data.data() + off, data.size() - off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail_errno(fmt::format("{}: reading '{}'", what, path));
        if (n == 0) break;
        off += static_cast<size_t>(n);
    }
    data.resize(off);
    return data;
}

// RAM plus swap of the host; 0 if unknown. A guest larger than this cannot be backed,
// and failing at start beats the OOM killer mid-run.
uint64_t host_memory_bytes() {
    struct sysinfo si{};
    if (::sysinfo(&si) != 0) return 0;
    return (uint64_t(si.totalram) + si.totalswap) * si.mem_unit;
}

// The CPUs for a disk's queue workers: where the interrupts of the host devices under
// its files land (host/disk_irq.hpp; the file the spec names and the top image, which
// differ for snapshot=on and scratch disks), within the I/O CPUs and off the CPUs of
// explicitly pinned vCPUs; the I/O CPUs when that tells nothing.
host::CpuSet disk_worker_cpus(const block::DiskSpec& spec, const block::DiskImage& image,
                              const host::Placement& placement) {
    std::optional<host::CpuSet> irq;
    auto add = [&irq](const struct stat& st) {
        // A block device given as the image answers for itself; a file for its filesystem's.
        if (auto cpus = host::disk_irq_cpus(S_ISBLK(st.st_mode) ? st.st_rdev : st.st_dev))
            irq = irq ? *irq | *cpus : *cpus;
    };
    struct stat st{};
    if (!spec.path.empty() && ::stat(spec.path.c_str(), &st) == 0) add(st);
    if (::fstat(image.top_fd(), &st) == 0) add(st);
    host::CpuSet vcpu_only; // vCPUs that float over the whole pool reserve nothing
    for (const auto& cpus : placement.vcpu_cpus)
        if (!(cpus == placement.io_cpus)) vcpu_only = vcpu_only | cpus;
    return host::disk_worker_cpus(placement.io_cpus, irq, vcpu_only);
}

} // namespace

Machine::Machine(MachineConfig cfg) : cfg_(std::move(cfg)) {}

Machine::~Machine() {
    if (runner_.joinable()) {
        stop({ExitReason::Stopped, 0, "the machine was destroyed while it ran"});
        runner_.join();
    }
    // Threads must be gone before the VM, memory and devices they use.
    stopping_.store(true, std::memory_order_release);
    for (auto& v : vcpus_) v->kick();
    for (auto& v : vcpus_) v->join();
}

Result<std::unique_ptr<Machine>> Machine::create(const MachineConfig& cfg) {
    KILN_TRY(cfg.validate());
    std::unique_ptr<Machine> m(new Machine(cfg));
    KILN_TRY(m->build());
    return m;
}

Result<void> Machine::build() {
    // Read the inputs before touching KVM: a missing kernel is the commonest mistake.
    auto kernel = KILN_TRY(read_file(cfg_.kernel_path, "kernel"));
    if (kernel.empty()) return fail("kernel '{}' is empty", cfg_.kernel_path);
    std::vector<uint8_t> initrd;
    if (!cfg_.initrd_path.empty()) initrd = KILN_TRY(read_file(cfg_.initrd_path, "initrd"));
    // Disks too: a missing image, a corrupt header or a lock held by another VM fails
    // here, before KVM is touched and before anything is written.
    std::vector<std::unique_ptr<block::DiskImage>> images;
    for (size_t i = 0; i < cfg_.disks.size(); ++i)
        images.push_back(KILN_TRY_CTX(block::open_disk(cfg_.disks[i]), "--disk {}", i));

    // TAPs too: a missing TAP or bridge, or no permission, fails before KVM is touched.
    std::vector<net::Tap> taps;
    for (size_t i = 0; i < cfg_.nets.size(); ++i) {
        const auto& spec = cfg_.nets[i];
        // One queue pair per vCPU by default; an existing TAP made without multi_queue
        // has room for one.
        uint16_t queues = spec.queues;
        if (queues == 0)
            queues = spec.tap.empty() || net::Tap::is_multi_queue(spec.tap) ? static_cast<uint16_t>(cfg_.cpus) : 1;
        taps.push_back(KILN_TRY_CTX(net::Tap::open({spec.tap, queues, spec.bridge}), "--net {}", i));
    }

    auto plan = KILN_TRY(MemoryPlan::for_ram_size(cfg_.memory_bytes));
    if (uint64_t host = host_memory_bytes(); host && cfg_.memory_bytes > host)
        return fail("--memory {} MiB is more than this host's {} MiB of RAM and swap", cfg_.memory_bytes >> 20,
                    host >> 20);

    kvm_.emplace(KILN_TRY(Kvm::open(cfg_.kvm_path)));
    {
        // A few sysfs reads: always done, the run's statistics report it.
        const auto paging = host::detect_paging();
        paging_ = fmt::format("{} ({})", host::to_string(paging.mode), paging.why);
        spdlog::info("host paging: {}", paging_);
        const bool two_d = paging.mode == host::PagingMode::Ept || paging.mode == host::PagingMode::Npt;
        if (cfg_.paging == MachineConfig::Paging::TwoDimensional && !two_d)
            return fail("--paging ept: this host's KVM uses {} paging ({})", host::to_string(paging.mode), paging.why);
        if (cfg_.paging == MachineConfig::Paging::Shadow && paging.mode != host::PagingMode::Shadow)
            return fail("--paging shadow: this host's KVM uses {} paging ({})", host::to_string(paging.mode),
                        paging.why);
    }
    // Placement before memory: guest RAM is bound to the node before anything touches it.
    {
        const auto topology = KILN_TRY(host::NumaTopology::read());
        placement_ = KILN_TRY(host::plan_vcpu_placement(topology, KILN_TRY(host::allowed_cpus()), cfg_.cpus,
                                                        cfg_.numa_node, cfg_.vcpu_affinity));
        spdlog::info("{}", placement_.description);
    }
    const int max_vcpus = kvm_->max_vcpus();
    if (cfg_.cpus > static_cast<uint32_t>(max_vcpus))
        return fail("--cpus {} is above this host's KVM limit of {} vCPUs", cfg_.cpus, max_vcpus);

    if (!cfg_.stats_json_path.empty()) {
        auto f = Fd::open(cfg_.stats_json_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (!f) return std::unexpected(f.error().context("--stats-json"));
        stats_json_ = std::move(*f);
    }

    loop_ = std::make_unique<EventLoop>(KILN_TRY(EventLoop::create()));
    exits_ = std::make_unique<ExitLatch>([this] { on_vm_end(); });
    console_ = KILN_TRY(Console::create(cfg_, *exits_));

    vm_.emplace(KILN_TRY(Vm::create(*kvm_)));
    // The TSS and identity-map pages must be set before any vCPU exists (Intel).
    KILN_TRY(vm_->set_identity_map_addr(layout::kKvmIdentityMap));
    KILN_TRY(vm_->set_tss_addr(layout::kKvmTss));
    // Memslots before the irqchip: once an in-kernel irqchip exists, every memslot
    // change waits for an SRCU grace period (measured here: 5-10 ms per
    // KVM_SET_USER_MEMORY_REGION after KVM_CREATE_IRQCHIP, 0.1 ms before it).
    memory_ = KILN_TRY_CTX(GuestMemory::create(plan, cfg_.memory_backing, placement_.memory_node), "--memory");
    uint32_t slot = 0;
    for (const auto& r : memory_.regions())
        KILN_TRY(vm_->set_memory_region(slot++, r.base.value, r.size, r.mapping.data()));
    KILN_TRY(vm_->create_irqchip());
    KILN_TRY(vm_->create_pit2());

    // One description of the machine: the MP table, the ACPI tables, the device tree and
    // the command-line words are all generated from it, and the devices sit where it says.
    platform_ = firmware::Platform::standard(cfg_.cpus);
    for (size_t i = 0; i < images.size(); ++i) {
        const auto& spec = cfg_.disks[i];
        const host::CpuSet workers = disk_worker_cpus(spec, *images[i], placement_);
        virtio::VirtioBlk::Options opt{fmt::format("virtio-blk{}", i), spec.serial, spec.queues,
                                       workers.to_cpu_set()};
        opt.ring_watch = virtio::VirtioBlk::ring_watch_for(placement_.io_cpus.count(), cfg_.cpus);
        spdlog::debug("disk {}: queue workers on CPUs {} (I/O CPUs {}), ring watch {} us", i, workers.to_string(),
                      placement_.io_cpus.to_string(), opt.ring_watch.count());
        spdlog::info("disk {}: {}{}", i, images[i]->describe(), images[i]->read_only() ? ", read-only" : "");
        auto blk = KILN_TRY(virtio::VirtioBlk::create(std::move(images[i]), std::move(opt)));
        disks_.push_back(blk.get());
        const auto where = KILN_TRY(platform_.add_virtio_mmio(std::string(blk->name())));
        KILN_TRY(devices_.add_virtio_mmio(*vm_, memory_, where, std::move(blk), device_error_sink()));
    }
    KILN_TRY(add_nics(std::move(taps)));
    cmdline_ = cfg_.cmdline;
    if (const auto words = firmware::virtio_mmio_cmdline(platform_); !words.empty())
        cmdline_ += cmdline_.empty() ? words : " " + words;
    if (cmdline_.size() + 1 > layout::kCmdlineMax)
        return fail("the command line with the virtio_mmio.device= words is {} bytes, above the {} Kiln can pass",
                    cmdline_.size(), layout::kCmdlineMax - 1);
    std::vector<uint8_t> dtb;
    if (cfg_.dtb || !cfg_.dump_dtb_path.empty())
        dtb = KILN_TRY_CTX(firmware::fdt::build(platform_, memory_.memory_map(), cmdline_), "device tree");
    if (!cfg_.dump_dtb_path.empty()) KILN_TRY_CTX(firmware::fdt::dump(dtb, cfg_.dump_dtb_path), "--dump-dtb");
    if (!cfg_.dump_acpi_dir.empty())
        KILN_TRY_CTX(firmware::acpi::dump(KILN_TRY(firmware::acpi::build(platform_)), cfg_.dump_acpi_dir),
                     "--dump-acpi");

    firmware::BootRequest req{kernel, initrd, cmdline_, cfg_.cpus, &platform_, cfg_.acpi};
    if (cfg_.dtb) req.dtb = dtb;
    boot_ = KILN_TRY_CTX(firmware::load_kernel(memory_, req), "kernel '{}'", cfg_.kernel_path);
    spdlog::info("loaded {} kernel '{}' at {:#x}-{:#x}, {} MiB RAM, {} vCPU(s)",
                 firmware::to_string(boot_.format), cfg_.kernel_path, boot_.kernel_start, boot_.kernel_end,
                 cfg_.memory_bytes >> 20, cfg_.cpus);

    KILN_TRY(devices_.add_legacy_devices(*vm_, *console_, *exits_));
    if (cfg_.acpi && platform_.acpi_power) KILN_TRY(devices_.add_acpi_power(*vm_, *platform_.acpi_power, *exits_));

    auto supported = KILN_TRY(kvm_->supported_cpuid());
    VcpuContext ctx{devices_.pio(), devices_.mmio(), memory_, *exits_, stopping_};
    for (uint32_t id = 0; id < cfg_.cpus; ++id) {
        auto vcpu = KILN_TRY(vm_->create_vcpu(*kvm_, id));
        auto cpuid = fix_cpuid(supported, {id, cfg_.cpus, vcpu.tsc_khz()});
        KILN_TRY(setup_vcpu_common(vcpu, cpuid));
        if (id == 0) KILN_TRY(setup_boot_vcpu(vcpu, boot_.cpu));
        // KVM's counters for the statistics; a kernel without binary stats just has none.
        auto kvm_stats = KvmStats::open(vcpu.fd());
        if (!kvm_stats) spdlog::debug("vcpu{}: no KVM counters: {}", id, kvm_stats.error().message());
        vcpus_.push_back(std::make_unique<VcpuThread>(
            std::move(vcpu), ctx, placement_.vcpu_cpus[id],
            kvm_stats ? std::optional<KvmStats>(std::move(*kvm_stats)) : std::nullopt));
    }
    KILN_TRY(setup_input());
    return {};
}

Result<void> Machine::add_nics(std::vector<net::Tap> taps) {
    const std::string vm = cfg_.vm_name();
    for (size_t i = 0; i < taps.size(); ++i) {
        const auto& spec = cfg_.nets[i];
        const auto mac = spec.mac.value_or(net::MacAddress::for_vm(fmt::format("{}/net{}", vm, i)));
        virtio::VirtioNet::Options opt{fmt::format("virtio-net{}", i), mac, spec.mtu, placement_.io_cpus.to_cpu_set()};
        auto nic = KILN_TRY_CTX(virtio::VirtioNet::create(std::move(taps[i]), std::move(opt)), "--net {}", i);
        spdlog::info("net {}: TAP {}{}, MAC {}, {} queue pair(s)", i, nic->tap().name(),
                     nic->tap().created() ? " (created, removed at exit)" : "", mac.to_string(), nic->pairs());
        const auto where = KILN_TRY(platform_.add_virtio_mmio(std::string(nic->name())));
        nics_.push_back(nic.get());
        KILN_TRY(devices_.add_virtio_mmio(*vm_, memory_, where, std::move(nic), device_error_sink()));
    }
    return {};
}

Result<void> Machine::setup_input() {
    {
        int gfd = ::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        if (gfd < 0) return fail_errno("timerfd_create");
        grace_timer_ = Fd(gfd);
        KILN_TRY(loop_->add(grace_timer_.get(), EPOLLIN, [this](uint32_t) {
            std::chrono::milliseconds grace;
            {
                std::lock_guard lk(grace_mu_);
                grace = grace_;
            }
            stop({ExitReason::Stopped, 0,
                  fmt::format("stopped: the guest did not shut down within {:.1f} s", std::chrono::duration<double>(grace).count())});
        }));
    }
    if (cfg_.timeout_seconds) {
        int tfd = ::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        if (tfd < 0) return fail_errno("timerfd_create");
        timer_fd_ = Fd(tfd);
        KILN_TRY(loop_->add(timer_fd_.get(), EPOLLIN, [this](uint32_t) {
            stop({ExitReason::Timeout, 0, fmt::format("timed out after {} s", *cfg_.timeout_seconds)});
        }));
    }
    if (cfg_.forward_stdin) {
        // The terminal's bytes go to COM1 as they come; if the UART's buffer is full the
        // rest waits in the terminal (we read only what fits).
        KILN_TRY(loop_->add(STDIN_FILENO, EPOLLIN, [this](uint32_t ev) {
            uint8_t buf[256];
            size_t room = std::min(sizeof buf, devices_.serial()->input_space());
            if (room == 0) return;
            ssize_t n = ::read(STDIN_FILENO, buf, room);
            if (n > 0) {
                devices_.serial()->enqueue_input({buf, static_cast<size_t>(n)});
            } else if (n == 0 || (ev & (EPOLLHUP | EPOLLERR))) {
                loop_->remove(STDIN_FILENO); // end of input: the guest just gets no more
            }
        }));
    }
    return {};
}

Result<VmExit> Machine::run() {
    if (ran_.exchange(true)) return fail("a machine runs once");
    return run_once();
}

Result<void> Machine::start() {
    if (ran_.exchange(true)) return fail("a machine runs once");
    runner_ = std::thread([this] {
        ::pthread_setname_np(::pthread_self(), "kiln-io");
        // This thread serves the VM's I/O events: on the I/O CPUs, as the CLI's does.
        // Should that fail, the VM still goes through its whole life (ending at once), so
        // every waiter and subscriber hears how it ended.
        if (auto p = host::pin_thread(::pthread_self(), placement_.io_cpus); !p)
            stop({ExitReason::HostError, 0, p.error().message()});
        runner_result_ = run_once();
    });
    return {};
}

Result<VmExit> Machine::wait() {
    if (runner_.joinable()) runner_.join();
    if (!runner_result_) return fail("the machine was not started with start()");
    return *runner_result_;
}

Result<VmExit> Machine::run_once() {
    if (cfg_.timeout_seconds) {
        itimerspec its{};
        double secs = *cfg_.timeout_seconds;
        its.it_value.tv_sec = static_cast<time_t>(secs);
        its.it_value.tv_nsec = static_cast<long>((secs - std::floor(secs)) * 1e9);
        if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) its.it_value.tv_nsec = 1;
        if (::timerfd_settime(timer_fd_.get(), 0, &its, nullptr) < 0) return fail_errno("timerfd_settime");
    }
    started_ns_.store(std::chrono::steady_clock::now().time_since_epoch().count(), std::memory_order_release);
    std::unique_lock lifecycle(lifecycle_mu_); // pause() and shutdown() wait for "started"
    running_.store(true, std::memory_order_release);
    bool all_started = true;
    for (auto& v : vcpus_) {
        if (auto r = v->start(); !r) {
            stop({ExitReason::HostError, 0, r.error().message()});
            all_started = false;
            break;
        }
    }
    if (all_started) publish(MachineEvent::Kind::Started);
    lifecycle.unlock();
    if (auto r = loop_->run(); !r) stop({ExitReason::HostError, 0, r.error().message()});
    for (auto& v : vcpus_) v->join();
    running_.store(false, std::memory_order_release);
    if (auto w = write_stats_json(); !w) spdlog::error("{}", w.error().message());
    VmExit result = exits_->result().value_or(VmExit{ExitReason::HostError, 0, "the VM ended without a reason"});
    std::lock_guard ended(lifecycle_mu_);
    if (result.reason == ExitReason::HostError || result.reason == ExitReason::InternalError)
        publish(MachineEvent::Kind::Error, std::nullopt, result.detail);
    publish(MachineEvent::Kind::GuestExited, result);
    return result;
}

std::function<void(const std::string&)> Machine::device_error_sink() {
    // A device the guest broke (NEEDS_RESET) goes on running the VM: an error event, not
    // an exit, so a scheduler watching /events learns of it.
    return [this](const std::string& what) { publish(MachineEvent::Kind::Error, std::nullopt, what); };
}

double Machine::uptime_seconds() const {
    const int64_t started = started_ns_.load(std::memory_order_acquire);
    if (started == 0) return 0;
    const int64_t ended = ended_ns_.load(std::memory_order_acquire);
    const int64_t now = std::chrono::steady_clock::now().time_since_epoch().count();
    return static_cast<double>(ended ? ended : now - started) / 1e9;
}

void Machine::publish(MachineEvent::Kind kind, std::optional<VmExit> exit, std::string message) {
    MachineEvent e;
    e.kind = kind;
    e.unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
    e.uptime_seconds = uptime_seconds();
    e.exit = std::move(exit);
    e.message = std::move(message);
    events_.publish(e);
}

MachineState Machine::state() const {
    if (exits_ && exits_->ended()) return MachineState::Exited;
    if (!running_.load(std::memory_order_acquire)) return MachineState::Created;
    if (shutting_down_.load(std::memory_order_acquire)) return MachineState::Stopping;
    if (paused_.load(std::memory_order_acquire)) return MachineState::Paused;
    return MachineState::Running;
}

std::optional<VmExit> Machine::exit() const {
    if (!exits_ || !exits_->ended()) return std::nullopt;
    return exits_->result();
}

Result<void> Machine::shutdown(std::chrono::milliseconds grace) {
    std::lock_guard lifecycle(lifecycle_mu_); // "stopping" never after "guest-exited"
    if (!running_.load(std::memory_order_acquire) || exits_->ended()) return fail("the machine is not running");
    if (grace.count() < 0) return fail("a negative grace period");
    bool first = false;
    {
        std::lock_guard lk(grace_mu_);
        const auto deadline = std::chrono::steady_clock::now() + grace;
        first = !shutting_down_.exchange(true, std::memory_order_acq_rel);
        if (first || deadline < grace_deadline_) {
            grace_deadline_ = deadline;
            grace_ = grace;
            itimerspec its{};
            const auto ns = std::max<int64_t>(1, std::chrono::nanoseconds(grace).count());
            its.it_value.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
            its.it_value.tv_nsec = static_cast<long>(ns % 1'000'000'000);
            if (::timerfd_settime(grace_timer_.get(), 0, &its, nullptr) < 0) return fail_errno("timerfd_settime");
        }
    }
    if (!first) return {};
    // The guest's own shutdown path: the ACPI power button (a Linux guest powers off
    // through S5; the test guest too). Without ACPI there is none: the grace period
    // then only delays the hard stop, which the event says.
    const bool has_button = devices_.acpi_ged() != nullptr;
    publish(MachineEvent::Kind::Stopping, std::nullopt,
            fmt::format("{}; hard stop in {:.1f} s",
                        has_button ? "pressed the ACPI power button" : "no ACPI power button (--acpi off)",
                        std::chrono::duration<double>(grace).count()));
    // A parked guest cannot act on the request. Resuming fails only when the VM ended
    // meanwhile: the stop is then done anyway.
    if (paused_.load(std::memory_order_acquire))
        if (auto r = resume(); !r) spdlog::debug("shutdown: {}", r.error().message());
    if (has_button) {
        if (auto pressed = press_power_button(); !pressed)
            spdlog::debug("shutdown: {}", pressed.error().message()); // it ended meanwhile
    }
    return {};
}

MachineStats Machine::stats() const {
    MachineStats s;
    s.uptime_seconds = uptime_seconds();
    s.paging = paging_;
    // ksm_stat is missing on older kernels: then no KSM figure.
    s.memory = read_memory_stats(read_text_file("/proc/self/smaps_rollup").value_or(""),
                                 read_text_file("/proc/self/ksm_stat").value_or(""));
    s.memory.guest_bytes = cfg_.memory_bytes;
    s.memory.backing = cfg_.memory_backing.describe();
    for (const auto& v : vcpus_) s.vcpus.push_back(v->stats());
    for (const auto* d : disks_) {
        const auto& c = d->counters();
        constexpr auto r = std::memory_order_relaxed;
        s.disks.push_back({std::string(d->name()), d->image().describe(), c.read_requests.load(r),
                           c.read_bytes.load(r), c.write_requests.load(r), c.write_bytes.load(r),
                           c.flush_requests.load(r), c.discard_requests.load(r), c.errors.load(r),
                           d->options().worker_cpus ? host::CpuSet::from_cpu_set(*d->options().worker_cpus).to_string()
                                                    : std::string()});
    }
    for (const auto* n : nics_) {
        const auto& c = n->counters();
        constexpr auto r = std::memory_order_relaxed;
        s.nics.push_back({std::string(n->name()), n->tap().name(), n->mac().to_string(), c.rx_packets.load(r),
                          c.rx_bytes.load(r), c.rx_dropped.load(r), c.tx_packets.load(r), c.tx_bytes.load(r),
                          c.tx_errors.load(r)});
    }
    return s;
}

Result<void> Machine::write_stats_json() const {
    if (!stats_json_) return {};
    const std::string text = nlohmann::json(stats()).dump(2) + "\n";
    size_t off = 0;
    while (off < text.size()) {
        ssize_t n = ::write(stats_json_.get(), text.data() + off, text.size() - off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail_errno(fmt::format("--stats-json: writing '{}'", cfg_.stats_json_path));
        off += static_cast<size_t>(n);
    }
    return {};
}

void Machine::stop(VmExit why) { exits_->request_exit(std::move(why)); }

Result<void> Machine::pause() { return set_paused(true); }
Result<void> Machine::resume() { return set_paused(false); }

Result<void> Machine::set_paused(bool paused) {
    std::lock_guard lifecycle(lifecycle_mu_);
    {
        std::lock_guard lk(pause_mu_);
        if (!running_.load(std::memory_order_acquire) || stopping_.load(std::memory_order_acquire))
            return fail("the machine is not running");
        if (paused_.load(std::memory_order_acquire) == paused) return {};
        for (auto& v : vcpus_) {
            if (paused) v->pause();
            else v->resume();
        }
        paused_.store(paused, std::memory_order_release);
    }
    publish(paused ? MachineEvent::Kind::Paused : MachineEvent::Kind::Resumed);
    return {};
}

Result<void> Machine::press_power_button() {
    if (!running_.load(std::memory_order_acquire) || stopping_.load(std::memory_order_acquire))
        return fail("the machine is not running");
    if (devices_.acpi_ged() == nullptr) return fail("the guest has no ACPI power button (--acpi off)");
    devices_.acpi_ged()->press_power_button();
    return {};
}

std::vector<int> Machine::kvm_fds() const {
    std::vector<int> fds;
    if (vm_) fds.push_back(vm_->fd());
    for (const auto& v : vcpus_) fds.push_back(v->vcpu().fd());
    return fds;
}

void Machine::on_vm_end() {
    // Runs once, on whichever thread ended the VM first. A VM stopped before it started
    // ran for no time at all.
    const int64_t started = started_ns_.load(std::memory_order_acquire);
    const int64_t now = std::chrono::steady_clock::now().time_since_epoch().count();
    ended_ns_.store(std::max<int64_t>(1, started ? now - started : 1), std::memory_order_release);
    stopping_.store(true, std::memory_order_release);
    for (auto& v : vcpus_) v->kick();
    loop_->stop();
}

} // namespace kiln
