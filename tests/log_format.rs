//! `--log-format json`: what the real binary writes is one JSON object a line, every line of a
//! connection names its `conn` and `client` (the real one, behind a PROXY header), peer text
//! cannot split a line or forge a field, `--log-file` gets the same, and every key written is
//! one docs/operations.md documents.

use websockify_test_support as support;

use std::collections::BTreeSet;
use std::net::SocketAddr;

use serde_json::{Map, Value};
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The binary with `--log-format json ARGS 127.0.0.1:0 [TARGET]`, its address read from the
/// JSON start-up line.
async fn start(args: &[&str], target: Option<SocketAddr>) -> LoggedBinary {
    let target = target.map(|t| t.to_string());
    let mut all = vec!["--log-format", "json"];
    all.extend_from_slice(args);
    all.push("127.0.0.1:0");
    all.extend(target.as_deref());
    let mut binary = LoggedBinary::spawn(&all);
    let line = binary.wait_for("Listen on").await;
    let msg = object(&line)["msg"].as_str().unwrap().to_owned();
    let port = msg.rsplit(':').next().unwrap().trim().parse().unwrap();
    binary.addr.set_port(port);
    binary
}

/// One line as a JSON object; the test fails if it is anything else.
fn object(line: &str) -> Map<String, Value> {
    match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(map)) => map,
        other => panic!("not one JSON object: {line:?} ({other:?})"),
    }
}

/// Every line collected so far, each parsed (and so checked to be one object).
fn objects(server: &LoggedBinary) -> Vec<Map<String, Value>> {
    server.lines().iter().map(|l| object(l)).collect()
}

/// The lines of connection `conn`.
fn of_conn(lines: &[Map<String, Value>], conn: u64) -> Vec<&Map<String, Value>> {
    lines
        .iter()
        .filter(|l| l.get("conn").and_then(Value::as_u64) == Some(conn))
        .collect()
}

