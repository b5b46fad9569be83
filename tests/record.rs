//! `--record FILE`: the real binary records each session to `FILE.<n>` in the reference's
//! JavaScript format; Node loads the file and decodes it as noVNC's playback does, and every
//! byte each way must be what went through. A recording that cannot be written stops with a
//! warning; the session never notices.

use websockify_test_support as support;

use std::path::Path;
use std::process::Command;

use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// What the target greets each session with: every byte value, and the characters the format
/// escapes (quote, backslash, newline) next to its own marks.
fn greeting() -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..=255u8).collect();
    bytes.extend_from_slice(b"RFB 003.008\n'{1{x',\\'}EOF'];\r\t");
    bytes
}

/// A target that greets, then echoes.
async fn greeting_echo_target() -> std::net::SocketAddr {
    tcp_server(|mut stream| async move {
        if stream.write_all(&greeting()).await.is_err() {
            return;
        }
        let (mut r, mut w) = stream.split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
    })
    .await
}

/// Client payloads: every byte value, then 200 KiB of varied bytes in frames of odd sizes.
fn client_messages() -> Vec<Vec<u8>> {
    let mut messages = vec![(0..=255u8).rev().collect::<Vec<u8>>(), b"'\\\n".to_vec()];
    let mut x: u32 = 12345;
    let mut big = Vec::with_capacity(200 * 1024);
    for _ in 0..200 * 1024 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        big.push((x >> 16) as u8);
    }
    for chunk in big.chunks(7919) {
        messages.push(chunk.to_vec());
    }
    messages
}

/// One session through `proxy`: reads the greeting, sends the messages, reads each echo,
/// closes. Returns (bytes to the client, bytes from the client).
async fn session(proxy: std::net::SocketAddr) -> (Vec<u8>, Vec<u8>) {
    let stream = TcpStream::connect(proxy).await.unwrap();
    let mut client = RawClient::new(stream);
    let head = client.request(&upgrade_request("/", "")).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mut down = client.read_data(greeting().len()).await;
    let mut up = Vec::new();
    for message in client_messages() {
        client.send(true, 0x2, &message).await;
        let echo = client.read_data(message.len()).await;
        assert_eq!(echo, message);
        up.extend_from_slice(&message);
        down.extend_from_slice(&echo);
    }
    client.send(true, 0x8, &[0x03, 0xE8]).await;
    assert_eq!(client.read_close().await.0, 1000);
    (down, up)
}

/// Node's reading of a recording: (to the client, from the client, frame times).
fn replay(file: &Path) -> (Vec<u8>, Vec<u8>, Vec<u64>) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node/replay.js");
    let out = Command::new("node")
        .arg(script)
        .arg(file)
        .output()
        .expect("node is installed (apt-get install nodejs)");
    assert!(
        out.status.success(),
        "node could not replay {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let hex = |key: &str| -> Vec<u8> {
        let text = json[key].as_str().unwrap();
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    };
    let times = json["times"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect();
    (hex("toClient"), hex("fromClient"), times)
}

#[tokio::test]
async fn a_recorded_session_replays_byte_identical_in_node() {
    let dir = temp_dir("record");
    let base = dir.join("session");
    let target = greeting_echo_target().await;
    let server = LoggedBinary::start(&[
        "--record",
        base.to_str().unwrap(),
        "127.0.0.1:0",
        &target.to_string(),
    ])
    .await;
    let announced = server.wait_for("  - Recording to").await;
    assert!(
        announced.contains(&format!("'{}.*'", base.display())),
        "{announced}"
    );

    let began = std::time::Instant::now();
    let (down, up) = session(server.addr).await;
    let took = began.elapsed().as_millis() as u64;
    let file = dir.join("session.1");
    server
        .wait_for(&format!("recording {} complete", file.display()))
        .await;

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "a recording holds keystrokes: {mode:o}"
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.starts_with("var VNC_frame_data = [\n"),
        "{}",
        &text[..40]
    );
    assert!(text.ends_with("'EOF'];\n"));
    assert!(text.is_ascii(), "bytes past 0x7e are escaped");
    let (to_client, from_client, times) = replay(&file);
    assert_eq!(to_client.len(), down.len());
    assert!(to_client == down, "the bytes to the client differ");
    assert_eq!(from_client.len(), up.len());
    assert!(from_client == up, "the bytes from the client differ");
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert!(
        times.last().is_some_and(|&t| t <= took),
        "{times:?} > {took}"
    );

    // The next connection is the next file, as the reference numbers them.
    session(server.addr).await;
    let file = dir.join("session.2");
    server
        .wait_for(&format!("recording {} complete", file.display()))
        .await;
    assert_eq!(replay(&file).0, down);
}

