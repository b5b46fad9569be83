//! What the real server writes to its log: the per-session lines (written by the log
//! observer), secrets redacted, peer text escaped, and a bound on what one connection can make
//! it write. Runs the `websockify` binary and reads its stderr.

use websockify_test_support as support;

use support::*;
use tokio::net::TcpStream;

/// The binary on 127.0.0.1 (any port) to `target` (none when empty), with `args` first.
async fn start(args: &[&str], target: &str) -> LoggedBinary {
    let mut all: Vec<&str> = args.to_vec();
    all.push("127.0.0.1:0");
    if !target.is_empty() {
        all.push(target);
    }
    LoggedBinary::start(&all).await
}

#[tokio::test]
async fn a_session_logs_one_line_at_open_and_one_at_close_with_its_token_redacted() {
    let target = echo_server().await;
    let server = start(&[], &target.to_string()).await;
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let mut client = RawClient::new(stream);
    let head = client
        .request(&upgrade_request("/websockify?token=s3cret&x=1", ""))
        .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    client.send(true, 0x2, b"hello").await;
    assert_eq!(client.read_data(5).await, b"hello");
    client.send(true, 0x8, &[0x03, 0xE8]).await;
    assert_eq!(client.read_close().await.0, 1000);

    let open = server.wait_for("WebSocket connection").await;
    assert!(open.contains("scheme=ws "), "{open}");
    assert!(
        open.contains(r#"path="/websockify?token=REDACTED&x=1""#),
        "{open}"
    );
    assert!(open.contains(&format!("target={target}")), "{open}");
    assert!(open.contains("conn{id=1 peer=127.0.0.1:"), "{open}");
    let closed = server.wait_for("closed: client closed (1000").await;
    assert!(closed.contains("client_to_target=5"), "{closed}");
    assert!(closed.contains("target_to_client=5"), "{closed}");
    assert_eq!(server.count("WebSocket connection"), 1);
    assert!(
        server.lines().iter().all(|l| !l.contains("s3cret")),
        "the token leaked: {:#?}",
        server.lines()
    );
}

#[tokio::test]
async fn peer_text_is_escaped_so_it_cannot_split_a_line_or_forge_a_field() {
    let server = start(&["-v"], "127.0.0.1:1").await;
    // U+2028 (a line separator to many log viewers), a quote, a backslash, a fake field.
    let refused = b"GET /a\xe2\x80\xa8b\"c\\d%20status=101?token=x HTTP/1.1\r\nHost: x\r\n\
                    Upgrade: websocket\r\n\r\n";
    let answer = send_and_read_all(server.addr, refused).await;
    assert!(answer.starts_with(b"HTTP/1.1 400 "), "{answer:?}");
    let line = server.wait_for("refused:").await;
    assert!(
        line.contains(r#"path="/a\u{2028}b\"c\\d%20status=101?token=REDACTED""#),
        "{line}"
    );
    // A 405 (logged at debug) goes through the same escaping.
    let answer = send_and_read_all(
        server.addr,
        b"GET /x\"\xe2\x80\xa9y HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with(b"HTTP/1.1 405 "), "{answer:?}");
    let line = server.wait_for("not a WebSocket request").await;
    assert!(line.contains(r#"path="/x\"\u{2029}y""#), "{line}");
    for line in server.lines() {
        assert!(
            !line.contains(['\u{2028}', '\u{2029}']),
            "raw separator: {line}"
        );
    }
}

/// Waits until every line written before now is collected: a request on a new connection
/// logs a marker line, and stderr is one ordered stream.
async fn sync_log(server: &LoggedBinary, marker: &str) {
    let request = format!("GET /{marker} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    send_and_read_all(server.addr, request.as_bytes()).await;
    server.wait_for(marker).await;
}

#[tokio::test]
async fn one_connection_cannot_write_unbounded_lines_to_the_log() {
    let server = start(&["-v"], "127.0.0.1:1").await;
    // Pipelined refused upgrades: the first refusal ends the connection, so one line. (The
    // client may not even see that answer: closing with unread requests resets the
    // connection; what counts is the log.)
    let bad_upgrade = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n";
    let answer = send_and_read_all(server.addr, bad_upgrade.repeat(500).as_bytes()).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.matches("HTTP/1.1 400 ").count() <= 1, "{answer}");
    sync_log(&server, "marker-1").await;
    assert_eq!(server.count("refused:"), 1);

    // Pipelined plain requests (405, one debug line each): at most MAX_REQUESTS are
    // answered, then the connection ends.
    let get = "GET /flood HTTP/1.1\r\nHost: x\r\n\r\n";
    let answer = send_and_read_all(server.addr, get.repeat(1000).as_bytes()).await;
    let answered = String::from_utf8_lossy(&answer)
        .matches("HTTP/1.1 405 ")
        .count();
    assert!(answered <= websockify::MAX_REQUESTS as usize, "{answered}");
    sync_log(&server, "marker-2").await;
    assert_eq!(
        server.count(r#"path="/flood""#),
        websockify::MAX_REQUESTS as usize
    );
}

#[tokio::test]
async fn a_malformed_token_file_line_is_a_warning_naming_file_and_line_and_tokens_are_not_logged() {
    let target = echo_server().await;
    let dir = temp_dir("logs-tokens");
    let file = dir.join("tokens");
    std::fs::write(
        &file,
        format!("# desks\ngood-s3cret: {target}\nbad line\n\nworse: host:port\n"),
    )
    .unwrap();
    let source = format!("--token-source={}", file.display());
    let server = start(&["--token-plugin=TokenFile", &source], "").await;
    let lines = server.lines();
    let warnings: Vec<&String> = lines.iter().filter(|l| l.contains("token file:")).collect();
    assert_eq!(warnings.len(), 2, "{lines:#?}");
    assert!(
        warnings[0].contains(&format!("file={}", file.display())),
        "{}",
        warnings[0]
    );
    assert!(warnings[0].contains("line=3"), "{}", warnings[0]);
    assert!(warnings[1].contains("line=5"), "{}", warnings[1]);
    server
        .wait_for("Proxying to targets by token (?token=) from TokenFile")
        .await;

    // A good token and an unknown one: neither value is written to the log.
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let mut client = RawClient::new(stream);
    let head = client
        .request(&upgrade_request("/?token=good-s3cret", ""))
        .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    drop(client);
    let answer = send_and_read_all(
        server.addr,
        upgrade_request("/?token=wrong-s3cret", "").as_bytes(),
    )
    .await;
    assert!(answer.starts_with(b"HTTP/1.1 404 "), "{answer:?}");
    let refused = server.wait_for("refused:").await;
    assert!(refused.contains("Token not found"), "{refused}");
    assert!(refused.contains("label=client_not_found"), "{refused}");
    for line in server.lines() {
        assert!(!line.contains("s3cret"), "a token in the log: {line}");
    }
}

#[tokio::test]
async fn the_start_up_line_names_a_token_api_without_its_credentials() {
    let server = start(
        &[
            "--token-plugin=JSONTokenApi",
            "--token-source=http://desk-user:pa55w0rd@127.0.0.1:9/lookup?api_key=k3y&token=%s",
        ],
        "",
    )
    .await;
    let line = server.wait_for("Proxying to").await;
    assert!(
        line.contains("JSONTokenApi http://REDACTED@127.0.0.1:9/lookup?api_key=REDACTED&token=%s"),
        "{line}"
    );
    for secret in ["desk-user", "pa55w0rd", "k3y"] {
        assert_eq!(
            server.count(secret),
            0,
            "{secret} logged: {:#?}",
            server.lines()
        );
    }
}
