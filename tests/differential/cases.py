"""What the suite compares. Each case runs once against each implementation and returns an
observation (a short string). `@case(area, behaviour)` expects both to observe the same;
`@case(area, behaviour, ours=..., why=...)` records a difference on purpose: the reference
must observe something else (or the difference is gone and the record is stale), and ours
must observe exactly `ours`.
"""

import os
import socket
import struct
import threading
from functools import lru_cache

from harness import (
    KEY,
    Server,
    Target,
    WebSocket,
    accept_for,
    echo,
    free_port,
    http,
    named,
    run_briefly,
    says_and_closes,
    scratch,
    upgrade_request,
)

CASES = []


class Case:
    def __init__(self, area, behaviour, fn, ours, why):
        self.area = area
        self.behaviour = behaviour
        self.fn = fn
        self.ours = ours
        self.why = why


def case(area, behaviour, ours=None, why=None):
    assert (ours is None) == (why is None), behaviour

    def register(fn):
        CASES.append(Case(area, behaviour, fn, ours, why))
        return fn

    return register


# ---- shared targets (started once) ----

_targets = {}
_lock = threading.RLock()  # cases run on several threads; shared things are made once


def target(name):
    """A named target (says its name, then echoes), started on first use."""
    with _lock:
        if name not in _targets:
            _targets[name] = Target(named(name))
        return _targets[name].addr


def echo_target():
    with _lock:
        if "echo" not in _targets:
            _targets["echo"] = Target(echo)
        return _targets["echo"].addr


def closed_port():
    return f"127.0.0.1:{free_port()}"


def where(impl, args, path, **kw):
    """Which named target a WebSocket to `path` reaches, or the HTTP status it gets."""
    with Server(impl, args) as server:
        return reach(server.port, path, **kw)


def reach(port, path, extra=""):
    ws = WebSocket(port, path, extra=extra)
    try:
        if ws.status != 101:
            return f"HTTP {ws.status}" if ws.status else "closed without an answer"
        # The target says its name in one write: the first data frame carries it.
        f = ws.frame()
        while f is not None and f[0] in (9, 10):
            f = ws.frame()
        if f is None:
            return "101 then closed"
        if f[0] == 8:
            code = struct.unpack(">H", f[1][:2])[0] if len(f[1]) >= 2 else 1005
            return f"101 then close {code}"
        name = f[1].split(b"\n")[0].decode("utf-8", "replace")
        return f"reaches {name}"
    finally:
        ws.close()


def status_of(response):
    return f"HTTP {response.status}" if response.status else "closed without an answer"


# ---- command line ----


def option_args(option, tmp):
    """Arguments that make `option` meaningful on a plain `LISTEN TARGET` command line (both
    implementations accept them); None when the option needs a form of its own."""
    pem = tmp["pem"]
    table = {
        "-v": ["-v"],
        "--verbose": ["--verbose"],
        "--traffic": ["--traffic"],
        "--record": [f"--record={tmp['dir']}/rec"],
        "--run-once": ["--run-once"],
        "--timeout": ["--timeout=30"],
        "--idle-timeout": ["--idle-timeout=30"],
        "--cert": [f"--cert={pem}"],
        "--key": [f"--cert={pem}", f"--key={pem}"],
        "--key-password": [f"--cert={pem}", "--key-password=unused"],
        "--ssl-only": [f"--cert={pem}", "--ssl-only"],
        "--ssl-target": ["--ssl-target"],
        "--verify-client": [f"--cert={pem}", "--verify-client", f"--cafile={pem}"],
        "--cafile": [f"--cert={pem}", "--verify-client", f"--cafile={pem}"],
        "--ssl-version": [f"--cert={pem}", "--ssl-version=tlsv1_2"],
        "--ssl-ciphers": [f"--cert={pem}", "--ssl-ciphers=ECDHE-RSA-AES128-GCM-SHA256"],
        "--unix-target": None,
        "--unix-listen": None,
        "--unix-listen-mode": None,
        "--inetd": None,
        "--web": [f"--web={tmp['dir']}"],
        "--web-auth": [
            f"--web={tmp['dir']}",
            "--web-auth",
            "--auth-plugin=BasicHTTPAuth",
            "--auth-source=u:p",
        ],
        "--wrap-mode": ["--wrap-mode=ignore"],
        "-6": ["-6"],
        "--prefer-ipv6": ["--prefer-ipv6"],
        "--libserver": ["--libserver"],
        "--target-config": None,
        "--token-plugin": None,
        "--token-source": None,
        "--host-token": None,
        "--auth-plugin": ["--auth-plugin=BasicHTTPAuth", "--auth-source=u:p"],
        "--auth-source": ["--auth-plugin=BasicHTTPAuth", "--auth-source=u:p"],
        "--heartbeat": ["--heartbeat=30"],
        "--log-file": [f"--log-file={tmp['dir']}/log"],
        "--syslog": None,
        "--legacy-syslog": None,
        "--file-only": [f"--web={tmp['dir']}", "--file-only"],
        "-D": None,
        "--daemon": None,
        "-h": None,
        "--help": None,
    }
    return table[option]


