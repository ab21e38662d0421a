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
constexpr int kTickMs = 500; // how often idle connections are looked at

Result<sockaddr_un> socket_address(const std::string& path) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    if (path.empty()) return fail("--api-sock: an empty path");
    if (path.size() >= sizeof a.sun_path)
        return fail("--api-sock '{}': longer than the {} bytes a unix socket path may have", path, sizeof a.sun_path - 1);
    std::memcpy(a.sun_path, path.data(), path.size());
    return a;
}

// A socket file left by a process that died is replaced; one that answers is in use.
Result<void> clear_stale_socket(const std::string& path, const sockaddr_un& addr) {
    struct stat st{};
    if (::lstat(path.c_str(), &st) != 0) {
        if (errno == ENOENT) return {};
        return fail_errno(fmt::format("--api-sock '{}'", path));
    }
    if (!S_ISSOCK(st.st_mode)) return fail("--api-sock '{}': the path exists and is not a socket", path);
    Fd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!probe) return fail_errno("socket");
    if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0)
        return fail("--api-sock '{}': another process is serving on it", path);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return fail_errno(fmt::format("--api-sock '{}': unlink", path));
    return {};
}

} // namespace

struct ApiServer::Connection {
    Fd fd;
    std::string in, out;
    bool stream = false;        // GET /events: output only, until the VM ends
    bool closing = false;       // close once `out` is written
    bool want_write = false;    // EPOLLOUT armed
    Clock::time_point last_activity = Clock::now();
    Clock::time_point request_started{}; // first byte of a request not yet complete
};

Result<std::unique_ptr<ApiServer>> ApiServer::create(VmControl& vm, std::string path, ApiServerLimits limits) {
    const sockaddr_un addr = KILN_TRY(socket_address(path));
    KILN_TRY(clear_stale_socket(path, addr));
    Fd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!listener) return fail_errno("--api-sock: socket");
    // Only the owner may control the VM: the socket is made 0600 before anyone can
    // connect (umask during bind, then an explicit chmod for the record).
    const mode_t old = ::umask(0177);
    const int rc = ::bind(listener.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
    const int bind_errno = errno;
    ::umask(old);
    if (rc != 0) return fail_errno(fmt::format("--api-sock '{}': bind", path), bind_errno);
    if (::chmod(path.c_str(), 0600) != 0 || ::listen(listener.get(), 64) != 0) {
        const int e = errno;
        ::unlink(path.c_str());
        return fail_errno(fmt::format("--api-sock '{}'", path), e);
    }
    auto cleanup_on_error = [&](Error e) {
        ::unlink(path.c_str());
        return std::unexpected(std::move(e));
    };
    auto wake = EventFd::create();
    if (!wake) return cleanup_on_error(wake.error());
    Fd ep(::epoll_create1(EPOLL_CLOEXEC));
    if (!ep) return cleanup_on_error(Error::from_errno("epoll_create1"));
    std::unique_ptr<ApiServer> s(
        new ApiServer(vm, std::move(path), limits, std::move(listener), std::move(*wake), std::move(ep)));
    for (int fd : {s->listener_.get(), s->wake_.get()}) {
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.fd = fd;
        if (::epoll_ctl(s->epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0)
            return cleanup_on_error(Error::from_errno("epoll_ctl"));
    }
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

ApiServer::ApiServer(VmControl& vm, std::string path, ApiServerLimits limits, Fd listener, EventFd wake, Fd epoll)
    : vm_(vm), path_(std::move(path)), limits_(limits), listener_(std::move(listener)), wake_(std::move(wake)),
      epoll_(std::move(epoll)), conns_(std::make_unique<std::map<int, std::unique_ptr<Connection>>>()) {}

ApiServer::~ApiServer() {
    subscription_.reset();
    stopping_.store(true, std::memory_order_release);
    wake_.signal();
    if (thread_.joinable()) thread_.join();
    ::unlink(path_.c_str());
}

void ApiServer::on_event(const MachineEvent& e) {
    // On the VM's threads: only queue the line and wake the server.
    std::string line = nlohmann::json(e).dump() + "\n";
    {
        std::lock_guard lk(events_mu_);
        pending_events_.push_back(std::move(line));
        if (e.kind == MachineEvent::Kind::GuestExited) pending_events_.push_back({}); // end of the streams
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
            const int fd = events[i].data.fd;
            if (fd == listener_.get()) {
                accept_all();
                continue;
            }
            if (fd == wake_.get()) {
                wake_.consume();
                publish_pending();
                continue;
            }
            auto it = conns_->find(fd);
            if (it == conns_->end()) continue;
            Connection& c = *it->second;
            if (events[i].events & (EPOLLERR | EPOLLHUP)) {
                close(fd);
                continue;
            }
            if (events[i].events & EPOLLOUT) flush(c);
            if (conns_->count(fd) && (events[i].events & EPOLLIN)) on_readable(c);
        }
        sweep_idle();
    }
    // Going away (the VM has ended and kiln is exiting): the last events, then up to a
    // quarter of a second to hand what is written to the clients.
    publish_pending();
    const auto deadline = Clock::now() + std::chrono::milliseconds(250);
    while (Clock::now() < deadline) {
        bool pending = false;
        for (auto& [fd, c] : *conns_) pending |= !c->out.empty();
        if (!pending) break;
        const int n = ::epoll_wait(epoll_.get(), events, 32, 50);
        for (int i = 0; i < n; ++i)
            if (auto it = conns_->find(events[i].data.fd); it != conns_->end()) flush(*it->second);
    }
    conns_->clear();
}

void ApiServer::accept_all() {
    for (;;) {
        Fd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
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
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLRDHUP;
        ev.data.fd = fd.get();
        if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd.get(), &ev) != 0) continue;
        auto c = std::make_unique<Connection>();
        const int key = fd.get();
        c->fd = std::move(fd);
        conns_->emplace(key, std::move(c));
    }
}

