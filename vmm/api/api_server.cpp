#include "vmm/api/api_server.hpp"

#include <cerrno>
#include <cstring>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "vmm/api/http.hpp"
#include "vmm/api/vm_api.hpp"

namespace kiln::api {

namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kReadChunk = 16 * 1024;
// The most a client may have sent that is not yet a whole request.
constexpr size_t kMaxPendingInput = kMaxHeaderBytes + kMaxBodyBytes + 1024;
constexpr int kTickMs = 250; // how often timeouts are looked at
constexpr uint64_t kListenerId = 0, kWakeId = 1;

Result<sockaddr_un> socket_address(const std::string& path) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    if (path.empty()) return fail("--api-sock: an empty path");
    if (path.size() >= sizeof a.sun_path)
        return fail("--api-sock '{}': longer than the {} bytes a unix socket path may have", path, sizeof a.sun_path - 1);
    std::memcpy(a.sun_path, path.data(), path.size());
    return a;
}

// A socket file left by a process that died (connect: ECONNREFUSED) is replaced; one
// that answers, or any doubt, leaves it alone with an error.
Result<void> clear_stale_socket(const std::string& path, const sockaddr_un& addr) {
    struct stat st{};
    if (::lstat(path.c_str(), &st) != 0) {
        if (errno == ENOENT) return {};
        return fail_errno(fmt::format("--api-sock '{}'", path));
    }
    if (!S_ISSOCK(st.st_mode)) return fail("--api-sock '{}': the path exists and is not a socket", path);
    Fd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!probe) return fail_errno("socket");
    if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0 || errno == EAGAIN)
        return fail("--api-sock '{}': another process is serving on it", path);
    if (errno != ECONNREFUSED) return fail_errno(fmt::format("--api-sock '{}': probing the existing socket", path));
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return fail_errno(fmt::format("--api-sock '{}': unlink", path));
    return {};
}

bool add_to_epoll(int ep, int fd, uint32_t events, uint64_t id) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = id;
    return ::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0;
}

} // namespace

Result<ApiListener> ApiListener::bind(std::string path) {
    const sockaddr_un addr = KILN_TRY(socket_address(path));
    KILN_TRY(clear_stale_socket(path, addr));
    Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) return fail_errno("--api-sock: socket");
    // Only the owner may control the VM: the socket is 0600 before anyone can connect
    // (umask during bind), then chmod for the record.
    const mode_t old = ::umask(0177);
    const int rc = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
    const int bind_errno = errno;
    ::umask(old);
    if (rc != 0) return fail_errno(fmt::format("--api-sock '{}': bind", path), bind_errno);
    ApiListener l(std::move(path), std::move(fd)); // unlinks from here on
    if (::chmod(l.path_.c_str(), 0600) != 0 || ::listen(l.fd_.get(), 64) != 0)
        return fail_errno(fmt::format("--api-sock '{}'", l.path_));
    return l;
}

ApiListener::~ApiListener() {
    if (!path_.empty()) ::unlink(path_.c_str());
}

struct ApiServer::Connection {
    uint64_t id = 0;
    Fd fd;
    std::string in, out;
    bool stream = false;     // GET /events: output only, until the VM ends
    bool closing = false;    // close once `out` is written; no more requests
    bool eof = false;        // the client has sent all it will
    uint32_t interest = 0;   // what epoll watches now
    Clock::time_point last_activity = Clock::now();
    Clock::time_point request_started{}; // first byte of a request not yet complete
    Clock::time_point write_stalled{};   // since when `out` has waited for the client
};

Result<std::unique_ptr<ApiServer>> ApiServer::create(VmControl& vm, std::string path, ApiServerLimits limits) {
    return create(vm, KILN_TRY(ApiListener::bind(std::move(path))), limits);
}

Result<std::unique_ptr<ApiServer>> ApiServer::create(VmControl& vm, ApiListener listener, ApiServerLimits limits) {
    auto wake = KILN_TRY(EventFd::create());
    Fd ep(::epoll_create1(EPOLL_CLOEXEC));
    if (!ep) return fail_errno("epoll_create1");
    std::unique_ptr<ApiServer> s(new ApiServer(vm, std::move(listener), limits, std::move(wake), std::move(ep)));
    if (!add_to_epoll(s->epoll_.get(), s->listener_.fd(), EPOLLIN, kListenerId) ||
        !add_to_epoll(s->epoll_.get(), s->wake_.get(), EPOLLIN, kWakeId))
        return fail_errno("epoll_ctl");
    s->subscription_ = vm.subscribe([srv = s.get()](const MachineEvent& e) { srv->on_event(e); });
    // A VM that ended before the server existed still shows in streams opened later.
    if (const auto e = vm.exit()) {
        MachineEvent ev;
        ev.kind = MachineEvent::Kind::GuestExited;
        ev.exit = *e;
        s->on_event(ev);
    }
    s->thread_ = std::thread([srv = s.get()] {
        ::pthread_setname_np(::pthread_self(), "kiln-api");
        srv->run();
    });
    return s;
}

