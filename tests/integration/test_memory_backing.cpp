// --memory SIZE,hugepages=on|thp=on|off|merge=on on the real host: what backs the guest's
// RAM is read back from the run's own statistics (--stats-json: smaps_rollup and
// ksm_stat of the kiln process while the guest's memory is still mapped) and from the
// host's counters (HugePages_Free, /sys/kernel/mm/ksm).
//
// These tests change host-wide settings (the huge page pool, KSM's run state); each
// one restores what it found, and no other test touches them.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <sys/mount.h>

#include "tests/support/files.hpp"
#include "tests/support/process.hpp"

using namespace kiln::test;
namespace fs = std::filesystem;

namespace {

constexpr uint64_t kMiB = 1 << 20;

uint64_t read_number(const std::string& path) {
    std::ifstream in(path);
    uint64_t v = 0;
    in >> v;
    return v;
}

void write_number(const std::string& path, uint64_t v) {
    std::ofstream out(path);
    out << v << "\n";
    out.flush();
    REQUIRE_MESSAGE(out.good(), "cannot write " << path << " (root needed)");
}

// Restores a sysfs/procfs number on scope exit.
class SavedSetting {
public:
    explicit SavedSetting(std::string path) : path_(std::move(path)), value_(read_number(path_)) {}
    ~SavedSetting() {
        std::ofstream out(path_);
        out << value_ << "\n";
    }
    SavedSetting(const SavedSetting&) = delete;
    SavedSetting& operator=(const SavedSetting&) = delete;
    [[nodiscard]] uint64_t value() const { return value_; }

private:
    std::string path_;
    uint64_t value_;
};

const std::string kNrHuge = "/proc/sys/vm/nr_hugepages";
const std::string kFreeHuge = "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages";

// Runs job=memfill in a VM with `memory` (SIZE,OPTIONS) and returns its --stats-json.
nlohmann::json memfill(const ScratchDir& dir, const std::string& name, const std::string& memory, int mib,
                       int seconds = 0) {
    const std::string stats = dir / (name + ".json");
    auto r = run_kiln({"run", "--kernel", TESTGUEST_ELF, "--memory", memory, "--stats-json", stats, "--cmdline",
                       fmt::format("job=memfill mib={} seconds={}", mib, seconds)});
    INFO("stdout: " << r.out);
    INFO("stderr: " << r.err);
    REQUIRE(r.exit_code == 0);
    REQUIRE(r.out.find(fmt::format("memfill: filled {} MiB", mib)) != std::string::npos);
    return nlohmann::json::parse(read_text(stats));
}

} // namespace

TEST_CASE("memory: hugepages=on backs the guest with reserved 2 MiB pages, and too few is one clear line") {
    ScratchDir dir;
    SavedSetting nr(kNrHuge);

    // Too few: the pool as it is (often empty) cannot hold a guest one page larger than
    // what is free. One line, naming the sysctl; status 125; the VM never starts.
    const uint64_t free_pages = read_number(kFreeHuge);
    const uint64_t too_big_mib = (free_pages + 8) * 2;
    auto r = run_kiln({"run", "--kernel", TESTGUEST_ELF, "--memory", fmt::format("{}M,hugepages=on", too_big_mib),
                       "--cmdline", "job=exit"});
    INFO("stderr: " << r.err);
    CHECK(r.exit_code == 125);
    CHECK(r.err.find("sysctl vm.nr_hugepages=") != std::string::npos);
    CHECK(r.err.find("huge pages of 2 MiB") != std::string::npos);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    CHECK(r.out.empty());

    // Enough: 128 MiB of guest (65 pages with the legacy area) out of 80 more reserved.
    write_number(kNrHuge, nr.value() + 80);
    REQUIRE(read_number(kNrHuge) >= nr.value() + 70); // the host may give fewer; 65 are needed
    auto stats = memfill(dir, "hugetlb", "128M,hugepages=on", 64);
    CAPTURE(stats.dump());
    CHECK(stats["memory"]["backing"] == "hugetlb 2M pages");
    CHECK(stats["memory"]["hugetlb_bytes"].get<uint64_t>() >= 64 * kMiB);
    CHECK(stats["memory"]["anon_huge_bytes"].get<uint64_t>() == 0);
    // Every page went back to the pool when the VM ended.
    CHECK(read_number(kFreeHuge) >= free_pages + 70);

    // From a hugetlbfs mount: the file is unlinked at once, nothing is left behind.
    const std::string mnt = dir / "hugetlbfs";
    fs::create_directory(mnt);
    REQUIRE(::mount("none", mnt.c_str(), "hugetlbfs", 0, "pagesize=2M") == 0);
    auto fromfs = memfill(dir, "hugetlbfs", "128M,hugepages=on,hugetlbfs=" + mnt, 64);
    CHECK(fromfs["memory"]["backing"] == "hugetlbfs " + mnt);
    CHECK(fromfs["memory"]["hugetlb_bytes"].get<uint64_t>() >= 64 * kMiB);
    CHECK(fs::is_empty(mnt));
    ::umount(mnt.c_str());

    // A directory that is not hugetlbfs: one line that says so.
    auto notfs = run_kiln({"run", "--kernel", TESTGUEST_ELF, "--memory", "128M,hugepages=on,hugetlbfs=" + dir.path.string(),
                           "--cmdline", "job=exit"});
    CHECK(notfs.exit_code == 125);
    CHECK(notfs.err.find("is not a hugetlbfs mount") != std::string::npos);
}

