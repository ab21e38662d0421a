// The control API of a real `kiln run --api-sock` (docs/api/openapi.yaml; its contract
// is checked by tests/api/check_openapi.py): curl as the peer, `kiln ctl` and its exit
// statuses, two clients at once, and clients that misbehave while the guest works on.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <sys/socket.h>
#include <sys/un.h>
#include <thread>

#include <nlohmann/json.hpp>

#include "tests/support/background.hpp"
#include "tests/support/files.hpp"
#include "tests/support/process.hpp"
#include "vmm/api/http_client.hpp"

using namespace kiln;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

bool wait_for_socket(const std::string& path, test::Background& vm) {
    for (int i = 0; i < 1000 && vm.running(); ++i) {
        if (api::connect_unix(path)) return true;
        std::this_thread::sleep_for(10ms);
    }
    return false;
}

// `kiln run` of the test guest's `cmdline` serving its API on `sock`.
std::vector<std::string> vm_argv(const std::string& sock, const std::string& cmdline, const std::string& timeout,
                                 std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"run",     "--kernel", TESTGUEST_ELF, "--cmdline",  cmdline,  "--memory",
                                  "64M",     "--console", "none",       "--api-sock", sock,     "--timeout",
                                  timeout};
    args.insert(args.end(), extra.begin(), extra.end());
    return test::kiln_argv(args);
}

test::ProcessResult ctl(const std::string& sock, std::vector<std::string> args) {
    std::vector<std::string> argv{KILN_BIN, "ctl", "--api-sock", sock};
    argv.insert(argv.end(), args.begin(), args.end());
    test::ProcessOptions opt;
    opt.limit = std::chrono::seconds(60);
    return test::run_process(argv, opt);
}

json get_json(const std::string& sock, const char* target) {
    auto r = api::http_request(sock, "GET", target);
    REQUIRE(r);
    REQUIRE(r->status == 200);
    return json::parse(r->body);
}

// A raw client: connects and sends `bytes`, keeps the connection open.
int raw_client(const std::string& path, std::string_view bytes) {
    auto fd = api::connect_unix(path);
    REQUIRE(fd);
    if (!bytes.empty()) REQUIRE(::send(fd->get(), bytes.data(), bytes.size(), MSG_NOSIGNAL) == ssize_t(bytes.size()));
    return fd->release();
}

} // namespace

