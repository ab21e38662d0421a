// ApiServer: the control API (vm_api.hpp) on a unix socket, HTTP/1.1, served by a
// thread of its own so that no client, however slow or malformed, holds up the VM:
// every socket is non-blocking, requests and pending output are bounded, idle clients
// are dropped, and a client that stops reading its event stream is cut off rather than
// buffered for without end.
//
//   auto server = ApiServer::create(control, "/run/kiln/vm1.sock");
//   ... the machine runs; `curl --unix-socket /run/kiln/vm1.sock http://localhost/vm`
//   server.reset();  // flushes the event streams (the guest-exited line), unlinks
#pragma once

#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "vmm/api/vm_control.hpp"
#include "vmm/base/event_fd.hpp"
#include "vmm/base/fd.hpp"

namespace kiln::api {

struct ApiServerLimits {
    size_t max_connections = 64;
    size_t max_streams = 32; // of those, event streams: the rest stay free for requests
    std::chrono::milliseconds idle_timeout{60'000};    // a connection with no request in flight
    std::chrono::milliseconds request_timeout{10'000}; // a request that has begun but not ended
    std::chrono::milliseconds write_timeout{10'000};   // an answer the client does not read
    size_t max_stream_backlog = 1 << 20; // bytes of events waiting for a slow reader
};

// The bound, listening socket: made before the VM (a path in use fails fast, before
// anything is built) and removed when destroyed.
class ApiListener {
public:
    // Binds `path` with mode 0600. A stale socket left by a dead process is replaced; a
    // live one, or any other file, is an error.
    [[nodiscard]] static Result<ApiListener> bind(std::string path);
    ApiListener(ApiListener&& o) noexcept : path_(std::exchange(o.path_, {})), fd_(std::move(o.fd_)) {}
    ApiListener& operator=(ApiListener&&) = delete;
    ApiListener(const ApiListener&) = delete;
    ~ApiListener();
    [[nodiscard]] const std::string& path() const { return path_; }
    [[nodiscard]] int fd() const { return fd_.get(); }

private:
    ApiListener(std::string path, Fd fd) : path_(std::move(path)), fd_(std::move(fd)) {}
    std::string path_;
    Fd fd_;
};

class ApiServer {
public:
    // Starts serving `vm` on `listener` (ApiListener::bind).
    [[nodiscard]] static Result<std::unique_ptr<ApiServer>> create(VmControl& vm, ApiListener listener,
                                                                   ApiServerLimits limits = {});
    // Both steps at once.
    [[nodiscard]] static Result<std::unique_ptr<ApiServer>> create(VmControl& vm, std::string path,
                                                                   ApiServerLimits limits = {});
    // Destroy on the thread that created it, never from a Machine's event callback
    // (the destructor joins the server thread and unsubscribes).
    ~ApiServer();
    ApiServer(const ApiServer&) = delete;
    ApiServer& operator=(const ApiServer&) = delete;

    [[nodiscard]] const std::string& path() const { return listener_.path(); }
    // Event streams open now (for tests that must not publish before readers listen).
    [[nodiscard]] size_t streams() const { return streams_.load(std::memory_order_acquire); }

private:
    struct Connection;
    ApiServer(VmControl& vm, ApiListener listener, ApiServerLimits limits, EventFd wake, Fd epoll);
    void run();
    void accept_all();
    // Each returns false when it closed the connection (the reference is then dead).
    bool on_readable(Connection& c);
    bool serve(Connection& c);
    bool flush(Connection& c);
    void start_stream(Connection& c);
    void update_interest(Connection& c);
    void publish_pending();
    void sweep();
    void close(uint64_t id);
    void on_event(const MachineEvent& e);

    VmControl& vm_;
    ApiListener listener_;
    ApiServerLimits limits_;
    EventFd wake_;
    Fd epoll_;
    // By id, not fd: an fd number is reused at once, an id never, so a stale epoll event
    // can never reach the wrong client.
    std::unique_ptr<std::map<uint64_t, std::unique_ptr<Connection>>> conns_;
    uint64_t next_id_ = 2; // 0: the listener, 1: the wake eventfd
    std::atomic<size_t> streams_{0};
    std::mutex events_mu_;
    struct PendingEvent {
        std::string line; // one JSON line
        bool last;        // guest-exited: the streams end after it
    };
    std::deque<PendingEvent> pending_events_; // from the VM's threads
    // The guest-exited line once published (server thread), for streams opened after
    // it; empty while the VM runs.
    std::string last_exit_line_;
    std::atomic<bool> stopping_{false};
    std::thread thread_;
    Subscription subscription_; // last: unsubscribed first, before the rest goes
};

} // namespace kiln::api
