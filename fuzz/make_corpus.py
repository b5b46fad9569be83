#!/usr/bin/env python3
"""Writes the committed seed corpus (fuzz/corpus/<target>/). Rerun after changing it:
    python3 fuzz/make_corpus.py
Seeds of the split-feeding targets start with the split header of fuzz_targets/common/mod.rs:
a 0 byte (one piece), or k followed by k piece sizes."""
import base64
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def masked(first, payload, mask=b"\x37\xfa\x21\x3d"):
    n = len(payload)
    if n < 126:
        head = bytes([first, 0x80 | n])
    elif n <= 0xFFFF:
        head = bytes([first, 0x80 | 126]) + struct.pack(">H", n)
    else:
        head = bytes([first, 0x80 | 127]) + struct.pack(">Q", n)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body


def whole(stream):
    return b"\x00" + stream


def pieces(sizes, stream):
    return bytes([len(sizes)]) + bytes(sizes) + stream


def write(target, seeds):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


frag = masked(0x01, b"Hel") + masked(0x89, b"ping!") + masked(0x80, b"lo")
write("frame_decoder", {
    "text_hello": whole(masked(0x81, b"Hello")),
    "binary_empty": whole(masked(0x82, b"")),
    "binary_125": whole(masked(0x82, bytes(range(125)))),
    "binary_126_len16": whole(masked(0x82, bytes(126))),
    "binary_300_len16_split": pieces([1, 3, 7], masked(0x82, bytes(i % 251 for i in range(300)))),
    "binary_65536_len64_head": whole(masked(0x82, bytes(65536))[:200]),
    "fragmented_with_ping": whole(frag),
    "fragmented_with_ping_bytewise": pieces([1], frag),
    "close_1000_reason": whole(masked(0x88, b"\x03\xe8bye")),
    "close_empty": whole(masked(0x88, b"")),
    "close_bad_code": whole(masked(0x88, b"\x03\xed")),
    "close_bad_utf8": whole(masked(0x88, b"\x03\xe8\xff")),
    "pong_then_binary": pieces([2, 5], masked(0x8A, b"p") + masked(0x82, b"data")),
    "unmasked": whole(b"\x82\x01x"),
    "reserved_bits": whole(masked(0xC2, b"x")),
    "huge_len_msb": whole(b"\x82\xff" + struct.pack(">Q", 1 << 63) + b"\0\0\0\0"),
    "huge_len_ok": pieces([6, 255], b"\x82\xff" + struct.pack(">Q", (1 << 63) - 1) + b"\1\2\3\4" + bytes(40)),
    "ping_126": whole(masked(0x89, bytes(126))),
})

