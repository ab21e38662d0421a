#include "vmm/api/http_client.hpp"

#include <cerrno>
#include <cstring>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <fmt/format.h>

namespace kiln::api {

namespace {

using Clock = std::chrono::steady_clock;

Result<void> send_all(int fd, std::string_view data) {
    while (!data.empty()) {
        const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail_errno("sending the request");
        data.remove_prefix(static_cast<size_t>(n));
    }
    return {};
}

// Reads what is there, waiting up to the deadline; 0 bytes means the server closed.
Result<size_t> read_some(int fd, std::string& buf, std::optional<Clock::time_point> deadline) {
    for (;;) {
        int wait_ms = -1;
        if (deadline) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - Clock::now()).count();
            if (left <= 0) return fail("no answer from the control socket in time");
            wait_ms = static_cast<int>(left);
        }
        pollfd p{fd, POLLIN, 0};
        const int r = ::poll(&p, 1, wait_ms);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return fail_errno("poll");
        if (r == 0) continue; // the deadline check above ends it
        char tmp[16384];
        const ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail_errno("reading the response");
        buf.append(tmp, static_cast<size_t>(n));
        return static_cast<size_t>(n);
    }
}

std::string request_text(std::string_view method, std::string_view target, std::string_view body) {
    std::string req = fmt::format("{} {} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n", method, target);
    if (!body.empty() || method == "PUT" || method == "POST")
        req += fmt::format("Content-Type: application/json\r\nContent-Length: {}\r\n", body.size());
    req += "\r\n";
    req += body;
    return req;
}

} // namespace

Result<Fd> connect_unix(const std::string& path) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof a.sun_path) return fail("'{}' is not a usable unix socket path", path);
    std::memcpy(a.sun_path, path.data(), path.size());
    Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return fail_errno("socket");
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) {
        const int e = errno;
        if (e == ENOENT) return fail("no control socket at '{}' (is the VM running with --api-sock?)", path);
        if (e == ECONNREFUSED) return fail("nothing serves on '{}' (the VM has ended?)", path);
        return fail_errno(fmt::format("connecting to '{}'", path), e);
    }
    return fd;
}

Result<HttpReply> http_request(const std::string& socket_path, std::string_view method, std::string_view target,
                               std::string_view json_body, std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    Fd fd = KILN_TRY(connect_unix(socket_path));
    // A server that answers before reading (503: too many connections) may have closed
    // already: its answer is still there to read.
    auto sent = send_all(fd.get(), request_text(method, target, json_body));
    std::string buf;
    std::optional<HttpResponseHead> head;
    for (;;) {
        auto got = read_some(fd.get(), buf, deadline);
        if (!got) return std::unexpected(sent ? got.error() : sent.error());
        const size_t n = *got;
        if (!head) {
            auto [h, err] = parse_response_head(buf);
            if (!err.empty()) return fail("malformed response: {}", err);
            head = h;
        }
        if (head && method == "HEAD") break; // a head alone, whatever Content-Length says
        if (head && head->content_length && buf.size() >= head->head_bytes + *head->content_length) break;
        if (n == 0) break;
    }
    if (!head) return sent ? fail("the server closed the connection without answering") : std::unexpected(sent.error());
    HttpReply r;
    r.status = head->status;
    r.content_type = std::string(head->header("content-type").value_or(""));
    std::string_view body = std::string_view(buf).substr(head->head_bytes);
    if (method == "HEAD") return r;
    if (head->chunked) {
        bool done = false, bad = false;
        [[maybe_unused]] size_t used = decode_chunks(body, r.body, done, bad);
        if (bad) return fail("malformed chunked response");
    } else {
        r.body = std::string(head->content_length ? body.substr(0, *head->content_length) : body);
        if (head->content_length && r.body.size() < *head->content_length) return fail("truncated response");
    }
    return r;
}

Result<int> http_stream_lines(const std::string& socket_path, std::string_view target,
                              const std::function<bool(std::string_view line)>& on_line,
                              const std::function<void(int status)>& on_open,
                              const std::function<void(std::string_view body)>& on_error_body) {
    Fd fd = KILN_TRY(connect_unix(socket_path));
    KILN_TRY(send_all(fd.get(), request_text("GET", target, {})));
    std::string buf, decoded;
    std::optional<HttpResponseHead> head;
    size_t at = 0; // start of undecoded chunked data in buf
    bool done = false;
    for (;;) {
        const size_t n = KILN_TRY(read_some(fd.get(), buf, std::nullopt));
        if (!head) {
            auto [h, err] = parse_response_head(buf);
            if (!err.empty()) return fail("malformed response: {}", err);
            if (!h) {
                if (n == 0) return fail("the server closed the connection without answering");
                continue;
            }
            head = h;
            at = head->head_bytes;
            if (on_open) on_open(head->status);
        }
        if (head->status != 200 || !head->chunked) {
            if (n != 0 && (!head->content_length || buf.size() < head->head_bytes + *head->content_length)) continue;
            if (on_error_body) on_error_body(std::string_view(buf).substr(head->head_bytes));
            return head->status;
        }
        bool bad = false;
        at += decode_chunks(std::string_view(buf).substr(at), decoded, done, bad);
        if (bad) return fail("malformed event stream");
        buf.erase(0, at); // the head stays parsed; only undecoded bytes are kept
        at = 0;
        size_t nl;
        while ((nl = decoded.find('\n')) != std::string::npos) {
            const bool go_on = on_line(std::string_view(decoded).substr(0, nl));
            decoded.erase(0, nl + 1);
            if (!go_on) return head->status;
        }
        if (done || n == 0) return head->status;
    }
}

} // namespace kiln::api
