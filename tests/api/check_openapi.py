#!/usr/bin/python3
"""Checks a running kiln's control API against docs/api/openapi.yaml.

Boots the test guest with --api-sock, calls every documented operation (and some
malformed requests), and checks each answer: its status is one the document lists for
that operation, and its body validates against the schema the document gives for that
status (python3-jsonschema; the events stream line by line). Also: every documented
operation was exercised, and undocumented paths answer 404 with an Error body.

usage: check_openapi.py --kiln KILN --guest TESTGUEST_ELF --spec docs/api/openapi.yaml
Prints one line per check; exits 0 when all pass.
"""
import argparse
import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import jsonschema
import yaml

FAILURES = []
EXERCISED = set()


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILURES.append(what)


def http(sock_path, method, target, body=None, raw=None):
    """One request on its own connection; returns (status, headers, body bytes)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(sock_path)
    if raw is None:
        data = body.encode() if isinstance(body, str) else (body or b"")
        raw = (f"{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
               + (f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n" if body is not None else "")
               + "\r\n").encode() + data
    s.sendall(raw)
    buf = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    s.close()
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        rest = dechunk(rest)
    return status, headers, rest


def dechunk(data):
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        n = int(size_line, 16)
        if n == 0:
            break
        out += data[:n]
        data = data[n + 2:]
    return out


class Spec:
    def __init__(self, path):
        with open(path) as f:
            self.doc = yaml.safe_load(f)
        self.resolver = jsonschema.RefResolver.from_schema(self.doc)

    def check_error(self, status, headers, body):
        """An answer outside the documented operations: an Error body."""
        try:
            jsonschema.validate(json.loads(body), {"$ref": "#/components/schemas/Error"}, resolver=self.resolver)
            return headers.get("content-type", "").startswith("application/json")
        except (jsonschema.ValidationError, ValueError):
            return False

    def operations(self):
        for path, ops in self.doc["paths"].items():
            for method in ops:
                yield method.upper(), path

    def validate(self, method, path, status, content_type, body):
        """The status is documented for the operation and the body fits its schema."""
        op = self.doc["paths"].get(path, {}).get(method.lower())
        if op is None:
            return f"{method} {path} is not documented"
        EXERCISED.add((method, path))
        resp = op["responses"].get(str(status)) or op["responses"].get(f"{status // 100}XX")
        if resp and "$ref" in resp:
            resp = self.resolver.resolve(resp["$ref"])[1]
        if resp is None:
            return f"{method} {path}: status {status} is not documented ({sorted(op['responses'])})"
        media = content_type.split(";")[0].strip()
        content = resp.get("content", {})
        if media not in content:
            return f"{method} {path} {status}: content type {media} not documented ({sorted(content)})"
        schema = content[media]["schema"]
        try:
            if media == "application/json":
                jsonschema.validate(json.loads(body), schema, resolver=self.resolver)
            elif media == "application/x-ndjson":
                for line in body.decode().splitlines():
                    jsonschema.validate(json.loads(line), schema, resolver=self.resolver)
            else:
                jsonschema.validate(body.decode(), schema, resolver=self.resolver)
        except (jsonschema.ValidationError, ValueError) as e:
            return f"{method} {path} {status}: body does not match the schema: {str(e).splitlines()[0]}"
        return None


def call(spec, sock, method, path, body=None, expect=None, target=None):
    status, headers, data = http(sock, method, target or path, body)
    err = spec.validate(method, path, status, headers.get("content-type", ""), data)
    label = f"{method} {target or path}" + (f" {body}" if body is not None else "") + f" -> {status}"
    check(err is None, label + ("" if err is None else f": {err}"))
    if expect is not None:
        check(status == expect, f"{label}: expected {expect}")
    return status, data


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kiln", required=True)
    ap.add_argument("--guest", required=True)
    ap.add_argument("--spec", required=True)
    args = ap.parse_args()
    spec = Spec(args.spec)
    check(spec.doc.get("openapi", "").startswith("3.0"), "the document is OpenAPI 3.0")

    tmp = tempfile.mkdtemp(prefix="kiln-openapi-")
    try:
        return check_against(spec, args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_against(spec, args, tmp):
    sock = os.path.join(tmp, "api.sock")
    kiln = subprocess.Popen([args.kiln, "run", "--kernel", args.guest, "--cmdline", "job=memfill mib=8 hold=60",
                             "--memory", "64M", "--console", "none", "--disk", "scratch=16M", "--name", "openapi",
                             "--api-sock", sock, "--timeout", "120"], stderr=subprocess.PIPE)
    # A check that throws must not leave the VM running.
    atexit.register(lambda: kiln.poll() is None and kiln.kill())
    deadline = time.time() + 20
    while not os.path.exists(sock) and time.time() < deadline:
        time.sleep(0.02)
    check(os.path.exists(sock), "the socket appears")

    # The event stream, open (its head received) before anything happens, read by a
    # thread, validated at the end.
    events = {}
    stream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stream.connect(sock)
    stream.sendall(b"GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n")
    first = stream.recv(4096)
    check(first.startswith(b"HTTP/1.1 200"), "GET /events: the stream opens")

    def read_events():
        buf = first
        while True:
            chunk = stream.recv(65536)
            if not chunk:
                break
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
        events["reply"] = (int(lines[0].split()[1]), headers, dechunk(rest))

    reader = threading.Thread(target=read_events)
    reader.start()

    status, data = call(spec, sock, "GET", "/vm", expect=200)
    check(json.loads(data)["state"] == "running", "GET /vm: running")
    call(spec, sock, "GET", "/vm/state", expect=200)
    status, data = call(spec, sock, "GET", "/vm/stats", expect=200)
    check(len(json.loads(data)["disks"]) == 1, "GET /vm/stats: one disk")
    status, data = call(spec, sock, "GET", "/metrics", expect=200)
    check(b"kiln_vm_state{" in data and b"kiln_disk_read_requests_total{" in data, "GET /metrics: state and disk families")
    call(spec, sock, "PUT", "/vm/state", '{"state": "paused"}', expect=200)
    call(spec, sock, "PUT", "/vm/state", '{"state": "paused"}', expect=200)
    status, data = call(spec, sock, "GET", "/vm", expect=200)
    check(json.loads(data)["state"] == "paused", "GET /vm: paused")
    call(spec, sock, "PUT", "/vm/state", '{"state": "running"}', expect=200)
    for bad in ['{"state": "asleep"}', '{"state": 3}', '[1]', 'not json', '{"state": "paused", "x": 1}',
                '{"state": "paused", "grace_seconds": 3}', '{"state": "stopped", "grace_seconds": -1}', '']:
        call(spec, sock, "PUT", "/vm/state", bad, expect=400)
    status, headers, data = http(sock, "POST", "/vm")
    check(status == 405 and "allow" in headers and spec.check_error(status, headers, data),
          "POST /vm -> 405 with Allow and an Error body")
    status, headers, data = http(sock, "GET", "/nope")
    check(status == 404 and spec.check_error(status, headers, data), "GET /nope -> 404 with an Error body")
    for raw, want, what in [(b"GARBAGE\r\n\r\n", 400, "a malformed request line"),
                            (b"GET /vm HTTP/2.0\r\n\r\n", 505, "HTTP/2.0"),
                            (b"PUT /vm/state HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501, "a chunked body"),
                            (b"PUT /vm/state HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", 413, "a huge body"),
                            (b"GET /vm HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n", 431, "huge headers")]:
        status, headers, data = http(sock, None, None, raw=raw)
        check(status == want and spec.check_error(status, headers, data), f"{what} -> {want} with an Error body")
    status, headers, data = http(sock, "HEAD", "/vm")
    check(status == 200 and data == b"" and int(headers["content-length"]) > 0, "HEAD /vm -> the head alone")

    call(spec, sock, "PUT", "/vm/state", '{"state": "stopped", "grace_seconds": 0.5}', expect=202)
    rc = kiln.wait(timeout=30)
    check(rc == 120, f"kiln exits 120 after the hard stop (got {rc})")
    reader.join(timeout=10)
    status, headers, data = events.get("reply", (0, {}, b""))
    err = spec.validate("GET", "/events", status, headers.get("content-type", ""), data)
    check(err is None, "GET /events" + ("" if err is None else f": {err}"))
    kinds = [json.loads(l)["event"] for l in data.decode().splitlines()]
    check(kinds == ["paused", "resumed", "stopping", "guest-exited"], f"events in order: {kinds}")
    check(not os.path.exists(sock), "the socket is removed at exit")

    for op in spec.operations():
        check(op in EXERCISED, f"{op[0]} {op[1]} exercised")
    print(f"{len(FAILURES)} failed")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())  # main() removes its temporary directory itself