ApiServer::ApiServer(VmControl& vm, ApiListener listener, ApiServerLimits limits, EventFd wake, Fd epoll)
    : vm_(vm), listener_(std::move(listener)), limits_(limits), wake_(std::move(wake)), epoll_(std::move(epoll)),
      conns_(std::make_unique<std::map<uint64_t, std::unique_ptr<Connection>>>()) {}

ApiServer::~ApiServer() {
    subscription_.reset();
    stopping_.store(true, std::memory_order_release);
    wake_.signal();
    if (thread_.joinable()) thread_.join();
}

void ApiServer::on_event(const MachineEvent& e) {
    // On the VM's threads: only queue the line and wake the server.
    std::string line = nlohmann::json(e).dump() + "\n";
    {
        std::lock_guard lk(events_mu_);
        pending_events_.push_back({std::move(line), e.kind == MachineEvent::Kind::GuestExited});
    }
    wake_.signal();
}

void ApiServer::run() {
    epoll_event events[32];
    while (!stopping_.load(std::memory_order_acquire)) {
        const int n = ::epoll_wait(epoll_.get(), events, 32, kTickMs);
        if (n < 0 && errno != EINTR) {
            spdlog::error("api: epoll_wait: {}", std::strerror(errno));
            break;
        }
        for (int i = 0; i < n; ++i) {
            const uint64_t id = events[i].data.u64;
            const uint32_t ev = events[i].events;
            if (id == kListenerId) {
                accept_all();
                continue;
            }
            if (id == kWakeId) {
                wake_.consume();
                publish_pending();
                continue;
            }
            auto it = conns_->find(id);
            if (it == conns_->end()) continue; // closed earlier in this batch
            Connection& c = *it->second;
            // Written out: the next pipelined request, if one waits.
            if ((ev & EPOLLOUT) && (!flush(c) || !serve(c))) continue;
            // A hang-up may leave a whole request behind (sent, then closed): read it
            // and serve it before closing. An error alone closes.
            if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) {
                if (!on_readable(c)) continue;
            } else if (ev & EPOLLERR) {
                close(id);
            }
        }
        sweep();
    }
    // Going away (the VM has ended and kiln is exiting): the last events, then up to a
    // quarter of a second to hand what is written to the clients.
    publish_pending();
    const auto deadline = Clock::now() + std::chrono::milliseconds(250);
    while (Clock::now() < deadline) {
        bool pending = false;
        for (auto& [id, c] : *conns_) pending |= !c->out.empty();
        if (!pending) break;
        const int n = ::epoll_wait(epoll_.get(), events, 32, 50);
        for (int i = 0; i < n; ++i)
            if (auto it = conns_->find(events[i].data.u64); it != conns_->end()) flush(*it->second);
    }
    conns_->clear();
}

