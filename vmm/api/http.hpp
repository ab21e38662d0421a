// HTTP/1.1 messages for the control socket (RFC 9112), parsing and writing only: no
// sockets here, so every limit and every malformed request is unit-tested.
//
// Why not cpp-httplib: Debian 12's libcpp-httplib-dev (0.11.4) cannot listen on a unix
// socket (AF_UNIX arrived in later releases) and ships its implementation only as a
// shared object, while the kiln binary is static. The control API needs a small, fixed
// subset (request line, headers, Content-Length bodies, a chunked event stream), which
// is less code than the glue a library would need.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kiln::api {

inline constexpr size_t kMaxHeaderBytes = 16 * 1024; // request line + headers
inline constexpr size_t kMaxBodyBytes = 64 * 1024;   // the API's bodies are tiny JSON

struct HttpRequest {
    std::string method;  // "GET", "PUT", ... (case-sensitive, as RFC 9110 says)
    std::string target;  // as sent: "/vm/state?x=1"
    std::string path;    // target without the query: "/vm/state"
    std::string query;   // after '?', may be empty
    std::vector<std::pair<std::string, std::string>> headers; // names lower-cased
    std::string body;
    bool keep_alive = true; // HTTP/1.1 default; "Connection: close" or HTTP/1.0 clear it

    // The first header of that name (lower-case), if any.
    [[nodiscard]] std::optional<std::string_view> header(std::string_view name) const;
};

struct ParseResult {
    enum class Kind : uint8_t { NeedMore, Done, Bad };
    Kind kind = Kind::NeedMore;
    size_t consumed = 0;   // Done: bytes of the buffer this request took
    HttpRequest request;   // Done
    int status = 0;        // Bad: the status to answer with (400, 413, 431, 501, 505)
    std::string error;     // Bad: why, for the JSON error body
};

// Parses one request from the front of `buf` (which may hold more, pipelined).
[[nodiscard]] ParseResult parse_request(std::string_view buf);

struct HttpResponse {
    int status = 200;
    std::string content_type = "application/json";
    std::string body;
    std::vector<std::pair<std::string, std::string>> headers; // extra headers (Allow, ...)
};

[[nodiscard]] std::string_view reason_phrase(int status);
// Status line, Content-Type, Content-Length, Connection and extra headers, then the body.
[[nodiscard]] std::string serialize(const HttpResponse& r, bool keep_alive);
// The head of a chunked response that stays open (the event stream).
[[nodiscard]] std::string serialize_stream_head(int status, std::string_view content_type);
// One chunk of a chunked body; an empty `data` is the last chunk.
[[nodiscard]] std::string chunk(std::string_view data);

// A JSON error body: {"error": message, "status": status}.
[[nodiscard]] HttpResponse error_response(int status, std::string_view message);

// The client side (kiln ctl, tests): a parsed response head and body.
struct HttpResponseHead {
    int status = 0;
    std::vector<std::pair<std::string, std::string>> headers; // names lower-cased
    std::optional<size_t> content_length;
    bool chunked = false;
    size_t head_bytes = 0; // length of the status line and headers, blank line included
    [[nodiscard]] std::optional<std::string_view> header(std::string_view name) const;
};
// Parses a response head from the front of `buf`; nullopt while incomplete, an error
// text when malformed.
[[nodiscard]] std::pair<std::optional<HttpResponseHead>, std::string> parse_response_head(std::string_view buf);

// Decodes chunks from the front of `buf` into `out`; returns the bytes consumed. Sets
// `done` on the last chunk, `bad` on a malformed one.
[[nodiscard]] size_t decode_chunks(std::string_view buf, std::string& out, bool& done, bool& bad);

} // namespace kiln::api
