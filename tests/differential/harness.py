"""The differential suite's parts: the two servers side by side, real targets, raw clients.

Everything talks over real sockets on 127.0.0.1 (or Unix sockets in a temporary directory);
every wait is bounded. Only the standard library is used, so the suite runs with the same
Python that runs the reference.
"""

import base64
import hashlib
import os
import signal
import socket
import struct
import subprocess
import threading
import time

WAIT = 10.0  # the bound on any single wait, seconds


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Impl:
    """One implementation: how to run it."""

    def __init__(self, name, argv):
        self.name = name
        self.argv = argv

    def __repr__(self):
        return self.name


class Server:
    """A running websockify (ours or the reference), listening on 127.0.0.1:port."""

    def __init__(self, impl, args, cwd=None, env=None):
        self.impl = impl
        self.port = free_port()
        self.listen = f"127.0.0.1:{self.port}"
        argv = impl.argv + [
            a.replace("{listen}", self.listen).replace("{port}", str(self.port)) for a in args
        ]
        self.log_path = os.path.join(scratch(), f"{impl.name}-{self.port}.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + WAIT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{impl.name} exited at start-up: {self.output()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"{impl.name} did not listen within {WAIT}s")
                time.sleep(0.05)

    def output(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(WAIT)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(WAIT)
        self.log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def run_briefly(impl, args, seconds=3.0, env=None, capture=True):
    """Runs `impl ARGS` expecting it to exit by itself: (exit status, output). A process still
    running after `seconds` is stopped and reported as status None. Without `capture`, output
    is discarded (a daemon would hold the pipes open)."""
    out = subprocess.PIPE if capture else subprocess.DEVNULL
    proc = subprocess.Popen(
        impl.argv + args,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=out,
        env=env,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=seconds)
        return proc.returncode, text(out), text(err)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=WAIT)
        return None, text(out), text(err)


def text(output):
    return (output or b"").decode("utf-8", "replace")


_scratch = None


def scratch():
    """A temporary directory for this run (sockets, token files, logs)."""
    global _scratch
    if _scratch is None:
        import tempfile

        _scratch = tempfile.mkdtemp(prefix="websockify-diff-")
    return _scratch


# ---- targets ----


class Target:
    """A TCP (or Unix) server on a thread; `handler(conn)` runs per connection on its own thread."""

    def __init__(self, handler, unix_path=None):
        if unix_path:
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.bind(unix_path)
            self.addr = unix_path
        else:
            self.sock = socket.socket()
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind(("127.0.0.1", 0))
            self.addr = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.sock.listen(64)
        self.accepted = 0
        self.handler = handler
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        conn.settimeout(WAIT * 3)
        try:
            self.handler(conn)
        except OSError:
            pass
        finally:
            conn.close()


def echo(conn):
    while True:
        data = conn.recv(65536)
        if not data:
            return
        conn.sendall(data)


def named(name):
    """A target that says its name, then echoes: a client learns where it arrived."""

    def handler(conn):
        conn.sendall(name.encode() + b"\n")
        echo(conn)

    return handler


def says_and_closes(text):
    def handler(conn):
        conn.sendall(text)
        conn.shutdown(socket.SHUT_WR)
        try:
            conn.recv(1)
        except OSError:
            pass

    return handler


# ---- clients ----


class Response:
    """An HTTP answer: status, headers (lower-case names), body, and whether the server
    closed the connection after it."""

    def __init__(self, status, headers, body, closed):
        self.status = status
        self.headers = headers
        self.body = body
        self.closed = closed

    def header(self, name):
        return self.headers.get(name.lower())


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    s.settimeout(WAIT)
    return s


def read_head(sock):
    """Reads up to the end of the head; returns (status, headers, rest). Status 0 when the
    server closed without answering."""
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = sock.recv(4096)
        except (ConnectionResetError, socket.timeout):
            chunk = b""
        if not chunk:
            return 0, {}, data
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else -1
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return status, headers, rest


def until_closed(sock, rest=b"", limit=1 << 20, seconds=3.0):
    """Reads until the server closes (True) or `seconds` pass with it still open (False)."""
    body = rest
    sock.settimeout(seconds)
    try:
        while len(body) < limit:
            chunk = sock.recv(65536)
            if not chunk:
                return body, True
            body += chunk
    except ConnectionResetError:
        return body, True
    except socket.timeout:
        return body, False
    return body, False


def http(port, raw):
    """Sends a raw request; the answer, read until the server closes or stays quiet."""
    with connect(port) as s:
        s.sendall(raw)
        status, headers, rest = read_head(s)
        if status == 0:
            return Response(0, {}, b"", True)
        length = headers.get("content-length")
        if length is not None and length.isdigit():
            body = rest
            while len(body) < int(length):
                chunk = s.recv(65536)
                if not chunk:
                    return Response(status, headers, body, True)
                body += chunk
            _, closed = until_closed(s, b"", seconds=1.0)
            return Response(status, headers, body, closed)
        body, closed = until_closed(s, rest)
        return Response(status, headers, body, closed)


KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def accept_for(key):
    digest = hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
    return base64.b64encode(digest).decode()


def upgrade_request(path="/", protocol="binary", extra="", key=KEY, version="13"):
    lines = [
        f"GET {path} HTTP/1.1",
        "Host: localhost",
        "Upgrade: websocket",
        "Connection: Upgrade",
    ]
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    if version is not None:
        lines.append(f"Sec-WebSocket-Version: {version}")
    if protocol is not None:
        lines.append(f"Sec-WebSocket-Protocol: {protocol}")
    raw = "\r\n".join(lines) + "\r\n" + extra + "\r\n"
    return raw.encode("latin-1")


class WebSocket:
    """A raw WebSocket client: upgrade, masked frames out, frames in."""

    def __init__(self, port, path="/", protocol="binary", extra=""):
        self.sock = connect(port)
        self.sock.sendall(upgrade_request(path, protocol, extra))
        self.status, self.headers, self.buf = read_head(self.sock)

    def send(self, opcode, payload, fin=True, mask=b"\x01\x02\x03\x04"):
        head = bytes([(0x80 if fin else 0) | opcode])
        n = len(payload)
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def _need(self, n):
        while len(self.buf) < n:
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                chunk = b""
            if not chunk:
                return False
            self.buf += chunk
        return True

    def frame(self):
        """The next frame as (opcode, payload), or None when the connection ended."""
        if not self._need(2):
            return None
        b0, b1 = self.buf[0], self.buf[1]
        n = b1 & 0x7F
        at = 2
        if n == 126:
            if not self._need(4):
                return None
            n = struct.unpack(">H", self.buf[2:4])[0]
            at = 4
        elif n == 127:
            if not self._need(10):
                return None
            n = struct.unpack(">Q", self.buf[2:10])[0]
            at = 10
        if not self._need(at + n):
            return None
        payload = self.buf[at : at + n]
        self.buf = self.buf[at + n :]
        return b0 & 0x0F, payload

    def data(self, n):
        """Payload bytes of data frames until `n` have come (or the session ended)."""
        got = b""
        while len(got) < n:
            f = self.frame()
            if f is None or f[0] == 8:
                break
            if f[0] in (0, 1, 2):
                got += f[1]
        return got

    def close_frame(self):
        """(code, reason) of the next close frame, skipping data; None if the connection ended
        without one."""
        while True:
            f = self.frame()
            if f is None:
                return None
            if f[0] == 8:
                p = f[1]
                if len(p) >= 2:
                    return struct.unpack(">H", p[:2])[0], p[2:].decode("utf-8", "replace")
                return (1005, "")

    def close(self):
        self.sock.close()