TEST_CASE("api: curl on the unix socket reads the VM, kiln ctl pauses, resumes and stops it with meaningful statuses") {
    test::ScratchDir dir;
    const std::string sock = dir / "vm.sock";
    test::Background vm(vm_argv(sock, "job=compute seconds=30", "120", {"--cpus", "2", "--name", "api-test"}));
    REQUIRE(wait_for_socket(sock, vm));

    // curl, the HTTP peer.
    auto curl = test::run_process({"curl", "-sS", "--fail", "--unix-socket", sock, "http://localhost/vm"});
    REQUIRE(curl.exit_code == 0);
    const json info = json::parse(curl.out);
    CHECK(info["state"] == "running");
    CHECK(info["name"] == "api-test");
    CHECK(info["pid"] == vm.pid());
    CHECK(info["config"]["cpus"] == 2);
    CHECK(info["config"]["cmdline"] == "job=compute seconds=30");
    auto metrics = test::run_process({"curl", "-sS", "--fail", "--unix-socket", sock, "http://localhost/metrics"});
    REQUIRE(metrics.exit_code == 0);
    CHECK(metrics.out.find("kiln_vm_state{vm=\"api-test\",state=\"running\"} 1\n") != std::string::npos);
    CHECK(metrics.out.find("kiln_vcpu_run_seconds_total{vm=\"api-test\",vcpu=\"1\"}") != std::string::npos);
    // curl -d sends a form content type; the body is JSON all the same.
    auto bad = test::run_process({"curl", "-sS", "--unix-socket", sock, "-X", "PUT", "-d", "{\"state\": \"sleepy\"}",
                                  "-w", "\n%{http_code}", "http://localhost/vm/state"});
    CHECK(bad.out.ends_with("\n400"));
    CHECK(bad.out.find("unknown state 'sleepy'") != std::string::npos);

    // kiln ctl: pause parks the vCPUs (their run time stops growing), resume restarts them.
    auto paused = ctl(sock, {"pause"});
    CHECK(paused.exit_code == 0);
    CHECK(json::parse(paused.out)["state"] == "paused");
    const json s1 = get_json(sock, "/vm/stats");
    std::this_thread::sleep_for(1s);
    const json s2 = get_json(sock, "/vm/stats");
    for (size_t i = 0; i < 2; ++i)
        CHECK(s2["vcpus"][i]["run_ns"].get<uint64_t>() - s1["vcpus"][i]["run_ns"].get<uint64_t>() < 50'000'000u);
    CHECK(ctl(sock, {"status"}).exit_code == 0);
    auto resumed = ctl(sock, {"resume"});
    CHECK(resumed.exit_code == 0);
    CHECK(json::parse(resumed.out)["state"] == "running");
    std::this_thread::sleep_for(1s);
    const json s3 = get_json(sock, "/vm/stats");
    CHECK(s3["vcpus"][0]["run_ns"].get<uint64_t>() > s2["vcpus"][0]["run_ns"].get<uint64_t>() + 50'000'000u);

    // Bad usage and bad requests: one line, their own statuses, the VM untouched.
    auto bad_action = ctl(sock, {"explode"});
    CHECK(bad_action.exit_code == 125);
    CHECK(bad_action.err.find("unknown action 'explode'") != std::string::npos);
    CHECK(ctl(sock, {"pause", "--grace", "3"}).exit_code == 125);
    auto nobody = ctl(dir / "none.sock", {"status"});
    CHECK(nobody.exit_code == 2);
    CHECK(nobody.err.find("no control socket") != std::string::npos);

    // A graceful stop of a guest with no shutdown path: the hard stop after the grace.
    const auto t0 = std::chrono::steady_clock::now();
    auto stop = ctl(sock, {"stop", "--grace", "1"});
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK(stop.exit_code == 0);
    CHECK(took >= 0.9);
    CHECK(took < 10);
    CHECK(vm.wait(30s) == 120);
    CHECK(vm.err().find("stopped: the guest did not shut down within 1.0 s") != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(sock));
    // Nothing serves there any more.
    auto after = ctl(sock, {"pause"});
    CHECK(after.exit_code == 2);
}

TEST_CASE("api: two event streams and a poller at once, a garbage client and a silent one: the guest finishes unharmed") {
    test::ScratchDir dir;
    const std::string sock = dir / "vm.sock";
    test::Background vm(vm_argv(sock, "job=compute seconds=3", "120"));
    REQUIRE(wait_for_socket(sock, vm));

    // Misbehaving clients: half a request that never ends, garbage, and one that
    // connects and says nothing. None of them may hold anything up.
    const int half = raw_client(sock, "GET /vm HTTP/1.1\r\nHost: x\r\n");
    const int garbage = raw_client(sock, std::string(20000, 'x'));
    const int silent = raw_client(sock, "");

    std::vector<std::string> stream_a, stream_b;
    auto follow = [&](std::vector<std::string>& lines) {
        return std::thread([&sock, &lines] {
            auto r = api::http_stream_lines(sock, "/events", [&](std::string_view l) {
                lines.emplace_back(l);
                return true;
            });
            CHECK(r);
        });
    };
    std::thread a = follow(stream_a), b = follow(stream_b);
    // A poller hammering GET /vm and /metrics meanwhile.
    std::atomic<int> polls{0};
    std::thread poller([&] {
        while (true) {
            auto r = api::http_request(sock, "GET", polls % 2 ? "/metrics" : "/vm");
            if (!r) break; // the VM has ended and the socket is gone
            CHECK(r->status == 200);
            ++polls;
        }
    });
    CHECK(vm.wait(60s) == 0); // the guest's own status: compute finished
    a.join();
    b.join();
    poller.join();
    ::close(half);
    ::close(garbage);
    ::close(silent);
    CHECK(polls > 20);
    for (auto* lines : {&stream_a, &stream_b}) {
        REQUIRE_FALSE(lines->empty());
        const json last = json::parse(lines->back());
        CHECK(last["event"] == "guest-exited");
        CHECK(last["reason"] == "guest-status");
        CHECK(last["exit_status"] == 0);
    }
}

