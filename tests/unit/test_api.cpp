// The control API without KVM: HTTP parsing and writing, the handlers and the server
// against a fake VM (vmm/api/vm_control.hpp), the Prometheus text.
#include <doctest/doctest.h>

#include <atomic>
#include <cstring>
#include <sstream>
#include <filesystem>
#include <regex>
#include <set>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <thread>

#include <nlohmann/json.hpp>

#include "tests/support/files.hpp"
#include "vmm/api/api_server.hpp"
#include "vmm/api/http.hpp"
#include "vmm/api/http_client.hpp"
#include "vmm/api/metrics.hpp"
#include "vmm/api/vm_api.hpp"

using namespace kiln;
using namespace kiln::api;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// A VM as the API sees it, recording what it was asked.
class FakeVm final : public VmControl {
public:
    FakeVm() { cfg.name = "fake"; cfg.kernel_path = "/k"; cfg.cpus = 2; }
    MachineState state() const override { return st; }
    std::optional<VmExit> exit() const override { return ended; }
    MachineStats stats() const override {
        MachineStats s;
        s.uptime_seconds = 1.5;
        s.vcpus.push_back({0, 100, "0-1", {2'000'000'000, 500'000'000, 7}, {{"exits", 42}}});
        s.disks.push_back({"virtio-blk0", "raw 'a\"b'", 1, 4096, 2, 8192, 1, 0, 0, "1"});
        return s;
    }
    double uptime_seconds() const override { return 1.5; }
    const MachineConfig& config() const override { return cfg; }
    Result<void> pause() override { calls.push_back("pause"); st = MachineState::Paused; return {}; }
    Result<void> resume() override { calls.push_back("resume"); st = MachineState::Running; return {}; }
    Result<void> shutdown(std::chrono::milliseconds g) override {
        calls.push_back(fmt::format("shutdown {}", g.count()));
        st = MachineState::Stopping;
        return {};
    }
    void kill() override { calls.push_back("kill"); }
    Subscription subscribe(EventHub::Callback cb) override { return {&hub, hub.subscribe(std::move(cb))}; }

    void end(int status) {
        ended = VmExit{ExitReason::GuestStatus, status, "done"};
        st = MachineState::Exited;
        MachineEvent e;
        e.kind = MachineEvent::Kind::GuestExited;
        e.exit = ended;
        hub.publish(e);
    }

    MachineConfig cfg;
    std::atomic<MachineState> st{MachineState::Running};
    std::optional<VmExit> ended;
    std::vector<std::string> calls;
    EventHub hub;
};

HttpRequest req(std::string method, std::string path, std::string body = {}) {
    HttpRequest r;
    r.method = std::move(method);
    r.path = r.target = std::move(path);
    r.body = std::move(body);
    return r;
}

} // namespace

TEST_CASE("api http: a request with a body, pipelined after another, and one still arriving") {
    const std::string two = "GET /vm HTTP/1.1\r\nHost: x\r\n\r\n"
                            "PUT /vm/state?x=1 HTTP/1.1\r\nContent-Length: 18\r\nX-A:  b \r\n\r\n{\"state\":\"paused\"}";
    auto a = parse_request(two);
    REQUIRE(a.kind == ParseResult::Kind::Done);
    CHECK(a.request.method == "GET");
    CHECK(a.request.path == "/vm");
    CHECK(a.request.keep_alive);
    auto b = parse_request(std::string_view(two).substr(a.consumed));
    REQUIRE(b.kind == ParseResult::Kind::Done);
    CHECK(b.request.path == "/vm/state");
    CHECK(b.request.query == "x=1");
    CHECK(b.request.header("x-a") == "b");
    CHECK(b.request.body == "{\"state\":\"paused\"}");
    CHECK(a.consumed + b.consumed == two.size());
    CHECK(parse_request(two.substr(0, two.size() - 1).substr(a.consumed)).kind == ParseResult::Kind::NeedMore);
    CHECK(parse_request("GET /vm HTTP/1.1\r\nHost: x\r\n").kind == ParseResult::Kind::NeedMore);
    auto close = parse_request("GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
    CHECK_FALSE(close.request.keep_alive);
    CHECK_FALSE(parse_request("GET / HTTP/1.0\r\n\r\n").request.keep_alive);
}

TEST_CASE("api http: malformed requests get the right 4xx or 5xx") {
    auto status = [](std::string_view text) {
        auto r = parse_request(text);
        return r.kind == ParseResult::Kind::Bad ? r.status : 0;
    };
    CHECK(status("GARBAGE\r\n\r\n") == 400);
    CHECK(status("GET  /vm HTTP/1.1\r\n\r\n") == 400);
    CHECK(status("GET vm HTTP/1.1\r\n\r\n") == 400);
    CHECK(status("GET /vm HTTP/2.0\r\n\r\n") == 505);
    CHECK(status("GET /vm FTP/1.1\r\n\r\n") == 400);
    CHECK(status("GET /vm HTTP/1.1\r\nNo colon here\r\n\r\n") == 400);
    CHECK(status("PUT /vm HTTP/1.1\r\nContent-Length: x\r\n\r\n") == 400);
    CHECK(status("PUT /vm HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n") == 400);
    CHECK(status("PUT /vm HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n") == 413);
    CHECK(status("PUT /vm HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n") == 501);
    CHECK(status("GET /" + std::string(kMaxHeaderBytes, 'a')) == 431);
}

TEST_CASE("api http: responses, chunks and the client's parsing of them round-trip") {
    HttpResponse r = error_response(409, "cannot pause: the VM is exited");
    const std::string text = serialize(r, true);
    auto [head, err] = parse_response_head(text);
    REQUIRE(head);
    CHECK(err.empty());
    CHECK(head->status == 409);
    CHECK(head->content_length == r.body.size());
    CHECK(json::parse(text.substr(head->head_bytes))["error"] == "cannot pause: the VM is exited");
    std::string stream = chunk("{\"a\":1}\n") + chunk("x") + chunk("");
    std::string out;
    bool done = false, bad = false;
    CHECK(decode_chunks(stream, out, done, bad) == stream.size());
    CHECK(done);
    CHECK_FALSE(bad);
    CHECK(out == "{\"a\":1}\nx");
    out.clear();
    done = false;
    CHECK(decode_chunks("zz\r\nab\r\n", out, done, bad) == 0);
    CHECK(bad);
}

TEST_CASE("api handlers: state changes reach the VM only when valid, and conflicts are 409") {
    FakeVm vm;
    auto put = [&](std::string body) { return handle_request(vm, req("PUT", "/vm/state", std::move(body))); };
    CHECK(put("{\"state\":\"paused\"}").status == 200);
    CHECK(put("{\"state\":\"running\"}").status == 200);
    CHECK(put("{\"state\":\"stopped\",\"grace_seconds\":2.5}").status == 202);
    CHECK(vm.calls == std::vector<std::string>{"pause", "resume", "shutdown 2500"});
    vm.calls.clear();
    for (const char* bad : {"", "[]", "{", "{\"state\":1}", "{\"state\":\"dead\"}", "{\"state\":\"paused\",\"grace_seconds\":1}",
                            "{\"state\":\"stopped\",\"grace_seconds\":\"1\"}", "{\"state\":\"stopped\",\"grace_seconds\":1e9}",
                            "{\"state\":\"paused\",\"extra\":true}"}) {
        CAPTURE(bad);
        auto r = put(bad);
        CHECK(r.status == 400);
        CHECK(json::parse(r.body).contains("error"));
    }
    CHECK(vm.calls.empty());
    vm.st = MachineState::Exited;
    CHECK(put("{\"state\":\"paused\"}").status == 409);
    CHECK(put("{\"state\":\"stopped\"}").status == 409);
    CHECK(put("{\"state\":\"killed\"}").status == 409);
    vm.st = MachineState::Running;
    CHECK(put("{\"state\":\"killed\"}").status == 202);
    CHECK(vm.calls == std::vector<std::string>{"kill"});
    CHECK(handle_request(vm, req("DELETE", "/vm")).status == 405);
    CHECK(handle_request(vm, req("GET", "/vmx")).status == 404);
    const json info = json::parse(handle_request(vm, req("GET", "/vm")).body);
    CHECK(info["state"] == "running");
    CHECK(info["config"]["cpus"] == 2);
    CHECK_FALSE(info.contains("exit"));
    vm.ended = VmExit{ExitReason::GuestStatus, 3, "the guest reported exit status 3"};
    CHECK(json::parse(handle_request(vm, req("GET", "/vm")).body)["exit"]["exit_status"] == 3);
    const json stats = json::parse(handle_request(vm, req("GET", "/vm/stats")).body);
    CHECK(stats["disks"][0]["worker_cpus"] == "1");
}

TEST_CASE("api metrics: every family has HELP and TYPE first, every sample line is well-formed, labels escaped") {
    FakeVm vm;
    const std::string text = to_prometheus(vm.stats(), MachineState::Paused, "fake\"vm");
    const std::regex sample(R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? [-+0-9.eE]+(inf|nan)?$)");
    std::set<std::string> typed;
    std::istringstream in(text);
    std::string line;
    int samples = 0;
    while (std::getline(in, line)) {
        CAPTURE(line);
        if (line.starts_with("# TYPE ")) {
            typed.insert(line.substr(7, line.find(' ', 7) - 7));
            continue;
        }
        if (line.starts_with("# HELP ")) continue;
        std::smatch m;
        REQUIRE(std::regex_match(line, m, sample));
        CHECK(typed.count(m[1].str()) == 1);
        ++samples;
    }
    CHECK(samples > 10);
    CHECK(text.find("kiln_vm_state{vm=\"fake\\\"vm\",state=\"paused\"} 1\n") != std::string::npos);
    CHECK(text.find("kiln_vcpu_run_seconds_total{vm=\"fake\\\"vm\",vcpu=\"0\"} 2\n") != std::string::npos);
    CHECK(text.find("kiln_kvm_vcpu_exits{vm=\"fake\\\"vm\",vcpu=\"0\"} 42\n") != std::string::npos);
    CHECK(text.find("kiln_disk_write_bytes_total{vm=\"fake\\\"vm\",disk=\"virtio-blk0\"} 8192\n") != std::string::npos);
    CHECK(escape_label("a\\b\nc\"") == "a\\\\b\\nc\\\"");
}

TEST_CASE("api server: serves the fake VM, streams its events to two readers and ends them with guest-exited") {
    test::ScratchDir dir;
    FakeVm vm;
    const std::string sock = dir / "api.sock";
    auto server = ApiServer::create(vm, sock);
    REQUIRE(server);
    struct stat st{};
    REQUIRE(::stat(sock.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);

    auto r = http_request(sock, "GET", "/vm");
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(json::parse(r->body)["name"] == "fake");
    auto p = http_request(sock, "PUT", "/vm/state", "{\"state\":\"paused\"}");
    REQUIRE(p);
    CHECK(p->status == 200);
    CHECK(vm.calls == std::vector<std::string>{"pause"});

    std::vector<std::string> a, b;
    auto reader = [&](std::vector<std::string>& lines) {
        return std::thread([&] {
            auto s = http_stream_lines(sock, "/events", [&](std::string_view l) {
                lines.emplace_back(l);
                return true;
            });
            CHECK(s);
            CHECK(*s == 200);
        });
    };
    std::thread ta = reader(a), tb = reader(b);
    while ((*server)->streams() < 2) std::this_thread::sleep_for(5ms); // both streams open
    MachineEvent paused;
    paused.kind = MachineEvent::Kind::Paused;
    vm.hub.publish(paused);
    vm.end(5);
    ta.join();
    tb.join();
    for (auto* lines : {&a, &b}) {
        REQUIRE(lines->size() == 2);
        CHECK(json::parse((*lines)[0])["event"] == "paused");
        CHECK(json::parse((*lines)[1])["exit_status"] == 5);
    }
    // A stream opened after the end gets the end at once.
    std::vector<std::string> late;
    auto s = http_stream_lines(sock, "/events", [&](std::string_view l) {
        late.emplace_back(l);
        return true;
    });
    REQUIRE(s);
    REQUIRE(late.size() == 1);
    CHECK(json::parse(late[0])["event"] == "guest-exited");
    server->reset();
    CHECK_FALSE(std::filesystem::exists(sock));
}

namespace {

// CPU time (user + system, in ticks) the named thread of this process has used.
uint64_t thread_cpu_ticks(const std::string& name) {
    for (const auto& t : std::filesystem::directory_iterator("/proc/self/task")) {
        if (test::read_text(t.path() / "comm") != name + "\n") continue;
        const std::string stat = test::read_text(t.path() / "stat");
        std::istringstream in(stat.substr(stat.rfind(')') + 2));
        std::string field;
        uint64_t utime = 0, stime = 0;
        for (int i = 3; i <= 15 && in >> field; ++i) {
            if (i == 14) utime = std::stoull(field);
            if (i == 15) stime = std::stoull(field);
        }
        return utime + stime;
    }
    FAIL("no thread named " << name);
    return 0;
}

std::string read_all(int fd) {
    std::string got;
    char buf[65536];
    for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) got.append(buf, size_t(n));
    return got;
}

size_t count(const std::string& s, std::string_view what) {
    size_t n = 0;
    for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
    return n;
}

} // namespace

TEST_CASE("api server: a client that pipelines without reading is held back and cut off, a half-closed one costs no CPU") {
    test::ScratchDir dir;
    FakeVm vm;
    const std::string sock = dir / "api.sock";
    ApiServerLimits limits;
    limits.write_timeout = 500ms;
    auto server = ApiServer::create(vm, sock, limits);
    REQUIRE(server);

    // 3000 pipelined requests, nothing read: the server answers only as fast as the
    // client reads (not at all), so it buffers at most one answer, and drops the client
    // once its answers have waited longer than the write timeout.
    auto greedy = connect_unix(sock);
    REQUIRE(greedy);
    std::string many;
    for (int i = 0; i < 3000; ++i) many += "GET /vm/stats HTTP/1.1\r\n\r\n";
    std::thread sender([&] { [[maybe_unused]] auto n = ::send(greedy->get(), many.data(), many.size(), MSG_NOSIGNAL); });
    // Meanwhile another client is served at once.
    auto other = http_request(sock, "GET", "/vm", {}, 2s);
    REQUIRE(other);
    CHECK(other->status == 200);
    std::this_thread::sleep_for(1500ms);
    ::shutdown(greedy->get(), SHUT_WR); // lets the sender go if it is still blocked
    sender.join();
    const std::string got = read_all(greedy->get()); // ends: the server closed it
    CHECK(count(got, "HTTP/1.1 200") < 3000);

    // Pipelined requests, then half-closed, and nothing read: the server must not spin.
    auto half = connect_unix(sock);
    REQUIRE(half);
    std::string some;
    for (int i = 0; i < 200; ++i) some += "GET /metrics HTTP/1.1\r\n\r\n";
    REQUIRE(::send(half->get(), some.data(), some.size(), MSG_NOSIGNAL) == ssize_t(some.size()));
    ::shutdown(half->get(), SHUT_WR);
    std::this_thread::sleep_for(100ms);
    const uint64_t before = thread_cpu_ticks("kiln-api");
    std::this_thread::sleep_for(1s);
    CHECK(thread_cpu_ticks("kiln-api") - before < 20); // < 0.2 s of a second (USER_HZ 100)
}

TEST_CASE("api server: a request sent just before the client closes is still carried out, HEAD gets no body, streams are capped") {
    test::ScratchDir dir;
    FakeVm vm;
    const std::string sock = dir / "api.sock";
    ApiServerLimits limits;
    limits.max_streams = 1;
    auto server = ApiServer::create(vm, sock, limits);
    REQUIRE(server);
    {
        auto fd = connect_unix(sock);
        REQUIRE(fd);
        const std::string put = "PUT /vm/state HTTP/1.1\r\nContent-Length: 18\r\n\r\n{\"state\":\"paused\"}";
        REQUIRE(::send(fd->get(), put.data(), put.size(), MSG_NOSIGNAL) == ssize_t(put.size()));
    } // closed at once
    for (int i = 0; i < 200 && vm.calls.empty(); ++i) std::this_thread::sleep_for(10ms);
    CHECK(vm.calls == std::vector<std::string>{"pause"});

    auto head = connect_unix(sock);
    REQUIRE(head);
    const std::string req = "HEAD /events HTTP/1.1\r\nConnection: close\r\n\r\n";
    REQUIRE(::send(head->get(), req.data(), req.size(), MSG_NOSIGNAL) == ssize_t(req.size()));
    const std::string answer = read_all(head->get());
    CHECK(answer.starts_with("HTTP/1.1 405"));
    CHECK(answer.ends_with("\r\n\r\n")); // the head alone

    std::atomic<bool> open{false};
    std::thread first([&] {
        auto s = http_stream_lines(sock, "/events", [](std::string_view) { return true; },
                                   [&](int status) { open = status == 200; });
        CHECK(s);
    });
    while (!open) std::this_thread::sleep_for(5ms);
    int second_status = 0;
    auto second = http_stream_lines(sock, "/events", [](std::string_view) { return true; },
                                    [&](int status) { second_status = status; });
    REQUIRE(second);
    CHECK(second_status == 503);
    auto plain = http_request(sock, "GET", "/vm"); // requests still have room
    REQUIRE(plain);
    CHECK(plain->status == 200);
    vm.end(0);
    first.join();
}

TEST_CASE("api server: a stale socket is replaced, a live one or another file refused, slow and idle clients are cut off") {
    test::ScratchDir dir;
    FakeVm vm;
    const std::string sock = dir / "api.sock";
    {
        // A socket file nobody serves: what a killed kiln leaves behind.
        int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::strcpy(a.sun_path, sock.c_str());
        REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        ::close(fd);
    }
    ApiServerLimits limits;
    limits.request_timeout = 300ms;
    limits.idle_timeout = 1s;
    limits.max_connections = 3;
    auto server = ApiServer::create(vm, sock, limits);
    REQUIRE(server);
    auto again = ApiServer::create(vm, sock);
    REQUIRE_FALSE(again);
    CHECK(again.error().message().find("another process is serving on it") != std::string::npos);
    test::write_bytes(dir / "file", {1, 2, 3});
    auto notsock = ApiServer::create(vm, dir / "file");
    REQUIRE_FALSE(notsock);
    CHECK(notsock.error().message().find("not a socket") != std::string::npos);
    CHECK_FALSE(ApiServer::create(vm, "/" + std::string(200, 'a')));

    // Half a request: 408 after the request timeout, and the connection closed.
    auto half = connect_unix(sock);
    REQUIRE(half);
    const std::string partial = "GET /vm HTTP/1.1\r\n";
    REQUIRE(::send(half->get(), partial.data(), partial.size(), 0) == ssize_t(partial.size()));
    std::string got;
    char buf[4096];
    for (ssize_t n; (n = ::recv(half->get(), buf, sizeof buf, 0)) > 0;) got.append(buf, size_t(n));
    CHECK(got.starts_with("HTTP/1.1 408"));
    // Idle connections are closed; meanwhile others are served up to the limit.
    std::vector<Fd> idle;
    for (int i = 0; i < 3; ++i) idle.push_back(std::move(*connect_unix(sock)));
    std::this_thread::sleep_for(100ms);
    auto busy = http_request(sock, "GET", "/vm");
    REQUIRE(busy);
    CHECK(busy->status == 503);
    std::this_thread::sleep_for(2500ms); // the idle ones are gone
    auto ok = http_request(sock, "GET", "/vm");
    REQUIRE(ok);
    CHECK(ok->status == 200);
    // HEAD: the head alone.
    auto head = http_request(sock, "HEAD", "/vm");
    REQUIRE(head);
    CHECK(head->status == 200);
    CHECK(head->body.empty());
}
