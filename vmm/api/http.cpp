#include "vmm/api/http.hpp"

#include <algorithm>
#include <charconv>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace kiln::api {

namespace {

std::string lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

// RFC 9110 tchar: what a method and a header name may contain.
bool is_token(std::string_view s) {
    if (s.empty()) return false;
    return std::all_of(s.begin(), s.end(), [](unsigned char c) {
        return std::isalnum(c) || std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
    });
}

ParseResult bad(int status, std::string why) {
    ParseResult r;
    r.kind = ParseResult::Kind::Bad;
    r.status = status;
    r.error = std::move(why);
    return r;
}

std::optional<size_t> parse_size(std::string_view s, int base = 10) {
    size_t v = 0;
    if (s.empty()) return std::nullopt;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
    if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
    return v;
}

// Splits header lines ("Name: value") into lower-cased names and trimmed values.
bool parse_header_lines(std::string_view lines, std::vector<std::pair<std::string, std::string>>& out) {
    while (!lines.empty()) {
        const size_t eol = lines.find("\r\n");
        std::string_view line = lines.substr(0, eol);
        lines = eol == std::string_view::npos ? std::string_view{} : lines.substr(eol + 2);
        const size_t colon = line.find(':');
        if (colon == std::string_view::npos || !is_token(line.substr(0, colon))) return false;
        out.emplace_back(lower(line.substr(0, colon)), std::string(trim(line.substr(colon + 1))));
    }
    return true;
}

std::optional<std::string_view> find_header(const std::vector<std::pair<std::string, std::string>>& h,
                                            std::string_view name) {
    for (const auto& [k, v] : h)
        if (k == name) return std::string_view(v);
    return std::nullopt;
}

} // namespace

std::optional<std::string_view> HttpRequest::header(std::string_view name) const { return find_header(headers, name); }
std::optional<std::string_view> HttpResponseHead::header(std::string_view name) const {
    return find_header(headers, name);
}

ParseResult parse_request(std::string_view buf) {
    // Tolerate blank lines before a request (RFC 9112 2.2).
    size_t skip = 0;
    while (buf.substr(skip).starts_with("\r\n")) skip += 2;
    const std::string_view msg = buf.substr(skip);
    const size_t head_end = msg.find("\r\n\r\n");
    if (head_end == std::string_view::npos) {
        if (msg.size() > kMaxHeaderBytes) return bad(431, "request header fields too large");
        return {};
    }
    if (head_end + 4 > kMaxHeaderBytes) return bad(431, "request header fields too large");
    const std::string_view head = msg.substr(0, head_end);
    const size_t line_end = head.find("\r\n");
    const std::string_view line = head.substr(0, line_end);
    const std::string_view header_lines = line_end == std::string_view::npos ? std::string_view{} : head.substr(line_end + 2);

    ParseResult r;
    HttpRequest& req = r.request;
    // request-line = method SP request-target SP HTTP-version
    const size_t sp1 = line.find(' ');
    const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos)
        return bad(400, "malformed request line");
    req.method = std::string(line.substr(0, sp1));
    req.target = std::string(line.substr(sp1 + 1, sp2 - sp1 - 1));
    const std::string_view version = line.substr(sp2 + 1);
    if (!is_token(req.method)) return bad(400, "malformed method");
    if (req.target.empty() || req.target.front() != '/') return bad(400, "the request target must be a path");
    if (version != "HTTP/1.1" && version != "HTTP/1.0") {
        if (version.starts_with("HTTP/")) return bad(505, fmt::format("{} is not supported", version));
        return bad(400, "malformed HTTP version");
    }
    const size_t q = req.target.find('?');
    req.path = req.target.substr(0, q);
    if (q != std::string::npos) req.query = req.target.substr(q + 1);
    if (!parse_header_lines(header_lines, req.headers)) return bad(400, "malformed header line");

    const auto connection = req.header("connection");
    req.keep_alive = version == "HTTP/1.1";
    if (connection) {
        const std::string c = lower(*connection);
        if (c.find("close") != std::string::npos) req.keep_alive = false;
        else if (c.find("keep-alive") != std::string::npos) req.keep_alive = true;
    }
    if (req.header("transfer-encoding")) return bad(501, "chunked request bodies are not supported; send Content-Length");
    size_t length = 0;
    if (const auto cl = req.header("content-length")) {
        const auto n = parse_size(*cl);
        if (!n) return bad(400, "malformed Content-Length");
        // Several Content-Length headers must agree (RFC 9112 6.3).
        for (const auto& [k, v] : req.headers)
            if (k == "content-length" && v != *cl) return bad(400, "conflicting Content-Length headers");
        if (*n > kMaxBodyBytes) return bad(413, fmt::format("the body is larger than {} bytes", kMaxBodyBytes));
        length = *n;
    }
    const size_t body_at = skip + head_end + 4;
    if (buf.size() < body_at + length) return {};
    req.body = std::string(buf.substr(body_at, length));
    r.kind = ParseResult::Kind::Done;
    r.consumed = body_at + length;
    return r;
}