TEST_CASE("api: kiln ctl wait exits with the VM's status, kill ends it at once, a live socket path is refused") {
    test::ScratchDir dir;
    const std::string sock = dir / "vm.sock";
    test::Background vm(vm_argv(sock, "job=compute seconds=60", "4"));
    REQUIRE(wait_for_socket(sock, vm));
    // A second VM on the same socket path is refused: one line, nothing disturbed.
    auto second = test::run_kiln({"run", "--kernel", TESTGUEST_ELF, "--cmdline", "job=exit status=0", "--memory", "64M",
                                  "--console", "none", "--api-sock", sock});
    CHECK(second.exit_code == 125);
    CHECK(second.err.find("another process is serving on it") != std::string::npos);
    // --timeout 4 ends it: ctl wait returns kiln's own status for that, 124.
    auto waited = ctl(sock, {"wait"});
    CHECK(waited.exit_code == 124);
    CHECK(vm.wait(30s) == 124);

    const std::string sock2 = dir / "vm2.sock";
    test::Background vm2(vm_argv(sock2, "job=compute seconds=60", "120"));
    REQUIRE(wait_for_socket(sock2, vm2));
    const auto t0 = std::chrono::steady_clock::now();
    auto killed = ctl(sock2, {"kill"});
    CHECK(killed.exit_code == 0);
    CHECK(vm2.wait(30s) == 120);
    CHECK(std::chrono::steady_clock::now() - t0 < 5s);
    CHECK(vm2.err().find("killed through the control API") != std::string::npos);
}

TEST_CASE("api: stop presses the ACPI power button - a guest that honours it powers off at once, one that ignores it is stopped after the grace") {
    test::ScratchDir dir;
    const std::string sock = dir / "vm.sock";
    test::Background vm(vm_argv(sock, "job=idle", "120"));
    REQUIRE(wait_for_socket(sock, vm));
    std::vector<std::string> events;
    std::atomic<bool> open{false};
    std::thread reader([&] {
        auto r = api::http_stream_lines(
            sock, "/events",
            [&](std::string_view l) {
                events.emplace_back(l);
                return true;
            },
            [&](int status) { open = status == 200; });
        CHECK(r);
    });
    for (int i = 0; i < 1000 && !open; ++i) std::this_thread::sleep_for(5ms);
    REQUIRE(open);
    const auto t0 = std::chrono::steady_clock::now();
    auto stop = ctl(sock, {"stop", "--grace", "30"});
    CHECK(stop.exit_code == 0);
    CHECK(std::chrono::steady_clock::now() - t0 < 10s); // the guest's own power-off, not the grace
    CHECK(vm.wait(30s) == 120);
    CHECK(vm.err().find("the guest powered off (ACPI S5)") != std::string::npos);
    reader.join();
    REQUIRE(events.size() == 2);
    CHECK(json::parse(events[0])["event"] == "stopping");
    CHECK(json::parse(events[0])["message"].get<std::string>().find("pressed the ACPI power button") == 0);
    CHECK(json::parse(events[1])["reason"] == "poweroff");

    const std::string sock2 = dir / "vm2.sock";
    test::Background stubborn(vm_argv(sock2, "job=idle powerbutton=ignore", "120"));
    REQUIRE(wait_for_socket(sock2, stubborn));
    const auto t1 = std::chrono::steady_clock::now();
    CHECK(ctl(sock2, {"stop", "--grace", "2", "--no-wait"}).exit_code == 0);
    // Being stopped, it refuses a pause: status 1 and the reason.
    auto refused = ctl(sock2, {"pause"});
    CHECK(refused.exit_code == 1);
    CHECK(refused.err.find("cannot pause: the VM is stopping (HTTP 409)") != std::string::npos);
    CHECK(ctl(sock2, {"wait"}).exit_code == 120);
    CHECK(std::chrono::steady_clock::now() - t1 >= 1900ms);
    CHECK(stubborn.wait(30s) == 120);
    CHECK(stubborn.err().find("stopped: the guest did not shut down within 2.0 s") != std::string::npos);
}