void ApiServer::on_readable(Connection& c) {
    const int fd = c.fd.get();
    char buf[kReadChunk];
    for (;;) {
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n > 0) {
            c.last_activity = Clock::now();
            // A stream or a connection being closed takes no more requests: input is
            // read (so the peer is not blocked) and dropped.
            if (c.stream || c.closing) continue;
            if (c.in.empty()) c.request_started = c.last_activity;
            c.in.append(buf, static_cast<size_t>(n));
            if (c.in.size() > kMaxPendingInput) break; // serve() answers 413/431 and closes
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        // End of input (or an error): a half-closed client may still read what it asked
        // for; serve what is complete, then close after writing.
        serve(c);
        if (!conns_->count(fd)) return;
        if (c.stream && n == 0) {
            close(fd); // an event reader that hung up
            return;
        }
        c.closing = true;
        if (c.out.empty()) close(fd);
        return;
    }
    serve(c);
}

void ApiServer::serve(Connection& c) {
    while (!c.in.empty() && !c.stream && !c.closing) {
        ParseResult r = parse_request(c.in);
        if (r.kind == ParseResult::Kind::NeedMore) {
            if (c.in.size() > kMaxPendingInput) r = ParseResult{ParseResult::Kind::Bad, 0, {}, 413, "request too large"};
            else break;
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
        if (req.path == "/events") {
            if (req.method != "GET") {
                auto resp = error_response(405, "method not allowed; this resource takes GET");
                resp.headers.emplace_back("Allow", "GET");
                c.out += serialize(resp, req.keep_alive);
                c.closing = !req.keep_alive;
                continue;
            }
            start_stream(c);
            break;
        }
        HttpResponse resp = handle_request(vm_, req);
        std::string text = serialize(resp, req.keep_alive);
        if (req.method == "HEAD") text.resize(text.size() - resp.body.size());
        c.out += text;
        if (!req.keep_alive) c.closing = true;
    }
    flush(c);
}

void ApiServer::start_stream(Connection& c) {
    c.stream = true;
    c.in.clear();
    c.out += serialize_stream_head(200, "application/x-ndjson");
    if (vm_ended_) {
        // The VM is gone: its last word, then the end of the stream.
        c.out += chunk(last_exit_line_);
        c.out += chunk("");
        c.closing = true;
    }
}

void ApiServer::publish_pending() {
    std::deque<std::string> lines;
    {
        std::lock_guard lk(events_mu_);
        lines.swap(pending_events_);
    }
    for (auto& line : lines) {
        const bool end = line.empty();
        if (!end && line.find("\"guest-exited\"") != std::string::npos) last_exit_line_ = line;
        if (end) vm_ended_ = true;
        std::vector<int> fds;
        for (auto& [fd, c] : *conns_)
            if (c->stream && !c->closing) fds.push_back(fd);
        for (int fd : fds) {
            Connection& c = *conns_->at(fd);
            c.out += chunk(line); // the empty line is the last chunk
            if (end) c.closing = true;
            if (c.out.size() > limits_.max_stream_backlog) {
                spdlog::warn("api: an event reader fell {} bytes behind; disconnected", c.out.size());
                close(fd);
                continue;
            }
            flush(c);
        }
    }
}

void ApiServer::flush(Connection& c) {
    const int fd = c.fd.get();
    while (!c.out.empty()) {
        const ssize_t n = ::send(fd, c.out.data(), c.out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            c.out.erase(0, static_cast<size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        close(fd); // the peer is gone
        return;
    }
    if (c.out.empty() && c.closing) {
        close(fd);
        return;
    }
    const bool want = !c.out.empty();
    if (want != c.want_write) {
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLRDHUP | (want ? EPOLLOUT : 0u);
        ev.data.fd = fd;
        if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev) == 0) c.want_write = want;
    }
}

void ApiServer::sweep_idle() {
    const auto now = Clock::now();
    std::vector<int> drop;
    for (auto& [fd, c] : *conns_) {
        if (c->stream) continue;
        const bool mid_request = !c->in.empty() && c->request_started != Clock::time_point{};
        if (mid_request && now - c->request_started > limits_.request_timeout) {
            c->out += serialize(error_response(408, "the request did not complete in time"), false);
            c->in.clear();
            c->closing = true;
            drop.push_back(fd); // flushed below; closes itself once written
        } else if (!mid_request && c->out.empty() && now - c->last_activity > limits_.idle_timeout) {
            drop.push_back(fd);
        }
    }
    for (int fd : drop) {
        auto it = conns_->find(fd);
        if (it == conns_->end()) continue;
        if (it->second->closing && !it->second->out.empty()) flush(*it->second);
        else close(fd);
    }
}

void ApiServer::close(int fd) {
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
    conns_->erase(fd);
}

} // namespace kiln::api