TEST_CASE("memory: thp=on (the default) gives the guest transparent huge pages, thp=off none") {
    ScratchDir dir;
    const std::string mode = read_text("/sys/kernel/mm/transparent_hugepage/enabled");
    if (mode.find("[never]") != std::string::npos) {
        MESSAGE("THP is 'never' on this host: nothing to measure");
        return;
    }
    auto on = memfill(dir, "thp-on", "256M", 128);
    CAPTURE(on.dump());
    CHECK(on["memory"]["backing"] == "THP");
    // At least half as huge pages: the host may be short of free 2 MiB blocks.
    CHECK(on["memory"]["anon_huge_bytes"].get<uint64_t>() >= 64 * kMiB);

    auto off = memfill(dir, "thp-off", "256M,thp=off", 128);
    CAPTURE(off.dump());
    CHECK(off["memory"]["backing"] == "4K pages");
    CHECK(off["memory"]["anon_huge_bytes"].get<uint64_t>() == 0);
    CHECK(off["memory"]["rss_bytes"].get<uint64_t>() >= 128 * kMiB);
}

TEST_CASE("memory: merge=on lets KSM merge two VMs' identical pages, merge off leaves them alone") {
    ScratchDir dir;
    const std::string ksm = "/sys/kernel/mm/ksm/";
    if (!fs::exists(ksm + "run")) {
        MESSAGE("no KSM in this kernel");
        return;
    }
    SavedSetting run(ksm + "run"), scan(ksm + "pages_to_scan"), sleep_ms(ksm + "sleep_millisecs");
    write_number(ksm + "pages_to_scan", 20000);
    write_number(ksm + "sleep_millisecs", 10);
    write_number(ksm + "run", 1);

    // Two VMs fill 32 MiB each with the same pattern and hold it for 6 s; a third with
    // merge off does the same beside them.
    constexpr int kMib = 32;
    constexpr uint64_t kPages = kMib * kMiB / 4096;
    nlohmann::json a, b, c;
    uint64_t sharing_peak = 0;
    {
        std::jthread ta([&] { a = memfill(dir, "a", "128M,merge=on", kMib, 6); });
        std::jthread tb([&] { b = memfill(dir, "b", "128M,merge=on", kMib, 6); });
        std::jthread tc([&] { c = memfill(dir, "c", "128M", kMib, 6); });
        for (int i = 0; i < 50; ++i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
            sharing_peak = std::max(sharing_peak, read_number(ksm + "pages_sharing"));
        }
    }
    CAPTURE(a.dump());
    CAPTURE(c.dump());
    CHECK(a["memory"]["backing"] == "4K pages, KSM merge");
    // By the end KSM merged (nearly) every filled page of each merge=on VM ...
    CHECK(a["memory"]["ksm_merging_pages"].get<uint64_t>() >= kPages * 8 / 10);
    CHECK(b["memory"]["ksm_merging_pages"].get<uint64_t>() >= kPages * 8 / 10);
    // ... into shared pages the host counts too (not as a difference from before: the
    // counter may still hold pages of VMs gone since KSM last ran); the merge-off VM's
    // pages were left alone.
    CHECK(sharing_peak >= 2 * kPages * 8 / 10);
    CHECK(c["memory"]["ksm_merging_pages"].get<uint64_t>() == 0);
}

TEST_CASE("memory: job=memwalk walks, and memfill hold= sleeps halted without using a host CPU") {
    ScratchDir dir;
    auto walk = run_kiln({"run", "--kernel", TESTGUEST_ELF, "--memory", "128M", "--cmdline", "job=memwalk mib=64 seconds=1"});
    INFO("stdout: " << walk.out);
    CHECK(walk.exit_code == 0);
    CHECK(walk.out.find("memwalk: steps=") != std::string::npos);
    auto toobig = run_kiln({"run", "--kernel", TESTGUEST_ELF, "--memory", "128M", "--cmdline", "job=memwalk mib=512"});
    CHECK(toobig.exit_code == 2);
    CHECK(toobig.out.find("memwalk: no free span of 512 MiB") != std::string::npos);

    // 3 s held: the vCPU thread ran for a small part of it (the statistics say so).
    auto held = memfill(dir, "hold", "128M", 8, 0);
    (void)held;
    const std::string stats = dir / "held.json";
    auto r = run_kiln({"run", "--kernel", TESTGUEST_ELF, "--memory", "128M", "--stats-json", stats, "--cmdline",
                       "job=memfill mib=8 hold=3"});
    REQUIRE(r.exit_code == 0);
    auto j = nlohmann::json::parse(read_text(stats));
    CAPTURE(j.dump());
    CHECK(j["uptime_seconds"].get<double>() >= 3.0);
    CHECK(j["vcpus"][0]["run_ns"].get<uint64_t>() < 1'000'000'000ull);
    CHECK(j["vcpus"][0]["kvm"]["halt_exits"].get<uint64_t>() + j["vcpus"][0]["kvm"]["halt_wakeup"].get<uint64_t>() > 0);
}