/// Waits (bounded) for a line whose `msg` contains `needle`; returns it parsed.
async fn wait_msg(server: &LoggedBinary, needle: &str) -> Map<String, Value> {
    bounded(&format!("a JSON line with msg {needle:?}"), async {
        loop {
            let found = objects(server)
                .into_iter()
                .find(|o| o["msg"].as_str().is_some_and(|m| m.contains(needle)));
            if let Some(found) = found {
                return found;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
}

/// The keys docs/operations.md documents: the first column of the table under its
/// "`--log-format json`" heading.
fn documented_keys() -> BTreeSet<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
        .unwrap();
    let section = doc
        .split("\n#")
        .find(|s| {
            s.lines()
                .next()
                .is_some_and(|h| h.contains("--log-format json"))
        })
        .expect("a docs/operations.md section headed with `--log-format json`");
    let keys: BTreeSet<String> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(key, _)| key.to_owned()))
        .collect();
    assert!(keys.len() > 10, "the field table: {keys:?}");
    keys
}

/// Every key of every line is documented.
fn assert_documented(lines: &[Map<String, Value>]) {
    let documented = documented_keys();
    for line in lines {
        for key in line.keys() {
            assert!(
                documented.contains(key),
                "{key:?} is written but not in docs/operations.md: {line:?}"
            );
        }
    }
}

#[tokio::test]
async fn every_line_is_json_and_a_connections_lines_all_carry_its_conn_and_client() {
    let target = echo_server().await;
    let server = start(&[], Some(target)).await;
    // 1: a session, its token redacted.
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let local = stream.local_addr().unwrap().to_string();
    let mut client = RawClient::new(stream);
    let head = client
        .request(&upgrade_request("/websockify?token=s3cret", ""))
        .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    client.send(true, 0x2, b"hello").await;
    assert_eq!(client.read_data(5).await, b"hello");
    client.send(true, 0x8, &[0x03, 0xE8]).await;
    assert_eq!(client.read_close().await.0, 1000);
    let closed = wait_msg(&server, "closed: client closed").await;

    let lines = objects(&server);
    let session = of_conn(&lines, 1);
    assert_eq!(session.len(), 2, "{session:#?}");
    let open = session[0];
    assert_eq!(open["msg"], "WebSocket connection");
    assert_eq!(open["client"], local.as_str());
    assert!(open.get("via").is_none(), "{open:?}");
    assert_eq!(open["scheme"], "ws");
    assert_eq!(open["target"], target.to_string());
    assert_eq!(open["path"], "\"/websockify?token=REDACTED\"");
    assert_eq!(open["level"], "info");
    let ts = open["ts"].as_str().unwrap();
    assert!(
        ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[19] == b'.',
        "{ts}"
    );
    assert_eq!(closed["conn"], 1);
    assert_eq!(closed["client"], local.as_str());
    assert_eq!(closed["client_to_target"], 5);
    assert_eq!(closed["target_to_client"], 5);
    assert_eq!(closed["outcome"], "client_closed");
    assert_eq!(closed["close_code"], 1000);
    assert!(closed["duration_ms"].is_u64(), "{closed:?}");
    assert!(server.lines().iter().all(|l| !l.contains("s3cret")));
    assert_documented(&lines);
}

#[tokio::test]
async fn warnings_and_refusals_in_the_middle_of_a_connection_carry_its_conn_and_client() {
    // A token API that is not there: a warning, then the refusal, both inside the connection.
    let dir = temp_dir("log-format-tls");
    let (cert, key, _) = self_signed();
    std::fs::write(dir.join("cert.pem"), cert).unwrap();
    std::fs::write(dir.join("key.pem"), key).unwrap();
    let cert = format!("--cert={}", dir.join("cert.pem").display());
    let key = format!("--key={}", dir.join("key.pem").display());
    let closed = closed_port().await;
    let source = format!("--token-source=http://{closed}/t/%s");
    let server = start(
        &["-v", "--token-plugin=JSONTokenApi", &source, &cert, &key],
        None,
    )
    .await;
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let local = stream.local_addr().unwrap().to_string();
    let mut client = RawClient::new(stream);
    let head = client.request(&upgrade_request("/?token=abc", "")).await;
    assert!(!head.starts_with("HTTP/1.1 101"), "{head}");
    let warning = wait_msg(&server, "token API unreachable").await;
    let refusal = wait_msg(&server, "refused:").await;
    for line in [&warning, &refusal] {
        assert_eq!(line["conn"], 1, "{line:?}");
        assert_eq!(line["client"], local.as_str(), "{line:?}");
    }
    assert_eq!(warning["level"], "warn");
    assert!(
        refusal["status"].is_u64() && refusal["label"].is_string(),
        "{refusal:?}"
    );

    // A TLS handshake that fails: its line names the connection too.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let local = stream.local_addr().unwrap().to_string();
    stream
        .write_all(b"\x16\x03\x01\x00\x05not a client hello")
        .await
        .unwrap();
    read_until_dropped(&mut stream).await;
    let failed = wait_msg(&server, "TLS handshake").await;
    assert_eq!(failed["conn"], 2, "{failed:?}");
    assert_eq!(failed["client"], local.as_str(), "{failed:?}");

    let lines = objects(&server);
    for line in &lines {
        if line.contains_key("conn") {
            assert!(line.contains_key("client"), "{line:?}");
        }
    }
    assert_documented(&lines);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn behind_a_proxy_header_client_is_the_real_client_and_via_the_balancer() {
    let target = echo_server().await;
    let server = start(&["--proxy-protocol", "127.0.0.1"], Some(target)).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let balancer = stream.local_addr().unwrap().to_string();
    stream
        .write_all(b"PROXY TCP4 203.0.113.7 192.0.2.1 5555 443\r\n")
        .await
        .unwrap();
    let mut client = RawClient::new(stream);
    let head = client.request(&upgrade_request("/", "")).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    client.send(true, 0x8, &[0x03, 0xE8]).await;
    assert_eq!(client.read_close().await.0, 1000);
    wait_msg(&server, "closed:").await;
    let lines = objects(&server);
    let session = of_conn(&lines, 1);
    assert_eq!(session.len(), 2, "{session:#?}");
    for line in session {
        assert_eq!(line["client"], "203.0.113.7:5555", "{line:?}");
        assert_eq!(line["via"], balancer.as_str(), "{line:?}");
    }
    assert_documented(&lines);
}

#[tokio::test]
async fn behind_a_trusted_reverse_proxy_client_is_the_forwarded_address() {
    let target = echo_server().await;
    let server = start(&["--trusted-proxies", "127.0.0.1"], Some(target)).await;
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let proxy = stream.local_addr().unwrap().to_string();
    let mut client = RawClient::new(stream);
    let head = client
        .request(&upgrade_request("/", "X-Forwarded-For: 198.51.100.9\r\n"))
        .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    client.send(true, 0x8, &[0x03, 0xE8]).await;
    assert_eq!(client.read_close().await.0, 1000);
    wait_msg(&server, "closed:").await;
    let lines = objects(&server);
    let session = of_conn(&lines, 1);
    assert_eq!(session.len(), 2, "{session:#?}");
    for line in session {
        assert_eq!(line["client"], "198.51.100.9", "{line:?}");
        assert_eq!(line["via"], proxy.as_str(), "{line:?}");
    }
    assert_documented(&lines);
}

#[tokio::test]
async fn hostile_paths_and_headers_cannot_split_a_line_or_forge_a_field() {
    let target = echo_server().await;
    let server = start(&["-v"], Some(target)).await;
    // A line separator, quotes, backslashes and a JSON fragment that would forge `conn` and
    // `level` if it were written raw.
    send_and_read_all(
        server.addr,
        b"GET /a\xe2\x80\xa8b\"c\\d\",\"conn\":99,\"level\":\"error\"}{\"x?token=t HTTP/1.1\r\n\
          Host: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    // A Host header with control characters (an escape sequence among them).
    send_and_read_all(
        server.addr,
        b"GET /h HTTP/1.1\r\nHost: h\x01\x1b[31m\x7fst\r\nConnection: close\r\n\r\n",
    )
    .await;
    // A raw newline in the path: not HTTP, but whatever is logged of it stays one line.
    send_and_read_all(
        server.addr,
        b"GET /x\ny\",\"conn\":98 HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    // Invalid UTF-8 in the path.
    send_and_read_all(
        server.addr,
        b"GET /\xff\xfe\"} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    // A client's close reason (in `msg`): a newline, a line separator, an escape sequence and
    // a JSON fragment.
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let mut client = RawClient::new(stream);
    let head = client.request(&upgrade_request("/", "")).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let reason = "bye\n\"},{\"conn\":97,\u{2028}\u{1b}[31m\\";
    client
        .send(true, 0x8, &[&[0x03, 0xE8][..], reason.as_bytes()].concat())
        .await;
    assert_eq!(client.read_close().await.0, 1000);
    let closed = wait_msg(&server, "closed: client closed").await;
    assert_eq!(closed["conn"], 5);
    assert_eq!(
        closed["msg"],
        r#"closed: client closed (1000 "bye\u{000a}\"},{\"conn\":97,\u{2028}\u{001b}[31m\\")"#
    );
    // A marker: everything before it is logged.
    send_and_read_all(
        server.addr,
        b"GET /marker HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    wait_msg(&server, "not a WebSocket request").await;
    bounded("the marker line", async {
        while !server.lines().iter().any(|l| l.contains("/marker")) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    let raw = server.lines();
    for line in &raw {
        assert!(
            !line.contains(['\u{2028}', '\u{2029}', '\u{1b}', '\u{1}', '\u{7f}', '\r']),
            "raw control or separator: {line:?}"
        );
    }
    let lines = objects(&server);
    // Each line's `conn` is the one its connection was given, never the forged 99 or 98.
    for line in &lines {
        if let Some(conn) = line.get("conn") {
            assert!(
                conn.as_u64().is_some_and(|c| (1..=6).contains(&c)),
                "{line:?}"
            );
        }
        assert!(line["level"] != "error", "{line:?}");
    }
    let first = of_conn(&lines, 1);
    assert!(!first.is_empty(), "{lines:#?}");
    let path = first
        .iter()
        .find_map(|l| l.get("path"))
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no path logged: {first:#?}"));
    assert!(path.contains(r#"\u{2028}b\"c\\d\""#), "{path}");
    assert!(path.contains("?token=REDACTED"), "{path}");
    assert_documented(&lines);
}

#[tokio::test]
async fn the_log_file_gets_the_same_json_lines() {
    let target = echo_server().await;
    let dir = temp_dir("log-format-file");
    let file = dir.join("ws.log");
    let log_file = format!("--log-file={}", file.display());
    let server = start(&[&log_file], Some(target)).await;
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let mut client = RawClient::new(stream);
    let head = client.request(&upgrade_request("/", "")).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    client.send(true, 0x8, &[0x03, 0xE8]).await;
    assert_eq!(client.read_close().await.0, 1000);
    wait_msg(&server, "closed:").await;
    let written = bounded("the close line in the log file", async {
        loop {
            let written = std::fs::read_to_string(&file).unwrap_or_default();
            if written.contains("closed:") {
                return written;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    let lines: Vec<Map<String, Value>> = written.lines().map(object).collect();
    assert!(lines.iter().any(|l| l["msg"] == "  - Listen on 127.0.0.1:0"
        || l["msg"].as_str().is_some_and(|m| m.contains("Listen on"))));
    let session = of_conn(&lines, 1);
    assert_eq!(session.len(), 2, "{session:#?}");
    assert!(session.iter().all(|l| l.contains_key("client")));
    assert_documented(&lines);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn an_unknown_log_format_is_a_start_up_error_naming_the_option() {
    let mut binary = LoggedBinary::spawn(&["--log-format", "xml", "127.0.0.1:0", "127.0.0.1:1"]);
    let status = binary.exit_status(std::time::Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(2));
    let first = binary.wait_for("error").await;
    assert!(
        first.contains("--log-format") && first.contains("'xml'"),
        "{first}"
    );
    assert!(
        binary.count("possible values: human, json") == 1,
        "{:?}",
        binary.lines()
    );
}

#[tokio::test]
async fn the_human_format_stays_the_default() {
    let server = LoggedBinary::start(&["127.0.0.1:0", "127.0.0.1:1"]).await;
    let human = LoggedBinary::start(&["--log-format=human", "127.0.0.1:0", "127.0.0.1:1"]).await;
    for binary in [&server, &human] {
        binary.wait_for("No SSL/TLS support").await;
    }
    let strip = |lines: Vec<String>| -> Vec<String> {
        // Everything after the timestamp and before the port is the same.
        lines
            .into_iter()
            .map(|l| {
                l.split_once(' ')
                    .map(|(_, rest)| rest.to_owned())
                    .unwrap_or(l)
            })
            .filter(|l| !l.contains("Listen on"))
            .collect()
    };
    let (a, b) = (strip(server.lines()), strip(human.lines()));
    assert!(
        !a.is_empty() && a.iter().all(|l| !l.starts_with('{')),
        "{a:?}"
    );
    assert_eq!(a, b);
}

#[tokio::test]
async fn syslog_gets_the_json_object_as_the_message_body_after_its_header() {
    let dir = temp_dir("log-format-syslog");
    let path = dir.join("log.sock");
    let socket = tokio::net::UnixDatagram::bind(&path).unwrap();
    let target = echo_server().await;
    let server = start(&["--syslog", path.to_str().unwrap()], Some(target)).await;
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let local = stream.local_addr().unwrap().to_string();
    let mut client = RawClient::new(stream);
    let head = client.request(&upgrade_request("/?token=s3cret", "")).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let datagram = bounded("the session's syslog datagram", async {
        let mut buf = vec![0u8; 65536];
        loop {
            let n = socket.recv(&mut buf).await.unwrap();
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if text.contains("WebSocket connection") {
                return text;
            }
        }
    })
    .await;
    // user (1) × 8 + informational (6); RFC 5424's header, then the object and nothing else
    // (no byte-order mark before it: it is ASCII; nothing after it), as mmjsonparse wants.
    assert!(datagram.starts_with("<14>1 "), "{datagram:?}");
    let (_, body) = datagram
        .split_once(&format!(" websockify {} - - ", server.pid()))
        .unwrap_or_else(|| panic!("no RFC 5424 header: {datagram:?}"));
    assert!(body.starts_with('{') && body.ends_with('}'), "{body:?}");
    let open = object(body);
    assert_eq!(open["conn"], 1);
    assert_eq!(open["client"], local.as_str());
    assert_eq!(open["path"], "\"/?token=REDACTED\"");
    assert_documented(&[open]);
    let _ = std::fs::remove_dir_all(dir);
}