void ApiServer::accept_all() {
    for (;;) {
        Fd fd(::accept4(listener_.fd(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
        if (!fd) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) spdlog::warn("api: accept: {}", std::strerror(errno));
            return;
        }
        if (conns_->size() >= limits_.max_connections) {
            const std::string busy = serialize(error_response(503, "too many connections"), false);
            [[maybe_unused]] auto w = ::send(fd.get(), busy.data(), busy.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
            continue;
        }
        auto c = std::make_unique<Connection>();
        c->id = next_id_++;
        c->fd = std::move(fd);
        c->interest = EPOLLIN | EPOLLRDHUP;
        if (!add_to_epoll(epoll_.get(), c->fd.get(), c->interest, c->id)) continue;
        conns_->emplace(c->id, std::move(c));
    }
}

bool ApiServer::on_readable(Connection& c) {
    char buf[kReadChunk];
    // Read what is there, up to one full request's worth beyond what is buffered: a
    // client that sends faster than it reads is held back by its own socket buffer.
    while (!c.eof && c.in.size() <= kMaxPendingInput) {
        const ssize_t n = ::recv(c.fd.get(), buf, sizeof buf, 0);
        if (n > 0) {
            c.last_activity = Clock::now();
            // A stream, or a connection being closed, takes no more requests.
            if (c.stream || c.closing) continue;
            if (c.in.empty()) c.request_started = c.last_activity;
            c.in.append(buf, static_cast<size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        c.eof = true; // end of input, or an error: no more requests will come
    }
    if (!serve(c)) return false;
    if (c.eof) {
        // Serve what was complete (above), deliver what is owed, then close. An event
        // reader that hung up is simply gone.
        if (c.stream || c.out.empty()) {
            close(c.id);
            return false;
        }
        c.closing = true;
    }
    update_interest(c);
    return true;
}

bool ApiServer::serve(Connection& c) {
    // One request at a time: the next is parsed only once the answer to this one has
    // been handed to the client (backpressure against a client that never reads).
    while (!c.in.empty() && !c.stream && !c.closing && c.out.empty()) {
        ParseResult r = parse_request(c.in);
        if (r.kind == ParseResult::Kind::NeedMore) {
            if (c.in.size() <= kMaxPendingInput && !c.eof) break;
            r = ParseResult{ParseResult::Kind::Bad, 0, {},
                            c.eof ? 400 : 413, c.eof ? "the request ended early" : "request too large"};
        }
        if (r.kind == ParseResult::Kind::Bad) {
            c.out += serialize(error_response(r.status, r.error), false);
            c.in.clear();
            c.closing = true;
            break;
        }
        c.in.erase(0, r.consumed);
        c.request_started = c.in.empty() ? Clock::time_point{} : Clock::now();
        const HttpRequest& req = r.request;
        const bool head = req.method == "HEAD";
        HttpResponse resp;
        if (req.path == "/events") {
            if (req.method == "GET") {
                if (streams_.load(std::memory_order_relaxed) >= limits_.max_streams) {
                    resp = error_response(503, fmt::format("too many event streams (at most {})", limits_.max_streams));
                } else {
                    start_stream(c);
                    break;
                }
            } else {
                resp = error_response(405, "method not allowed; this resource takes GET");
                resp.headers.emplace_back("Allow", "GET");
            }
        } else {
            resp = handle_request(vm_, req);
        }
        std::string text = serialize(resp, req.keep_alive);
        if (head) text.resize(text.size() - resp.body.size());
        c.out += text;
        if (!req.keep_alive) c.closing = true;
        if (!flush(c)) return false;
    }
    return flush(c);
}

void ApiServer::start_stream(Connection& c) {
    c.stream = true;
    c.in.clear();
    streams_.fetch_add(1, std::memory_order_acq_rel);
    c.out += serialize_stream_head(200, "application/x-ndjson");
    if (!last_exit_line_.empty()) {
        // The VM is gone: its last word, then the end of the stream.
        c.out += chunk(last_exit_line_);
        c.out += chunk("");
        c.closing = true;
    }
}

void ApiServer::publish_pending() {
    std::deque<PendingEvent> events;
    {
        std::lock_guard lk(events_mu_);
        events.swap(pending_events_);
    }
    for (const auto& [line, end] : events) {
        if (end) last_exit_line_ = line;
        std::vector<uint64_t> ids;
        for (auto& [id, c] : *conns_)
            if (c->stream && !c->closing) ids.push_back(id);
        for (uint64_t id : ids) {
            auto it = conns_->find(id);
            if (it == conns_->end()) continue;
            Connection& c = *it->second;
            c.out += chunk(line);
            if (end) {
                c.out += chunk(""); // the last chunk: the stream ends with the VM
                c.closing = true;
            }
            if (c.out.size() > limits_.max_stream_backlog) {
                spdlog::warn("api: an event reader fell {} bytes behind; disconnected", c.out.size());
                close(id);
                continue;
            }
            flush(c); // sets what epoll watches
        }
    }
}

bool ApiServer::flush(Connection& c) {
    while (!c.out.empty()) {
        const ssize_t n = ::send(c.fd.get(), c.out.data(), c.out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            c.out.erase(0, static_cast<size_t>(n));
            c.write_stalled = {};
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (c.write_stalled == Clock::time_point{}) c.write_stalled = Clock::now();
            break;
        }
        close(c.id); // the peer is gone
        return false;
    }
    if (c.out.empty() && c.closing) {
        close(c.id);
        return false;
    }
    update_interest(c);
    return true;
}

void ApiServer::update_interest(Connection& c) {
    // Read only while a request can be taken (or, for a stream, to notice the reader
    // hanging up); write only while something waits. Nothing else wakes this thread.
    uint32_t want = 0;
    if (!c.eof && (c.stream || (!c.closing && c.out.empty()))) want |= EPOLLIN | EPOLLRDHUP;
    if (!c.out.empty()) want |= EPOLLOUT;
    if (want == c.interest) return;
    epoll_event ev{};
    ev.events = want;
    ev.data.u64 = c.id;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, c.fd.get(), &ev) == 0) c.interest = want;
}

void ApiServer::sweep() {
    const auto now = Clock::now();
    std::vector<uint64_t> drop, late;
    for (auto& [id, c] : *conns_) {
        if (!c->out.empty() && c->write_stalled != Clock::time_point{} &&
            now - c->write_stalled > limits_.write_timeout) {
            drop.push_back(id); // not reading what it asked for
        } else if (c->stream) {
            continue;
        } else if (!c->in.empty() && c->out.empty() && !c->closing && now - c->request_started > limits_.request_timeout) {
            late.push_back(id);
        } else if (c->in.empty() && c->out.empty() && now - c->last_activity > limits_.idle_timeout) {
            drop.push_back(id);
        }
    }
    for (uint64_t id : drop) close(id);
    for (uint64_t id : late) {
        Connection& c = *conns_->at(id);
        c.out += serialize(error_response(408, "the request did not complete in time"), false);
        c.in.clear();
        c.closing = true;
        flush(c);
    }
}

void ApiServer::close(uint64_t id) {
    auto it = conns_->find(id);
    if (it == conns_->end()) return;
    if (it->second->stream) streams_.fetch_sub(1, std::memory_order_acq_rel);
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, it->second->fd.get(), nullptr);
    conns_->erase(it);
}

} // namespace kiln::api
