// A small blocking HTTP/1.1 client for the control socket: `kiln ctl` and the tests.
// One connection per request ("Connection: close"), so nothing is kept between calls.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <string_view>

#include "vmm/api/http.hpp"
#include "vmm/base/fd.hpp"

namespace kiln::api {

struct HttpReply {
    int status = 0;
    std::string content_type;
    std::string body;
};

// Connects to the unix socket at `path`; the error names the path (no such socket,
// nobody serving on it, no permission).
[[nodiscard]] Result<Fd> connect_unix(const std::string& path);

// Sends one request and reads the whole response. `timeout`: for the whole exchange.
[[nodiscard]] Result<HttpReply> http_request(const std::string& socket_path, std::string_view method,
                                             std::string_view target, std::string_view json_body = {},
                                             std::chrono::milliseconds timeout = std::chrono::seconds(30));

// GETs a streamed (chunked) resource: `on_open` gets the response status as soon as the
// head arrives (for a 200, the stream is then established); `on_line` each complete
// line of a 200's body as it arrives, until the server ends the stream or `on_line`
// returns false. A non-200 answer's body goes to `on_error_body`. Returns the status.
[[nodiscard]] Result<int> http_stream_lines(const std::string& socket_path, std::string_view target,
                                            const std::function<bool(std::string_view line)>& on_line,
                                            const std::function<void(int status)>& on_open = {},
                                            const std::function<void(std::string_view body)>& on_error_body = {});

} // namespace kiln::api