std::string_view reason_phrase(int status) {
    switch (status) {
    case 200: return "OK";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

std::string serialize(const HttpResponse& r, bool keep_alive) {
    std::string out = fmt::format("HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n", r.status,
                                  reason_phrase(r.status), r.content_type, r.body.size());
    for (const auto& [k, v] : r.headers) out += fmt::format("{}: {}\r\n", k, v);
    out += keep_alive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
    out += r.body;
    return out;
}

std::string serialize_stream_head(int status, std::string_view content_type) {
    return fmt::format("HTTP/1.1 {} {}\r\nContent-Type: {}\r\nTransfer-Encoding: chunked\r\nCache-Control: no-cache\r\n"
                       "Connection: close\r\n\r\n",
                       status, reason_phrase(status), content_type);
}

std::string chunk(std::string_view data) { return fmt::format("{:x}\r\n{}\r\n", data.size(), data); }

HttpResponse error_response(int status, std::string_view message) {
    HttpResponse r;
    r.status = status;
    r.body = nlohmann::json{{"error", std::string(message)}, {"status", status}}.dump() + "\n";
    return r;
}

std::pair<std::optional<HttpResponseHead>, std::string> parse_response_head(std::string_view buf) {
    const size_t end = buf.find("\r\n\r\n");
    if (end == std::string_view::npos) return {std::nullopt, buf.size() > kMaxHeaderBytes ? "response head too large" : ""};
    const std::string_view head = buf.substr(0, end);
    const size_t line_end = head.find("\r\n");
    const std::string_view line = head.substr(0, line_end);
    HttpResponseHead h;
    h.head_bytes = end + 4;
    if (!line.starts_with("HTTP/1.") || line.size() < 12 || line[8] != ' ') return {std::nullopt, "malformed status line"};
    const auto status = parse_size(line.substr(9, 3));
    if (!status) return {std::nullopt, "malformed status code"};
    h.status = static_cast<int>(*status);
    if (line_end != std::string_view::npos && !parse_header_lines(head.substr(line_end + 2), h.headers))
        return {std::nullopt, "malformed header line"};
    if (const auto cl = h.header("content-length")) {
        h.content_length = parse_size(*cl);
        if (!h.content_length) return {std::nullopt, "malformed Content-Length"};
    }
    if (const auto te = h.header("transfer-encoding")) h.chunked = lower(*te).find("chunked") != std::string::npos;
    return {h, ""};
}

size_t decode_chunks(std::string_view buf, std::string& out, bool& done, bool& bad) {
    size_t used = 0;
    while (!done && !bad) {
        const std::string_view rest = buf.substr(used);
        const size_t eol = rest.find("\r\n");
        if (eol == std::string_view::npos) break;
        std::string_view size_field = rest.substr(0, eol);
        if (const size_t semi = size_field.find(';'); semi != std::string_view::npos) size_field = size_field.substr(0, semi);
        const auto n = parse_size(trim(size_field), 16);
        if (!n || *n > (1u << 30)) {
            bad = true;
            break;
        }
        if (rest.size() < eol + 2 + *n + 2) break;
        if (rest.substr(eol + 2 + *n, 2) != "\r\n") {
            bad = true;
            break;
        }
        out.append(rest.substr(eol + 2, *n));
        used += eol + 2 + *n + 2;
        if (*n == 0) done = true; // no trailers are sent by Kiln's server
    }
    return used;
}

} // namespace kiln::api