write("utf8", {
    "ascii": whole(b"Hello, world"),
    "greek_split": pieces([1, 2], "κόσμε".encode()),
    "mixed": pieces([3], "Hello-µ@ßöäüàá-UTF-8!! \U0010FFFF\uFFFF".encode()),
    "emoji_bytewise": pieces([1], "😀👍".encode()),
    "surrogate": whole(b"\xed\xa0\x80"),
    "overlong": whole(b"\xc0\xaf"),
    "overlong3": whole(b"\xe0\x80\xaf"),
    "above_max": whole(b"\xf4\x90\x80\x80"),
    "truncated": pieces([2], b"ab\xf0\x9f\x98"),
    "ff": whole(b"\xff"),
    "bad_after_good": pieces([5, 1], b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"),
})

text = base64.b64encode(bytes(range(40)))
write("base64", {
    "hello": b"\x00" + whole(base64.b64encode(b"hello")),
    "hello_split_tight": b"\x00" + pieces([1, 2, 3], base64.b64encode(b"hello world")),
    "pad1": b"\x01" + whole(b"YWI="),
    "pad2": b"\x02" + whole(b"YQ=="),
    "long_new_buffers": b"\xfc" + pieces([5, 3], text),
    "empty": b"\x00" + whole(b""),
    "bad_alphabet": b"\x00" + whole(b"ab!d"),
    "pad_then_more": b"\x00" + pieces([4], b"ab==abcd"),
    "truncated": b"\x00" + whole(b"abc"),
    "trailing_bits": b"\x00" + whole(b"QR=="),
})

write("classify", {
    "tls_client_hello": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    "http_get": b"GET / HTTP/1.1\r\n",
    "flash_policy": b"<policy-file-request/>\x00",
})

key = b"dGhlIHNhbXBsZSBub25jZQ=="
head = (b"GET /websockify HTTP/1.1\r\nHost: localhost:6080\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n")
write("http_head", {
    "upgrade": head + b"\r\n",
    "upgrade_binary": head + b"Sec-WebSocket-Protocol: base64, binary\r\n\r\n",
    "upgrade_base64": head + b"Sec-WebSocket-Protocol: base64\r\nOrigin: http://localhost\r\n\r\n",
    "upgrade_two_protocol_headers": head + b"Sec-WebSocket-Protocol: chat\r\nsec-websocket-protocol: binary\r\n\r\n",
    "version_8_keyspace": head.replace(b"Version: 13", b"Version:  8 ").replace(key, b" " + key + b" ") + b"\r\n",
    "bad_version": head.replace(b"Version: 13", b"Version: 12") + b"\r\n",
    "short_key": head.replace(key, b"c2hvcnQ=") + b"\r\n",
    "post": head.replace(b"GET", b"POST") + b"\r\n",
    "plain_get": b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n",
})

write("cli_address", {
    "port_target": b"6080\x00localhost:5900",
    "ipv6_listen": b"[::1]:6080\x00host:5900",
    "ipv6_target": b"0.0.0.0:6080\x00[fe80::1]:5900",
    "bare_ipv6_target": b"6080\x00::1:5900",
    "options": b"-v\x00--cert=x.pem\x00--ssl-only\x006080\x00127.0.0.1:5900",
    "unix_target": b"--unix-target=/tmp/s\x006080",
    "bad_port": b"6080\x00host:65536",
    "too_many": b"6080\x00host:5900\x00extra",
    "help": b"--help",
    "wrap": b"6080\x00--\x00vncserver\x00:1",
})
# [kind] [argument]: an even kind byte reads a listen address, an odd one a target.
write("address", {
    "listen_port": b"\x006080",
    "listen_colon_port": b"\x00:6080",
    "listen_any": b"\x000.0.0.0:6080",
    "listen_ipv6": b"\x00[::1]:6080",
    "listen_spaced_sign": b"\x00 +80 \t",
    "listen_arabic_digits": "\x00\u0668\u0660".encode(),
    "target_host": b"\x01localhost:5900",
    "target_ipv6_scoped": b"\x01[fe80::1%eth0]:5900",
    "target_bare_ipv6": b"\x01::1:5900",
    "target_big_port": b"\x01host:99999",
    "target_no_port": b"\x01host",
    "target_inner_bracket": b"\x01[::1]6:080",
    "target_bracket_in_name": b"\x01a[b:5900",
    "target_brackets_spaces": b"\x01]]h[[:  7\t",
})
# One line of a token file (TokenFile, ReadOnlyTokenFile, --target-config).
write("token_line", {
    "plain": b"desk: 127.0.0.1:5900",
    "tab_and_spaces": b"  desk:\tvnc.example.com:5901  \r",
    "colon_in_token": b"a:b: host:1",
    "bare_ipv6": b"b:\t::1:5901",
    "bracketed_ipv6": b"c: [fe80::1%eth0]:5900",
    "unix_socket": b"u: unix_socket:/run/vnc/desk.sock",
    "comment": b"# desk: host:5900",
    "blank": b"   \t ",
    "two_separators": b"a: b: c:1",
    "no_separator": b"abc:host:5900",
    "big_port": b"a: host:65536",
    "plus_port": b"a: host:+80",
    "python_separator_space": b"a:\x1chost:1",
    "unicode_space": "tok:\u2003host:5900\u3000".encode(),
    "empty_token": b": host:1",
})

# TokenRedis sources: host[:port[:db[:password[:namespace]]]], quoted fields may hold ':'.
write("redis_source", {
    "host": b"my-redis",
    "port": b"my-redis:6380",
    "empty_fields": b"my-redis:::",
    "password": b"my-redis:::verysecretpass",
    "namespace": b"my-redis::::my-app",
    "quoted_namespace": b'my-redis::::"first-ns:second-ns"',
    "full": b"my-redis:6380:1:pass:ns",
    "quoted_password": b'r:6379:2:"p:w":"a:b"',
    "ipv6_quoted": b'"::1":6379',
    "too_many": b"a:1:2:3:4:5",
    "unbalanced": b'h:"a:b',
    "quote_then_text": b'h:"b:c"d:e',
    "empty_quotes": b'h:"":x',
    "spaced_port": b"h: +6380 :  3",
    "big_db": b"h::99999999999999999999",
})

# JWTTokenApi tokens (tests/fixtures/jwt/tokens.json, made by jwcrypto): one byte choosing the
# key of fuzz_targets/jwt.rs's KEYS, then the token.
JWT_KEYS = ["oct32.key", "oct16.key", "rsa.pem", "rsa.pub.pem", "ec256.pem", "ed25519.pem"]
with open(os.path.join(os.path.dirname(ROOT), "..", "tests", "fixtures", "jwt", "tokens.json")) as f:
    import json
    jwt_seeds = {}
    for case in json.load(f):
        if case["key"] in JWT_KEYS:
            jwt_seeds[case["name"]] = bytes([JWT_KEYS.index(case["key"])]) + case["token"].encode()
    write("jwt", jwt_seeds)