def reference_options(ref):
    """Every option the reference's --help lists."""
    _, out, err = run_briefly(ref, ["--help"])
    options = []
    for line in (out + err).splitlines():
        # Options start at column 2; their help continues further right.
        if not line.startswith("  -"):
            continue
        stripped = line.strip()
        for word in stripped.split(",  ")[0].split(", "):
            word = word.split("=")[0].split(" ")[0]
            if word.startswith("-"):
                options.append(word)
    return options


def make_pem(path):
    """A self-signed certificate and key in one file (openssl is a test tool here)."""
    import subprocess

    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=localhost", "-keyout", path, "-out", path + ".crt",
        ],
        check=True,
        capture_output=True,
    )
    with open(path, "a") as f, open(path + ".crt") as crt:
        f.write(crt.read())


_tmp = None


def tmp():
    global _tmp
    with _lock:
        return _make_tmp()


def _make_tmp():
    global _tmp
    if _tmp is None:
        d = os.path.join(scratch(), "cli")
        os.makedirs(d, exist_ok=True)
        pem = os.path.join(d, "self.pem")
        make_pem(pem)
        with open(os.path.join(d, "index.html"), "w") as f:
            f.write("<p>hello</p>\n")
        _tmp = {"dir": d, "pem": pem}
    return _tmp


def starts(impl, args):
    try:
        with Server(impl, args):
            return "starts and listens"
    except RuntimeError as e:
        return "refused at start-up" if "exited" in str(e) else str(e)


OPTIONS_OF_THE_REFERENCE = []  # filled by the runner from the reference's --help


def option_case(option):
    def run(impl):
        args = option_args(option, tmp())
        return starts(impl, args + ["{listen}", echo_target()])

    return run


def register_option_cases(ref):
    for option in reference_options(ref):
        try:
            args = option_args(option, tmp())
        except KeyError:
            raise SystemExit(f"the reference has an option the suite does not know: {option}")
        if args is None:
            continue  # covered by a case of its own below
        CASES.append(
            Case("command line", f"`{option}` on a `LISTEN TARGET` command line", option_case(option), None, None)
        )


@case("command line", "`--unix-target=FILE LISTEN` proxies to a Unix socket")
def unix_target(impl):
    path = os.path.join(scratch(), f"unix-target-{impl.name}")
    if not os.path.exists(path):
        Target(named("unix"), unix_path=path)
    return where(impl, [f"--unix-target={path}", "{listen}"], "/")


