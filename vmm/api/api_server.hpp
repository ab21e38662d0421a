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
    std::chrono::milliseconds idle_timeout{60'000};    // a connection with no request in flight
    std::chrono::milliseconds request_timeout{10'000}; // a request that has begun but not ended
    size_t max_stream_backlog = 1 << 20; // bytes of events waiting for a slow reader
};

class ApiServer {
public:
    // Binds `path` (a stale socket left by a dead process is replaced; a live one, or
    // any other file, is an error) with mode 0600, and starts serving.
    [[nodiscard]] static Result<std::unique_ptr<ApiServer>> create(VmControl& vm, std::string path,
                                                                   ApiServerLimits limits = {});
    ~ApiServer();
    ApiServer(const ApiServer&) = delete;
    ApiServer& operator=(const ApiServer&) = delete;

    [[nodiscard]] const std::string& path() const { return path_; }

private:
    struct Connection;
    ApiServer(VmControl& vm, std::string path, ApiServerLimits limits, Fd listener, EventFd wake, Fd epoll);
    void run();
    void accept_all();
    void on_readable(Connection& c);
    void serve(Connection& c);
    void start_stream(Connection& c);
    void flush(Connection& c);
    void publish_pending();
    void sweep_idle();
    void close(int fd);
    void on_event(const MachineEvent& e);

    VmControl& vm_;
    std::string path_;
    ApiServerLimits limits_;
    Fd listener_;
    EventFd wake_;
    Fd epoll_;
    std::unique_ptr<std::map<int, std::unique_ptr<Connection>>> conns_;
    std::mutex events_mu_;
    std::deque<std::string> pending_events_; // JSON lines from the VM's threads
    bool vm_ended_ = false;                  // guest-exited has been published (server thread)
    std::string last_exit_line_;             // that line, for streams opened afterwards
    std::atomic<bool> stopping_{false};
    std::thread thread_;
    Subscription subscription_; // last: unsubscribed first, before the rest goes
};

} // namespace kiln::api