#[tokio::test]
async fn an_unwritable_recording_stops_with_a_warning_and_the_session_goes_on() {
    let dir = temp_dir("record-unwritable");
    let base = dir.join("no-such-dir").join("session");
    let target = greeting_echo_target().await;
    let server = LoggedBinary::start(&[
        "--record",
        base.to_str().unwrap(),
        "127.0.0.1:0",
        &target.to_string(),
    ])
    .await;
    let (down, _) = session(server.addr).await;
    assert!(down.len() > greeting().len());
    let warning = server.wait_for("recording stopped").await;
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("session.1"), "{warning}");
    server.wait_for("closed: client closed (1000").await;
}

#[tokio::test]
async fn a_full_disk_stops_the_recording_with_a_warning_and_the_session_goes_on() {
    let dir = temp_dir("record-full");
    let base = dir.join("session");
    // Writes to /dev/full fail as on a full disk (ENOSPC).
    std::os::unix::fs::symlink("/dev/full", dir.join("session.1")).unwrap();
    let target = greeting_echo_target().await;
    let server = LoggedBinary::start(&[
        "--record",
        base.to_str().unwrap(),
        "127.0.0.1:0",
        &target.to_string(),
    ])
    .await;
    let (down, up) = session(server.addr).await;
    assert_eq!(down.len(), greeting().len() + up.len());
    // Stopped at the first failed write, while the session ran (the writer flushes whenever
    // it is idle), not only when the session's end mark could not be written.
    let warning = server.wait_for("stopped (the session goes on)").await;
    assert!(warning.contains("No space left"), "{warning}");
    server.wait_for("closed: client closed (1000").await;
}

/// At exit the server waits (up to 5 s) for the writer thread, so the last recording ends with
/// its end mark. Here the writer is held up: the recording file is a FIFO that nobody reads
/// until the session has ended and the server is on its way out; only then is it read.
#[tokio::test]
async fn the_last_recording_is_finished_before_the_process_exits() {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;

    let dir = temp_dir("record-exit");
    let base = dir.join("session");
    let fifo = dir.join("session.1");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let target = greeting_echo_target().await;
    let mut server = LoggedBinary::start(&[
        "--run-once",
        "--record",
        base.to_str().unwrap(),
        "127.0.0.1:0",
        &target.to_string(),
    ])
    .await;
    let (down, up) = session(server.addr).await;
    // The session is over; the writer still waits to open the FIFO, and the server to exit.
    server.wait_for("closed: client closed (1000").await;
    let mut reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let text = bounded("the whole recording through the FIFO", async {
        let mut text = Vec::new();
        let mut buf = vec![0u8; 65536];
        while !text.ends_with(b"'EOF'];\n") {
            match reader.read(&mut buf) {
                Ok(n) => text.extend_from_slice(&buf[..n]),
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(err) => panic!("reading the FIFO: {err}"),
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        text
    })
    .await;
    assert!(server
        .exit_status(std::time::Duration::from_secs(10))
        .await
        .success());
    let copy = dir.join("copy");
    std::fs::write(&copy, &text).unwrap();
    let (to_client, from_client, _) = replay(&copy);
    assert!(to_client == down, "the bytes to the client differ");
    assert!(from_client == up, "the bytes from the client differ");
}

#[tokio::test]
async fn a_disk_that_does_not_keep_up_stops_the_recording_at_its_bound_not_the_relay() {
    let dir = temp_dir("record-stuck");
    let base = dir.join("session");
    // Opening a FIFO nobody reads blocks: the writer is stuck as on a hung disk.
    let fifo = dir.join("session.1");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let target = echo_server().await;
    let server = LoggedBinary::start(&[
        "--record",
        base.to_str().unwrap(),
        "127.0.0.1:0",
        &target.to_string(),
    ])
    .await;
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let mut client = RawClient::new(stream);
    let head = client.request(&upgrade_request("/", "")).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // 6 MiB each way: one and a half times the session's 8 MiB backlog, before the escaping
    // that makes each byte cost more in the file.
    let chunk = vec![0x5a; 64 * 1024];
    for _ in 0..(6 * 1024 * 1024 / chunk.len()) {
        client.send(true, 0x2, &chunk).await;
        assert_eq!(client.read_data(chunk.len()).await.len(), chunk.len());
    }
    let warning = server.wait_for("stopped (the session goes on)").await;
    assert!(warning.contains("behind"), "{warning}");
    client.send(true, 0x8, &[0x03, 0xE8]).await;
    assert_eq!(client.read_close().await.0, 1000);
    // The writer stays stuck in its open(): the binary is killed when `server` drops.
}