@case("command line", "`--unix-listen=FILE` (no LISTEN) serves on a Unix socket")
def unix_listen(impl):
    import subprocess
    import time

    path = os.path.join(scratch(), f"unix-listen-{impl.name}")
    proc = subprocess.Popen(
        impl.argv + [f"--unix-listen={path}", target("A")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.05)
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(path)
        s.sendall(upgrade_request("/"))
        data = b""
        while b"A\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        s.close()
        mode = oct(os.stat(path).st_mode & 0o777)
        return f"{data.split(b' ')[1].decode()} and reaches A; socket mode {mode}"
    finally:
        proc.kill()
        proc.wait()


@case("command line", "`[::1]:PORT` (brackets) as the target")
def bracketed_target(impl):
    t = Target(named("v6"))
    port = t.addr.rsplit(":", 1)[1]
    # The named target listens on 127.0.0.1 only; ::1 would be refused: use IPv4 in brackets.
    return where(impl, ["{listen}", f"[127.0.0.1]:{port}"], "/")


for _flags, _why in [
    (["--token-source=x"], "--token-source without --token-plugin"),
    (["--host-token"], "--host-token without --token-plugin"),
    (["--auth-source=x"], "--auth-source without --auth-plugin"),
    (["--legacy-syslog"], "--legacy-syslog without --syslog"),
    (["--web-auth", "--web=/tmp"], "--web-auth without --auth-plugin"),
]:

    def _refused(impl, flags=_flags):
        status, out, err = run_briefly(impl, flags + ["{0}".format(f"127.0.0.1:{free_port()}"), echo_target()])
        return f"exit {status}, message on stderr: {bool(err.strip())}"

    CASES.append(Case("command line", f"refused: {_why}", _refused, None, None))


@case("command line", "no arguments at all")
def no_arguments(impl):
    status, out, err = run_briefly(impl, [])
    return f"exit {status}, usage shown: {'Usage' in out + err or 'usage' in out + err}"


@case(
    "command line",
    "the listening port is already in use",
    ours="exit 1",
    why="the reference logs the error and exits 0, hiding the failure from scripts and "
    "service managers",
)
def port_in_use(impl):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        status, _, _ = run_briefly(impl, [f"127.0.0.1:{port}", echo_target()])
    return f"exit {status}"


# ---- HTTP ----


def answer(impl, raw, args=None):
    with Server(impl, args or ["{listen}", echo_target()]) as server:
        r = http(server.port, raw)
    return r


@case("HTTP", "a good upgrade: status, Upgrade, Connection, Sec-WebSocket-Accept, protocol")
def good_upgrade(impl):
    with Server(impl, ["{listen}", echo_target()]) as server:
        ws = WebSocket(server.port)
        h = ws.headers
        ws.close()
    return (
        f"{ws.status}; upgrade={h.get('upgrade', '').lower()}; "
        f"connection={h.get('connection', '').lower()}; "
        f"accept ok={h.get('sec-websocket-accept') == accept_for(KEY)}; "
        f"protocol={h.get('sec-websocket-protocol')}"
    )


def _upgrade_variant(name, raw):
    def run(impl):
        return status_of(answer(impl, raw))

    CASES.append(Case("HTTP", name, run, None, None))


_upgrade_variant("upgrade without Sec-WebSocket-Key", upgrade_request(key=None))
_upgrade_variant("upgrade with Sec-WebSocket-Version 12", upgrade_request(version="12"))
_upgrade_variant("upgrade without Sec-WebSocket-Version", upgrade_request(version=None))


@case("HTTP", "GET / without --web")
def get_without_web(impl):
    return status_of(answer(impl, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"))


@case("HTTP", "HEAD / without --web")
def head_without_web(impl):
    return status_of(answer(impl, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"))


@case(
    "HTTP",
    "POST /",
    ours="HTTP 405",
    why="405 Method Not Allowed is the precise answer for a method the server knows but does "
    "not allow; the reference's 501 says the method is unknown",
)
def post(impl):
    return status_of(answer(impl, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"))


def web_args():
    return [f"--web={tmp()['dir']}", "{listen}", echo_target()]


@case("HTTP", "--web: GET an existing file (status, type, length, body)")
def web_file(impl):
    r = answer(impl, b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n", web_args())
    ctype = (r.header("content-type") or "").split(";")[0]
    return f"{status_of(r)}; {ctype}; length {r.header('content-length')}; body {r.body!r}"


@case("HTTP", "--web: GET a missing file")
def web_missing(impl):
    return status_of(answer(impl, b"GET /nope.html HTTP/1.1\r\nHost: x\r\n\r\n", web_args()))


@case("HTTP", "--web: GET a directory without a slash")
def web_dir_redirect(impl):
    os.makedirs(os.path.join(tmp()["dir"], "sub"), exist_ok=True)
    r = answer(impl, b"GET /sub HTTP/1.1\r\nHost: x\r\n\r\n", web_args())
    return f"{status_of(r)}; location {r.header('location')}"


@case("HTTP", "--web: a directory listing names the files")
def web_listing(impl):
    d = os.path.join(tmp()["dir"], "listed")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "page.txt"), "w") as f:
        f.write("x")
    r = answer(impl, b"GET /listed/ HTTP/1.1\r\nHost: x\r\n\r\n", web_args())
    return f"{status_of(r)}; lists page.txt: {b'page.txt' in r.body}"


@case("HTTP", "--web --file-only: a directory")
def web_file_only(impl):
    args = ["--file-only"] + web_args()
    os.makedirs(os.path.join(tmp()["dir"], "sub"), exist_ok=True)
    return status_of(answer(impl, b"GET /sub/ HTTP/1.1\r\nHost: x\r\n\r\n", args))


# ---- WebSocket ----


def protocol_answer(impl, offer):
    with Server(impl, ["{listen}", echo_target()]) as server:
        ws = WebSocket(server.port, protocol=offer)
        ws.close()
    if ws.status != 101:
        return f"HTTP {ws.status}"
    return f"101, protocol {ws.headers.get('sec-websocket-protocol')}"


@case("WebSocket", "subprotocol offer `binary`")
def offer_binary(impl):
    return protocol_answer(impl, "binary")


@case("WebSocket", "no subprotocol offered")
def offer_none(impl):
    return protocol_answer(impl, None)


@case("WebSocket", "subprotocol offer `binary, base64`")
def offer_both(impl):
    return protocol_answer(impl, "binary, base64")


@case(
    "WebSocket",
    "subprotocol offer `base64` alone",
    ours="101, protocol base64",
    why="the seed and the old C websockify speak `base64` (each message base64 text); the "
    "reference dropped it in 0.9.0, we keep it for old clients",
)
def offer_base64(impl):
    return protocol_answer(impl, "base64")


@case(
    "WebSocket",
    "an unknown subprotocol offered (`chat`)",
    ours="101, protocol None",
    why="RFC 6455 lets a server accept without choosing any offered protocol; refusing with "
    "400 breaks clients that offer protocols of their own",
)
def offer_unknown(impl):
    return protocol_answer(impl, "chat")


@case("WebSocket", "binary payload both ways (1, 125, 126, 65536 and 200,000 bytes)")
def payload_both_ways(impl):
    with Server(impl, ["{listen}", echo_target()]) as server:
        ws = WebSocket(server.port)
        results = []
        for n in (1, 125, 126, 65536, 200_000):
            data = bytes((i * 7 + n) % 256 for i in range(n))
            ws.send(2, data)
            results.append(ws.data(n) == data)
        ws.close()
    return f"echoed intact: {results}"


@case("WebSocket", "a ping is answered by a pong with the same payload")
def ping_pong(impl):
    with Server(impl, ["{listen}", echo_target()]) as server:
        ws = WebSocket(server.port)
        ws.send(9, b"are you there")
        f = ws.frame()
        ws.close()
    return f"opcode {f[0]}, payload {f[1]!r}" if f else "no answer"


@case("WebSocket", "the client closes with 1000: the close is echoed")
def client_close(impl):
    with Server(impl, ["{listen}", echo_target()]) as server:
        ws = WebSocket(server.port)
        ws.send(8, struct.pack(">H", 1000) + b"bye")
        closed = ws.close_frame()
        ws.close()
    return f"close {closed[0]}" if closed else "no close frame"


@case("WebSocket", "the target closes: the client gets close 1000 with a reason")
def target_closes(impl):
    t = Target(says_and_closes(b"bye"))
    with Server(impl, ["{listen}", t.addr]) as server:
        ws = WebSocket(server.port)
        data = ws.data(3)
        closed = ws.close_frame()
        ws.close()
    return f"data {data!r}; close {closed}" if closed else f"data {data!r}; no close frame"


@case(
    "WebSocket",
    "the target refuses the connection",
    ours="HTTP 502",
    why="we connect to the target before answering 101, so the failure is an HTTP status "
    "(502) the browser and the logs can show; the reference answers 101 and then closes "
    "with 1011",
)
def target_refused(impl):
    with Server(impl, ["{listen}", closed_port()]) as server:
        ws = WebSocket(server.port)
        if ws.status != 101:
            ws.close()
            return f"HTTP {ws.status}"
        closed = ws.close_frame()
        ws.close()
    return f"101 then close {closed[0]}" if closed else "101 then closed"


@case("WebSocket", "an unmasked frame from the client")
def unmasked(impl):
    with Server(impl, ["{listen}", echo_target()]) as server:
        ws = WebSocket(server.port)
        ws.sock.sendall(b"\x82\x02hi")
        f = ws.frame()
        while f is not None and f[0] != 8:
            f = ws.frame()
        ws.close()
    if f is None:
        return "connection dropped without a close"
    return f"close {struct.unpack('>H', f[1][:2])[0]}"


@case(
    "WebSocket",
    "a text frame from the client",
    ours="forwarded: b'hello'",
    why="noVNC and other clients send text frames; we forward their UTF-8 bytes as the seed "
    "did, where the reference drops the connection",
)
def text_frame(impl):
    with Server(impl, ["{listen}", echo_target()]) as server:
        ws = WebSocket(server.port)
        ws.send(1, b"hello")
        got = ws.data(5)
        ws.close()
    return f"forwarded: {got!r}" if got else "not forwarded"


# ---- tokens ----

TOKEN_LINES = """\
# comment line, then a blank one

plain: {A}
tabbed:\t{B}
spaced   :   {A}
colon:in:token: {B}
last-colon: {A_host}:{A_port}
"""


def token_file():
    with _lock:
        return _token_file()


@lru_cache(maxsize=None)
def _token_file():
    path = os.path.join(scratch(), "tokens.cfg")
    a_host, a_port = target("A").rsplit(":", 1)
    with open(path, "w") as f:
        f.write(TOKEN_LINES.format(A=target("A"), B=target("B"), A_host=a_host, A_port=a_port))
    return path


for _token in ["plain", "tabbed", "spaced", "spaced%20%20%20", "colon:in:token", "colon", "last-colon"]:

    def _lookup(impl, token=_token):
        seen = where(impl, ["--token-plugin=TokenFile", f"--token-source={token_file()}", "{listen}"], f"/?token={token}")
        # How "not found" is told differs on purpose (the unknown-token case): here only
        # whether the line gave the token matters.
        return "not found" if seen in ("HTTP 404", "closed without an answer") else seen

    CASES.append(Case("tokens", f"TokenFile line quirks: token `{_token}`", _lookup, None, None))


@case(
    "tokens",
    "TokenFile: an unknown token",
    ours="HTTP 404",
    why="the reference closes without a word; a 404 tells the user and the logs what happened",
)
def unknown_token(impl):
    return where(impl, ["--token-plugin=TokenFile", f"--token-source={token_file()}", "{listen}"], "/?token=nope")


@case("tokens", "`--target-config FILE` (the deprecated alias)")
def target_config(impl):
    return where(impl, [f"--target-config={token_file()}", "{listen}"], "/?token=plain")


@case("tokens", "the dotted plugin name `websockify.token_plugins.TokenFile`")
def dotted_name(impl):
    return where(
        impl,
        ["--token-plugin=websockify.token_plugins.TokenFile", f"--token-source={token_file()}", "{listen}"],
        "/websockify?token=tabbed",
    )


@case("tokens", "TokenFile: a directory of token files")
def token_dir(impl):
    d = os.path.join(scratch(), "token-dir")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "one"), "w") as f:
        f.write(f"first: {target('A')}\n")
    with open(os.path.join(d, "two"), "w") as f:
        f.write(f"second: {target('B')}\n")
    args = ["--token-plugin=TokenFile", f"--token-source={d}", "{listen}"]
    with Server(impl, args) as server:
        return f"{reach(server.port, '/?token=first')}, {reach(server.port, '/?token=second')}"


@case("tokens", "TokenFile: a `unix_socket:` target")
def token_unix(impl):
    path = os.path.join(scratch(), f"token-unix-{impl.name}")
    if not os.path.exists(path):
        Target(named("unix"), unix_path=path)
    f = os.path.join(scratch(), f"unix-tokens-{impl.name}")
    with open(f, "w") as out:
        out.write(f"sock: unix_socket:{path}\n")
    return where(impl, ["--token-plugin=TokenFile", f"--token-source={f}", "{listen}"], "/?token=sock")


@case("tokens", "TokenFile: edits apply without a restart")
def token_edit(impl):
    import time

    f = os.path.join(scratch(), f"edited-{impl.name}")
    with open(f, "w") as out:
        out.write(f"desk: {target('A')}\n")
    args = ["--token-plugin=TokenFile", f"--token-source={f}", "{listen}"]
    with Server(impl, args) as server:
        before = reach(server.port, "/?token=desk")
        time.sleep(1.1)  # a new modification time, whatever the file system's resolution
        with open(f, "w") as out:
            out.write(f"desk: {target('B')}\n")
        after = reach(server.port, "/?token=desk")
    return f"{before}, then {after}"


@case("tokens", "`--host-token`: the Host header (without its port) is the token")
def host_token(impl):
    f = os.path.join(scratch(), "host-tokens")
    with open(f, "w") as out:
        out.write(f"desk-a.example: {target('A')}\n")
    args = ["--token-plugin=TokenFile", f"--token-source={f}", "--host-token", "{listen}"]
    with Server(impl, args) as server:
        ws = WebSocket(server.port, "/", extra="")
        ws.close()
        s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        raw = upgrade_request("/").replace(b"Host: localhost", b"Host: desk-a.example:6080")
        s.sendall(raw)
        data = b""
        while b"A\n" not in data and len(data) < 4096:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        s.close()
    return "reaches A" if b"A\n" in data else f"got {data[:40]!r}"


@case("tokens", "TokenFileName: the token names a file holding `host:port`")
def token_file_name(impl):
    d = os.path.join(scratch(), "token-names")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "desk"), "w") as f:
        f.write(target("B"))
    return where(impl, ["--token-plugin=TokenFileName", f"--token-source={d}", "{listen}"], "/?token=desk")


# ---- auth ----


def basic(user_pass):
    import base64 as b64

    return "Authorization: Basic " + b64.b64encode(user_pass).decode() + "\r\n"


def auth_status(impl, plugin, source, extra):
    args = [f"--auth-plugin={plugin}", f"--auth-source={source}", "{listen}", target("A")]
    with Server(impl, args) as server:
        r = http(server.port, upgrade_request("/", extra=extra))
    text = status_of(r)
    if r.header("www-authenticate"):
        text += f"; WWW-Authenticate: {r.header('www-authenticate')}"
    return text


for _name, _extra in [
    ("right credentials", basic(b"admin:s3cret")),
    ("wrong password", basic(b"admin:nope")),
    ("no Authorization header", ""),
    ("not base64", "Authorization: Basic !!!\r\n"),
    ("no colon in the credentials", basic(b"admins3cret")),
]:

    def _basic(impl, extra=_extra):
        return auth_status(impl, "BasicHTTPAuth", "admin:s3cret", extra)

    CASES.append(Case("auth", f"BasicHTTPAuth: {_name}", _basic, None, None))

for _name, _extra in [
    ("a listed Origin", "Origin: https://desk.example\r\n"),
    ("another Origin", "Origin: https://evil.example\r\n"),
    ("no Origin", ""),
]:

    def _origin(impl, extra=_extra):
        return auth_status(impl, "ExpectOrigin", "https://desk.example https://other.example", extra)

    CASES.append(Case("auth", f"ExpectOrigin: {_name}", _origin, None, None))


# ---- tokens from a backend ----


class _Redis:
    """One real redis-server for the run, on a free loopback port."""

    def __init__(self):
        import subprocess

        self.port = free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import atexit
        import time

        atexit.register(self.proc.kill)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start")
                time.sleep(0.05)

    def set(self, db, key, value):
        import subprocess

        subprocess.run(
            ["redis-cli", "-p", str(self.port), "-n", str(db), "SET", key, value],
            check=True,
            capture_output=True,
        )


@lru_cache(maxsize=None)
def _redis():
    r = _Redis()
    a_host, a_port = target("A").rsplit(":", 1)
    r.set(0, "json", '{"host": "%s:%s"}' % (a_host, a_port))
    r.set(0, "plain", target("B"))
    r.set(3, "app:desk", target("A"))
    return r


def redis():
    with _lock:
        return _redis()


for _name, _source, _token in [
    ("a JSON value", "{host}:{port}", "json"),
    ("a plain `host:port` value", "{host}:{port}", "plain"),
    ("database 3 and namespace `app`", "{host}:{port}:3::app", "desk"),
]:

    def _from_redis(impl, source=_source, token=_token):
        r = redis()
        src = source.format(host="127.0.0.1", port=r.port)
        return where(impl, ["--token-plugin=TokenRedis", f"--token-source={src}", "{listen}"], f"/?token={token}")

    CASES.append(Case("tokens", f"TokenRedis: {_name}", _from_redis, None, None))


class _Api:
    """A token API on a thread: /t/<token> answers the target as text or JSON."""

    def __init__(self):
        import http.server
        import json

        replies = {
            "/text/desk": target("A").encode(),
            "/json/desk": json.dumps(
                {"host": target("B").rsplit(":", 1)[0], "port": int(target("B").rsplit(":", 1)[1])}
            ).encode(),
        }

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = replies.get(self.path)
                self.send_response(200 if body else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@lru_cache(maxsize=None)
def _api():
    return _Api()


def api():
    with _lock:
        return _api()


@case("tokens", "BaseTokenAPI: the API answers `host:port`")
def base_token_api(impl):
    src = f"http://127.0.0.1:{api().port}/text/%s"
    return where(impl, ["--token-plugin=BaseTokenAPI", f"--token-source={src}", "{listen}"], "/?token=desk")


@case("tokens", "JSONTokenApi: the API answers `{\"host\", \"port\"}`")
def json_token_api(impl):
    src = f"http://127.0.0.1:{api().port}/json/%s"
    return where(impl, ["--token-plugin=JSONTokenApi", f"--token-source={src}", "{listen}"], "/?token=desk")


def socket_dirs(impl):
    """A socket directory with `desk` in it, and a sibling directory sharing its prefix."""
    base = os.path.join(scratch(), f"sockets-{impl.name}")
    inside, sibling = base + "/vnc", base + "/vnc-other"
    if not os.path.exists(inside):
        os.makedirs(inside)
        os.makedirs(sibling)
        Target(named("inside"), unix_path=inside + "/desk")
        Target(named("sibling"), unix_path=sibling + "/desk")
    return inside


@case("tokens", "UnixDomainSocketDirectory: the token names a socket in the directory")
def socket_dir(impl):
    d = socket_dirs(impl)
    return where(impl, ["--token-plugin=UnixDomainSocketDirectory", f"--token-source={d}", "{listen}"], "/?token=desk")


@case(
    "tokens",
    "UnixDomainSocketDirectory: a token escaping to a sibling directory (`../vnc-other/desk`)",
    ours="HTTP 404",
    why="the reference compares path prefixes as strings, so `/run/vnc-other` passes for "
    "`/run/vnc`; we compare canonical paths by components",
)
def socket_dir_escape(impl):
    d = socket_dirs(impl)
    return where(
        impl,
        ["--token-plugin=UnixDomainSocketDirectory", f"--token-source={d}", "{listen}"],
        "/?token=../vnc-other/desk",
    )


# ---- program wrapping and daemon ----


def wrapped_answer(port):
    """Asks the wrapped http.server for / through a WebSocket, retrying while the program
    starts (it binds after we listen)."""
    import time

    deadline = time.monotonic() + 10
    while True:
        ws = WebSocket(port)
        try:
            if ws.status == 101:
                ws.send(2, b"GET / HTTP/1.0\r\n\r\n")
                got = ws.data(12)
                if got.startswith(b"HTTP/1.0"):
                    return f"101, then the program answers {got[:12].decode()}"
        finally:
            ws.close()
        if time.monotonic() > deadline:
            return f"not reached (last: HTTP {ws.status})"
        time.sleep(0.2)


@case(
    "wrap",
    "`LISTEN -- python3 -m http.server PORT`: the program's bind moves behind the proxy",
)
def wrap_http_server(impl):
    with Server(impl, ["{listen}", "--", "python3", "-m", "http.server", "--bind", "127.0.0.1", "{port}"]) as server:
        return wrapped_answer(server.port)


@case(
    "wrap",
    "`--wrap-mode=exit` (the default): the wrapped program exits with status 3",
    ours="exit 3",
    why="the program's status reaches the script or service manager that started us; the "
    "reference exits 0 whatever happened",
)
def wrap_exit_status(impl):
    status, _, _ = run_briefly(
        impl, [f"127.0.0.1:{free_port()}", "--", "sh", "-c", "sleep 0.5; exit 3"], seconds=10
    )
    return f"exit {status}"


@case("daemon", "`-D`: the command returns at once with status 0 and the daemon serves")
def daemon(impl):
    port = free_port()
    status, _, _ = run_briefly(
        impl, ["-D", "--idle-timeout=3", f"127.0.0.1:{port}", target("A")], seconds=10, capture=False
    )
    import time

    deadline = time.monotonic() + 10
    while True:
        try:
            seen = reach(port, "/")
            break
        except OSError:
            if time.monotonic() > deadline:
                seen = "not listening"
                break
            time.sleep(0.1)
    return f"exit {status}; the daemon: {seen}"


@case("command line", "`--inetd`: the listening socket comes on stdin")
def inetd(impl):
    import subprocess

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    proc = subprocess.Popen(
        impl.argv + ["--inetd", target("A")],
        stdin=listener.fileno(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    listener.close()
    try:
        return reach(port, "/")
    finally:
        proc.kill()
        proc.wait()


@case("command line", "`--unix-listen-mode=0660` sets the socket's mode")
def unix_listen_mode(impl):
    import subprocess
    import time

    path = os.path.join(scratch(), f"unix-mode-{impl.name}")
    proc = subprocess.Popen(
        impl.argv + [f"--unix-listen={path}", "--unix-listen-mode=0660", target("A")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.05)
        return f"socket mode {oct(os.stat(path).st_mode & 0o777)}"
    finally:
        proc.kill()
        proc.wait()


# ---- JWT ----

REFERENCE_PYTHON = None  # set by the runner: the reference's interpreter (it has jwcrypto)


@lru_cache(maxsize=None)
def _jwts():
    import json
    import subprocess

    d = os.path.join(scratch(), "jwt")
    os.makedirs(d, exist_ok=True)
    host, port = target("J").rsplit(":", 1)
    here = os.path.dirname(os.path.abspath(__file__))
    subprocess.run(
        [REFERENCE_PYTHON, os.path.join(here, "make_jwts.py"), d, host, port],
        check=True,
        capture_output=True,
    )
    with open(os.path.join(d, "tokens.json")) as f:
        return d, json.load(f)


def jwts():
    with _lock:
        return _jwts()


JWT_DIFFERENCES = {
    "JWE (RSA-OAEP, A256GCM) of the claims": (
        "reaches J",
        "the reference's JWTTokenApi says it accepts JWE, but with the jwcrypto it installs "
        "every JWE fails (\"Expected JWS, got JWE\"); we decrypt it",
    ),
    "a JWS nested in a JWE": (
        "reaches J",
        "jwcrypto (the reference's JOSE library) no longer decodes a token nested in a JWE; "
        "nesting is how a signed and encrypted token is made (RFC 7519 5.2), so we accept it",
    ),
}


def register_jwt_cases():
    # The names are fixed by make_jwts.py; the tokens are made when the first case runs.
    names = [
        "HS256 with a symmetric key file",
        "RS256 with a PEM key file",
        "RS512, port as a string",
        "expired (`exp` a minute ago)",
        "not yet valid (`nbf` in an hour)",
        "signed with another key",
        "JWE (RSA-OAEP, A256GCM) of the claims",
        "a JWS nested in a JWE",
    ]
    for name in names:

        def _jwt(impl, name=name):
            d, tokens = jwts()
            key, token = tokens[name]
            key_file = os.path.join(d, "rsa.pem" if key == "rsa" else "oct.key")
            seen = where(impl, ["--token-plugin=JWTTokenApi", f"--token-source={key_file}", "{listen}"], f"/?token={token}")
            return "not found" if seen in ("HTTP 404", "closed without an answer") else seen

        ours, why = JWT_DIFFERENCES.get(name, (None, None))
        CASES.append(Case("tokens", f"JWTTokenApi: {name}", _jwt, ours, why))
