//! The same-port web server (`--web DIR`, `--file-only`) and the Flash socket-policy answer,
//! over real sockets: files, types, HEAD, index and listings, redirects, 304, 206 and 416,
//! streaming of a large file, every path-traversal variant, TLS on the same port, and
//! WebSocket upgrades next to it.

use websockify_test_support as support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use support::{
    bounded, echo_server, self_signed, settings_to, start_proxy, temp_dir, upgrade_request, Proxy,
    RawClient,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use websockify::Settings;

const SECRET: &str = "TOP SECRET, outside the web root";

/// A web root with files, directories and symlinks, next to a secret outside it.
struct Site {
    /// The web root (`--web`).
    root: PathBuf,
    /// A file outside the root.
    secret: PathBuf,
}

fn site() -> Site {
    let base = temp_dir("web");
    let root = base.join("www");
    let outside = base.join("outside");
    std::fs::create_dir_all(root.join("app")).unwrap();
    std::fs::create_dir_all(root.join("list/nested")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let secret = base.join("secret.txt");
    std::fs::write(&secret, SECRET).unwrap();
    std::fs::write(outside.join("secret.txt"), SECRET).unwrap();

    std::fs::write(root.join("hello.txt"), "hello, web\n").unwrap();
    std::fs::write(root.join("style.css"), "body{}").unwrap();
    std::fs::write(root.join("app.js"), "let a = 1;").unwrap();
    std::fs::write(root.join("mod.mjs"), "export {}").unwrap();
    std::fs::write(root.join("logo.svg"), "<svg/>").unwrap();
    std::fs::write(root.join("app.wasm"), b"\0asm").unwrap();
    std::fs::write(root.join("data.json"), "{}").unwrap();
    std::fs::write(root.join("app/index.html"), "<h1>app</h1>").unwrap();
    std::fs::write(root.join("list/<script>.txt"), "x").unwrap();
    std::fs::write(root.join("list/a&b.txt"), "y").unwrap();
    std::os::unix::fs::symlink(&secret, root.join("escape")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("outdir")).unwrap();
    std::os::unix::fs::symlink(root.join("hello.txt"), root.join("alias.txt")).unwrap();
    Site { root, secret }
}

fn web_settings(site: &Site, target: SocketAddr) -> Settings {
    let mut settings = settings_to(target);
    settings.web = Some(site.root.clone());
    settings.handshake_timeout = Duration::from_millis(500);
    settings
}

async fn web_proxy(site: &Site) -> Proxy {
    start_proxy(web_settings(site, echo_server().await)).await
}

/// A whole HTTP response, read until the server closed the connection.
#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `method target` with `extra` header lines and `Connection: close` over `stream`, and
/// reads the response to the end.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    method: &str,
    target: &str,
    extra: &str,
) -> Reply {
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    bounded("the whole response", stream.read_to_end(&mut raw))
        .await
        .unwrap();
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8(raw[..end + 4].to_vec()).unwrap();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    Reply {
        status,
        head,
        body: raw[end + 4..].to_vec(),
    }
}

async fn request(addr: SocketAddr, method: &str, target: &str, extra: &str) -> Reply {
    let stream = TcpStream::connect(addr).await.unwrap();
    exchange(stream, method, target, extra).await
}

async fn get(addr: SocketAddr, target: &str) -> Reply {
    request(addr, "GET", target, "").await
}

// ---- files ----

#[tokio::test]
async fn get_serves_a_file_with_type_length_and_validators() {
    let site = site();
    let proxy = web_proxy(&site).await;
    let reply = get(proxy.addr, "/hello.txt").await;
    assert_eq!(reply.status, 200, "{}", reply.head);
    assert_eq!(reply.text(), "hello, web\n");
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(reply.header("content-length"), Some("11"));
    assert_eq!(reply.header("accept-ranges"), Some("bytes"));
    assert!(reply.header("etag").is_some_and(|e| e.starts_with('"')));
    assert!(reply
        .header("last-modified")
        .is_some_and(|d| d.ends_with("GMT")));
    proxy.stop().await;
}

#[tokio::test]
async fn web_assets_get_their_content_types() {
    let site = site();
    let proxy = web_proxy(&site).await;
    for (path, want) in [
        ("/style.css", "text/css; charset=utf-8"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/mod.mjs", "text/javascript; charset=utf-8"),
        ("/logo.svg", "image/svg+xml"),
        ("/app.wasm", "application/wasm"),
        ("/data.json", "application/json"),
        ("/app/index.html", "text/html; charset=utf-8"),
    ] {
        let reply = get(proxy.addr, path).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.head);
        assert_eq!(reply.header("content-type"), Some(want), "{path}");
    }
    proxy.stop().await;
}

#[tokio::test]
async fn head_gets_the_headers_and_length_but_no_body() {
    let site = site();
    let proxy = web_proxy(&site).await;
    let reply = request(proxy.addr, "HEAD", "/hello.txt", "").await;
    assert_eq!(reply.status, 200, "{}", reply.head);
    assert_eq!(reply.header("content-length"), Some("11"));
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert!(reply.body.is_empty(), "HEAD got a body: {:?}", reply.text());
    let listing = request(proxy.addr, "HEAD", "/list/", "").await;
    assert_eq!(listing.status, 200);
    assert!(listing.body.is_empty());
    proxy.stop().await;
}

#[tokio::test]
async fn a_symlink_inside_the_root_is_served() {
    let site = site();
    let proxy = web_proxy(&site).await;
    let reply = get(proxy.addr, "/alias.txt").await;
    assert_eq!(reply.status, 200, "{}", reply.head);
    assert_eq!(reply.text(), "hello, web\n");
    proxy.stop().await;
}

#[tokio::test]
async fn missing_files_are_404_and_a_file_asked_as_a_directory_too() {
    let site = site();
    let proxy = web_proxy(&site).await;
    assert_eq!(get(proxy.addr, "/nope.txt").await.status, 404);
    assert_eq!(get(proxy.addr, "/hello.txt/").await.status, 404);
    proxy.stop().await;
}

#[tokio::test]
async fn a_fifo_in_the_root_is_404_and_does_not_hang() {
    let site = site();
    let made = std::process::Command::new("mkfifo")
        .arg(site.root.join("pipe"))
        .status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("mkfifo not available; skipped");
        return;
    }
    let proxy = web_proxy(&site).await;
    assert_eq!(get(proxy.addr, "/pipe").await.status, 404);
    proxy.stop().await;
}

// ---- directories ----

#[tokio::test]
async fn a_directory_with_index_html_serves_it() {
    let site = site();
    let proxy = web_proxy(&site).await;
    let reply = get(proxy.addr, "/app/").await;
    assert_eq!(reply.status, 200, "{}", reply.head);
    assert_eq!(reply.text(), "<h1>app</h1>");
    assert_eq!(
        reply.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_directory_without_trailing_slash_redirects_301_keeping_the_query() {
    let site = site();
    let proxy = web_proxy(&site).await;
    let reply = get(proxy.addr, "/app").await;
    assert_eq!(reply.status, 301, "{}", reply.head);
    assert_eq!(reply.header("location"), Some("/app/"));
    let reply = get(proxy.addr, "/list?sort=name").await;
    assert_eq!(reply.header("location"), Some("/list/?sort=name"));
    // never a redirect to another host
    let reply = get(proxy.addr, "//app").await;
    assert_eq!(reply.status, 301);
    assert_eq!(reply.header("location"), Some("/app/"));
    proxy.stop().await;
}

#[tokio::test]
async fn a_directory_without_index_is_listed_with_names_escaped() {
    let site = site();
    let proxy = web_proxy(&site).await;
    let reply = get(proxy.addr, "/list/").await;
    assert_eq!(reply.status, 200, "{}", reply.head);
    assert_eq!(
        reply.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let html = reply.text();
    assert!(html.contains("Directory listing for /list/"), "{html}");
    assert!(!html.contains("<script>"), "unescaped name in {html}");
    assert!(
        html.contains("<a href=\"%3Cscript%3E.txt\">&lt;script&gt;.txt</a>"),
        "{html}"
    );
    assert!(
        html.contains("<a href=\"a%26b.txt\">a&amp;b.txt</a>"),
        "{html}"
    );
    assert!(html.contains("<a href=\"nested/\">nested/</a>"), "{html}");
    // the root lists symlinks with an @, and listing them does not follow them out
    let root = get(proxy.addr, "/").await;
    assert_eq!(root.status, 200);
    assert!(root.text().contains(">escape@</a>"), "{}", root.text());
    assert!(!root.text().contains(SECRET));
    proxy.stop().await;
}

#[tokio::test]
async fn file_only_turns_listings_into_404_but_still_serves_files_and_indexes() {
    let site = site();
    let mut settings = web_settings(&site, echo_server().await);
    settings.file_only = true;
    let proxy = start_proxy(settings).await;
    assert_eq!(get(proxy.addr, "/list/").await.status, 404);
    assert_eq!(get(proxy.addr, "/").await.status, 404);
    assert_eq!(get(proxy.addr, "/app/").await.status, 200);
    assert_eq!(get(proxy.addr, "/hello.txt").await.status, 200);
    proxy.stop().await;
}

// ---- conditional requests ----

#[tokio::test]
async fn if_none_match_with_the_current_etag_gives_304_without_body() {
    let site = site();
    let proxy = web_proxy(&site).await;
    let first = get(proxy.addr, "/hello.txt").await;
    let etag = first.header("etag").unwrap().to_owned();
    let reply = request(
        proxy.addr,
        "GET",
        "/hello.txt",
        &format!("If-None-Match: {etag}\r\n"),
    )
    .await;
    assert_eq!(reply.status, 304, "{}", reply.head);
    assert!(reply.body.is_empty());
    assert_eq!(reply.header("etag"), Some(etag.as_str()));
    let stale = request(
        proxy.addr,
        "GET",
        "/hello.txt",
        "If-None-Match: \"stale\"\r\n",
    )
    .await;
    assert_eq!(stale.status, 200);
    assert_eq!(stale.text(), "hello, web\n");
    proxy.stop().await;
}

#[tokio::test]
async fn if_modified_since_the_last_modification_gives_304() {
    let site = site();
    let proxy = web_proxy(&site).await;
    let first = get(proxy.addr, "/hello.txt").await;
    let date = first.header("last-modified").unwrap().to_owned();
    let reply = request(
        proxy.addr,
        "GET",
        "/hello.txt",
        &format!("If-Modified-Since: {date}\r\n"),
    )
    .await;
    assert_eq!(reply.status, 304, "{}", reply.head);
    assert!(reply.body.is_empty());
    let old = request(
        proxy.addr,
        "GET",
        "/hello.txt",
        "If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n",
    )
    .await;
    assert_eq!(old.status, 200);
    proxy.stop().await;
}

// ---- ranges ----

#[tokio::test]
async fn a_range_gives_206_with_content_range() {
    let site = site();
    let proxy = web_proxy(&site).await;
    let reply = request(proxy.addr, "GET", "/hello.txt", "Range: bytes=7-9\r\n").await;
    assert_eq!(reply.status, 206, "{}", reply.head);
    assert_eq!(reply.text(), "web");
    assert_eq!(reply.header("content-range"), Some("bytes 7-9/11"));
    assert_eq!(reply.header("content-length"), Some("3"));
    let tail = request(proxy.addr, "GET", "/hello.txt", "Range: bytes=-4\r\n").await;
    assert_eq!(tail.status, 206);
    assert_eq!(tail.text(), "web\n");
    assert_eq!(tail.header("content-range"), Some("bytes 7-10/11"));
    let open = request(proxy.addr, "GET", "/hello.txt", "Range: bytes=5-\r\n").await;
    assert_eq!(open.text(), ", web\n");
    proxy.stop().await;
}

#[tokio::test]
async fn an_unsatisfiable_range_gives_416() {
    let site = site();
    let proxy = web_proxy(&site).await;
    let reply = request(proxy.addr, "GET", "/hello.txt", "Range: bytes=11-\r\n").await;
    assert_eq!(reply.status, 416, "{}", reply.head);
    assert_eq!(reply.header("content-range"), Some("bytes */11"));
    proxy.stop().await;
}

#[tokio::test]
async fn a_range_with_a_stale_if_range_gets_the_whole_file() {
    let site = site();
    let proxy = web_proxy(&site).await;
    let reply = request(
        proxy.addr,
        "GET",
        "/hello.txt",
        "Range: bytes=0-1\r\nIf-Range: \"stale\"\r\n",
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.head);
    assert_eq!(reply.text(), "hello, web\n");
    proxy.stop().await;
}

/// The peak resident memory of this process (VmHWM), in bytes.
fn peak_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[tokio::test]
async fn a_large_file_is_streamed_whole_and_by_ranges_without_being_read_into_memory() {
    const LEN: u64 = 64 * 1024 * 1024;
    let site = site();
    let path = site.root.join("big.bin");
    let marks: [(u64, &[u8]); 3] = [
        (0, b"FIRST"),
        (LEN / 2 + 12345, b"MIDDLE"),
        (LEN - 4, b"LAST"),
    ];
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut file = std::fs::File::create(&path).unwrap();
        file.set_len(LEN).unwrap(); // sparse: no 64 MiB written
        for (at, mark) in marks {
            file.seek(SeekFrom::Start(at)).unwrap();
            file.write_all(mark).unwrap();
        }
    }
    let proxy = web_proxy(&site).await;
    let before = peak_memory();

    // The whole file, counted as it arrives (the test keeps none of it).
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut chunk = vec![0u8; 256 * 1024];
    let mut body_len: u64 = 0;
    let mut found = [false; 3];
    let mut head_done = false;
    bounded("a 64 MiB download", async {
        loop {
            let n = stream.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            let mut data = &chunk[..n];
            if !head_done {
                // the head is a few hundred bytes: byte by byte up to its blank line
                let mut i = 0;
                while i < data.len() && !head.ends_with(b"\r\n\r\n") {
                    head.push(data[i]);
                    i += 1;
                }
                head_done = head.ends_with(b"\r\n\r\n");
                data = &data[i..];
            }
            for (k, (at, mark)) in marks.iter().enumerate() {
                let end = at + mark.len() as u64;
                // a mark split across two reads is not checked here (the ranges below are)
                if *at >= body_len && end <= body_len + data.len() as u64 {
                    let from = (at - body_len) as usize;
                    assert_eq!(&data[from..from + mark.len()], *mark);
                    found[k] = true;
                }
            }
            body_len += data.len() as u64;
        }
    })
    .await;
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("content-length: {LEN}\r\n")),
        "{head}"
    );
    assert_eq!(body_len, LEN);
    assert!(found[0] && found[2], "first and last marks: {found:?}");

    // A few ranges, as a resuming download asks for them.
    for (at, mark) in marks {
        let end = at + mark.len() as u64 - 1;
        let reply = request(
            proxy.addr,
            "GET",
            "/big.bin",
            &format!("Range: bytes={at}-{end}\r\n"),
        )
        .await;
        assert_eq!(reply.status, 206, "{}", reply.head);
        assert_eq!(reply.body, mark);
        let want = format!("bytes {at}-{end}/{LEN}");
        assert_eq!(reply.header("content-range"), Some(want.as_str()));
    }
    let resume = request(
        proxy.addr,
        "GET",
        "/big.bin",
        &format!("Range: bytes={}-\r\n", LEN - 10),
    )
    .await;
    assert_eq!(resume.body.len(), 10);
    assert!(resume.body.ends_with(b"LAST"));

    if let (Some(before), Some(after)) = (before, peak_memory()) {
        assert!(
            after.saturating_sub(before) < LEN / 2,
            "peak memory grew by {} bytes while serving a {LEN}-byte file",
            after - before
        );
    }
    proxy.stop().await;
}

// ---- path safety ----

/// Asserts `target` is refused (403 or 404) and shows nothing of the secret.
async fn assert_refused(addr: SocketAddr, target: &str) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let reply = exchange(stream, "GET", target, "").await;
    assert!(
        matches!(reply.status, 400 | 403 | 404),
        "{target}: {}",
        reply.head
    );
    assert!(!reply.text().contains(SECRET), "{target} leaked the secret");
}

#[tokio::test]
async fn dot_dot_segments_never_leave_the_root() {
    let site = site();
    let proxy = web_proxy(&site).await;
    for target in [
        "/../secret.txt",
        "/../../secret.txt",
        "/app/../../secret.txt",
        "/./../secret.txt",
    ] {
        assert_refused(proxy.addr, target).await;
    }
    proxy.stop().await;
}

#[tokio::test]
async fn percent_encoded_dots_and_slashes_never_leave_the_root() {
    let site = site();
    let proxy = web_proxy(&site).await;
    for target in [
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/.%2e/secret.txt",
        "/%2e%2e%2fsecret.txt",
        "/app%2f..%2f..%2fsecret.txt",
        "/app/%2e%2e/%2e%2e/secret.txt",
        "/hello.txt%2f",
    ] {
        assert_refused(proxy.addr, target).await;
    }
    proxy.stop().await;
}

#[tokio::test]
async fn backslashes_never_leave_the_root() {
    let site = site();
    let proxy = web_proxy(&site).await;
    for target in [
        "/..\\secret.txt",
        "/app\\..\\..\\secret.txt",
        "/..%5csecret.txt",
    ] {
        assert_refused(proxy.addr, target).await;
    }
    proxy.stop().await;
}

#[tokio::test]
async fn nul_bytes_are_refused() {
    let site = site();
    let proxy = web_proxy(&site).await;
    assert_refused(proxy.addr, "/hello.txt%00").await;
    assert_refused(proxy.addr, "/hello.txt%00.html").await;
    // a raw NUL in the request line: hyper refuses the request itself
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"GET /hello.txt\0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    let _ = bounded("refusal", stream.read_to_end(&mut raw)).await;
    let text = String::from_utf8_lossy(&raw);
    assert!(!text.contains("hello, web"), "{text}");
    proxy.stop().await;
}

#[tokio::test]
async fn absolute_paths_stay_inside_the_root() {
    let site = site();
    let proxy = web_proxy(&site).await;
    let secret = site.secret.display().to_string();
    for target in [
        secret.clone(),
        format!("/{secret}"),
        format!("http://127.0.0.1{secret}"),
        "/etc/passwd".to_owned(),
        "//etc/passwd".to_owned(),
    ] {
        let reply = get(proxy.addr, &target).await;
        assert_eq!(reply.status, 404, "{target}: {}", reply.head);
        assert!(!reply.text().contains(SECRET), "{target}");
    }
    proxy.stop().await;
}

#[tokio::test]
async fn symlinks_leading_outside_the_root_are_forbidden() {
    let site = site();
    let proxy = web_proxy(&site).await;
    for target in ["/escape", "/outdir/secret.txt", "/outdir/"] {
        let reply = get(proxy.addr, target).await;
        assert_eq!(reply.status, 403, "{target}: {}", reply.head);
        assert!(!reply.text().contains(SECRET), "{target}");
    }
    proxy.stop().await;
}

#[tokio::test]
async fn a_symlinked_index_leading_outside_the_root_is_forbidden() {
    let site = site();
    std::fs::create_dir_all(site.root.join("trap")).unwrap();
    std::os::unix::fs::symlink(&site.secret, site.root.join("trap/index.html")).unwrap();
    let proxy = web_proxy(&site).await;
    let reply = get(proxy.addr, "/trap/").await;
    assert_eq!(reply.status, 403, "{}", reply.head);
    assert!(!reply.text().contains(SECRET));
    proxy.stop().await;
}

// ---- methods ----

#[tokio::test]
async fn other_methods_get_405_with_allow_get_head_when_web_is_on() {
    let site = site();
    let proxy = web_proxy(&site).await;
    for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"] {
        let reply = request(proxy.addr, method, "/hello.txt", "Content-Length: 0\r\n").await;
        assert_eq!(reply.status, 405, "{method}: {}", reply.head);
        assert_eq!(reply.header("allow"), Some("GET, HEAD"), "{method}");
    }
    proxy.stop().await;
}

#[tokio::test]
async fn without_web_get_head_and_other_methods_get_405() {
    let proxy = start_proxy(settings_to(echo_server().await)).await;
    for method in ["GET", "HEAD", "POST"] {
        let reply = request(proxy.addr, method, "/index.html", "Content-Length: 0\r\n").await;
        assert_eq!(reply.status, 405, "{method}: {}", reply.head);
    }
    proxy.stop().await;
}

// ---- next to WebSockets and TLS ----

#[tokio::test]
async fn websocket_upgrades_still_work_on_any_path_with_web_on() {
    let site = site();
    let proxy = web_proxy(&site).await;
    for path in ["/websockify", "/", "/hello.txt", "/app/", "/no/such/dir"] {
        let stream = TcpStream::connect(proxy.addr).await.unwrap();
        let mut client = RawClient::new(stream);
        let head = client.request(&upgrade_request(path, "")).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{path}: {head}");
        client.send(true, 0x2, b"ping through").await;
        assert_eq!(client.read_data(12).await, b"ping through", "{path}");
    }
    proxy.stop().await;
}

#[tokio::test]
async fn web_works_over_tls_on_the_same_port() {
    let site = site();
    let (cert_pem, key_pem, der) = self_signed();
    let pem = temp_dir("web-tls").join("self.pem");
    std::fs::write(&pem, format!("{cert_pem}{key_pem}")).unwrap();
    let mut settings = web_settings(&site, echo_server().await);
    settings.cert = pem;
    let proxy = start_proxy(settings).await;

    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(der)).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = bounded(
        "TLS handshake",
        TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .unwrap();
    let reply = exchange(tls, "GET", "/hello.txt", "").await;
    assert_eq!(reply.status, 200, "{}", reply.head);
    assert_eq!(reply.text(), "hello, web\n");

    // and plain HTTP on the same port
    assert_eq!(get(proxy.addr, "/hello.txt").await.status, 200);
    proxy.stop().await;
}

// ---- Flash socket policy ----

const POLICY: &[u8] =
    b"<cross-domain-policy><allow-access-from domain=\"*\" to-ports=\"*\" /></cross-domain-policy>\0";

/// Sends `bytes` and returns everything the server sends before closing.
async fn send_and_read_all(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut got = Vec::new();
    bounded("the server to close", async {
        let mut chunk = [0u8; 1024];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    got
}

#[tokio::test]
async fn flash_policy_request_gets_the_policy_and_a_nul_then_close() {
    let proxy = start_proxy(settings_to(echo_server().await)).await;
    let got = send_and_read_all(proxy.addr, b"<policy-file-request/>\0").await;
    assert_eq!(got, POLICY);
    proxy.stop().await;
}

#[tokio::test]
async fn flash_policy_request_in_pieces_is_answered_too() {
    let proxy = start_proxy(settings_to(echo_server().await)).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    for piece in [&b"<pol"[..], b"icy-file-req", b"uest/>\0"] {
        stream.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut got = Vec::new();
    bounded("the policy", stream.read_to_end(&mut got))
        .await
        .unwrap();
    assert_eq!(got, POLICY);
    proxy.stop().await;
}

#[tokio::test]
async fn other_data_starting_with_angle_bracket_is_dropped_without_answer() {
    let mut settings = settings_to(echo_server().await);
    settings.handshake_timeout = Duration::from_millis(300);
    let proxy = start_proxy(settings).await;
    for bytes in [
        &b"<html><body>"[..],
        b"<policy-file-request/>\n",
        b"<policy-file-request/>",
        b"<",
    ] {
        let got = send_and_read_all(proxy.addr, bytes).await;
        assert!(got.is_empty(), "{bytes:?} got {got:?}");
    }
    proxy.stop().await;
}

#[tokio::test]
async fn flash_policy_works_with_web_on_too() {
    let site = site();
    let proxy = web_proxy(&site).await;
    let got = send_and_read_all(proxy.addr, b"<policy-file-request/>\0").await;
    assert_eq!(got, POLICY);
    proxy.stop().await;
}

// ---- stalled downloads (send timeout) ----

/// A sparse file of `len` bytes in the site's root, with its last 4 bytes "LAST".
fn big_file(site: &Site, name: &str, len: u64) {
    use std::io::{Seek, SeekFrom, Write};
    let mut file = std::fs::File::create(site.root.join(name)).unwrap();
    file.set_len(len).unwrap();
    file.seek(SeekFrom::Start(len - 4)).unwrap();
    file.write_all(b"LAST").unwrap();
}

/// A client socket with a small receive buffer (set before connecting, so the window stays
/// small): a client that stops reading stalls the server after little data.
async fn small_window_client(addr: SocketAddr, rcvbuf: u32) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(rcvbuf).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Whether the server still holds its end of the connection from `client_port` to the proxy
/// on `proxy_port`: an established socket owned by a descriptor (the kernel keeps a closed
/// socket with unsent data as an orphan, inode 0, until the peer reads it or gives up).
fn server_end_open(proxy_port: u16, client_port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let port = |addr: &str| {
        addr.rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok())
    };
    table.lines().skip(1).any(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        f.len() > 9
            && port(f[1]) == Some(proxy_port)
            && port(f[2]) == Some(client_port)
            && f[3] == "01"
            && f[9] != "0"
    })
}

const SEND_TIMEOUT: Duration = Duration::from_secs(1);

async fn stall_proxy(site: &Site, send_timeout: Duration, handshake_timeout: Duration) -> Proxy {
    let mut settings = web_settings(site, echo_server().await);
    settings.send_timeout = send_timeout;
    settings.handshake_timeout = handshake_timeout;
    start_proxy(settings).await
}

#[tokio::test]
async fn a_download_the_client_never_reads_is_dropped_after_the_send_timeout() {
    const LEN: u64 = 64 * 1024 * 1024;
    let site = site();
    big_file(&site, "big.bin", LEN);
    let proxy = stall_proxy(&site, SEND_TIMEOUT, Duration::from_secs(5)).await;
    let mut client = small_window_client(proxy.addr, 16 * 1024).await;
    let client_port = client.local_addr().unwrap().port();
    client
        .write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let asked = std::time::Instant::now();
    bounded("the server to take the connection", async {
        while !server_end_open(proxy.addr.port(), client_port) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    // The server's end goes away once the write has made no progress for SEND_TIMEOUT.
    bounded("the server to drop a stalled download", async {
        while server_end_open(proxy.addr.port(), client_port) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let dropped_after = asked.elapsed();
    assert!(
        dropped_after >= SEND_TIMEOUT,
        "dropped after {dropped_after:?}, before the send timeout"
    );
    assert!(
        dropped_after < SEND_TIMEOUT + Duration::from_millis(2500),
        "dropped only after {dropped_after:?}"
    );
    // What was already in the kernel's buffers still arrives, then the end: a truncated body.
    let mut got = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    bounded("the rest of a dropped download", async {
        loop {
            match client.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n as u64,
            }
        }
    })
    .await;
    assert!(
        got < LEN / 2,
        "{got} bytes of a dropped {LEN}-byte download"
    );
    // The server goes on serving.
    assert_eq!(get(proxy.addr, "/hello.txt").await.text(), "hello, web\n");
    proxy.stop().await;
}

#[tokio::test]
async fn a_slow_but_steady_reader_gets_every_byte_despite_the_send_timeout() {
    // 12 MiB read at ~4 MB/s: about 3 s in all (three send timeouts), with the server's
    // writes waiting on the client all along (its buffers take 4 MiB at most), but never for
    // more than ~15 ms at a time.
    const LEN: u64 = 12 * 1024 * 1024;
    let site = site();
    big_file(&site, "big.bin", LEN);
    let proxy = stall_proxy(&site, SEND_TIMEOUT, Duration::from_secs(5)).await;
    let mut client = small_window_client(proxy.addr, 64 * 1024).await;
    client
        .write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut raw = Vec::with_capacity(LEN as usize + 1024);
    let mut buf = vec![0u8; 64 * 1024];
    bounded("a slow download", async {
        loop {
            match client.read(&mut buf).await.unwrap() {
                0 => break,
                n => raw.extend_from_slice(&buf[..n]),
            }
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    })
    .await;
    let took = started.elapsed();
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(raw.starts_with(b"HTTP/1.1 200"));
    assert_eq!(raw.len() - end, LEN as usize, "after {took:?}");
    assert!(raw.ends_with(b"LAST"));
    assert!(
        took > SEND_TIMEOUT * 2,
        "the download took only {took:?}: too fast to show anything"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_not_cut_by_the_send_timeout() {
    let site = site();
    let send_timeout = Duration::from_millis(200);
    let proxy = stall_proxy(&site, send_timeout, Duration::from_secs(5)).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    for _ in 0..2 {
        stream
            .write_all(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        bounded("a response on a kept-alive connection", async {
            while !raw.ends_with(b"\r\n\r\nhello, web\n") {
                let n = stream.read(&mut buf).await.unwrap();
                assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&raw));
                raw.extend_from_slice(&buf[..n]);
            }
        })
        .await;
        assert!(raw.starts_with(b"HTTP/1.1 200"));
        // Idle for several send timeouts (all within the 5 s head timeout).
        tokio::time::sleep(send_timeout * 5).await;
    }
    proxy.stop().await;
}

/// The real binary, killed when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A process's resident memory (VmRSS), KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

#[tokio::test]
async fn stalled_downloads_each_hold_at_most_about_one_chunk_in_the_server() {
    // The real binary (its own process, so this test's memory does not count), serving a
    // 64 MiB file to N clients that never read. Each stalled download may hold: its connection
    // (hyper's state and buffers) and one chunk (64 KiB) queued in hyper, sometimes the
    // unsent tail of the chunk before it: measured 77-78 KiB each. The old body held up to
    // three chunks (hyper's, tokio's file buffer, and its own): measured 137-138 KiB each.
    const N: usize = 100;
    const LIMIT_KIB: u64 = 112;
    let site = site();
    big_file(&site, "big.bin", 64 * 1024 * 1024);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_websockify"))
            .arg("--web")
            .arg(&site.root)
            .args([&format!("127.0.0.1:{port}"), "127.0.0.1:9"])
            .env("RUST_LOG", "warn")
            // One malloc arena: the bound is on what the server holds, not on how glibc
            // spreads it over per-thread arenas when the machine is busy (other tests).
            .env("MALLOC_ARENA_MAX", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    bounded("the binary to listen", async {
        while TcpStream::connect(addr).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // Warm up (threads, pools, allocator arenas): a few whole downloads at once.
    let mut warm = tokio::task::JoinSet::new();
    for _ in 0..4 {
        warm.spawn(async move {
            let reply = get(addr, "/big.bin").await;
            assert!(reply.body.ends_with(b"LAST"));
        });
    }
    while let Some(done) = warm.join_next().await {
        done.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid);
    let mut clients = Vec::new();
    for _ in 0..N {
        let mut client = small_window_client(addr, 16 * 1024).await;
        client
            .write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        clients.push(client);
        // One at a time, so that a busy machine does not make the server start a blocking
        // thread per download (their stacks would count).
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Stalled once the server's memory stops moving (well within the 30 s send timeout).
    let during = bounded("the downloads to stall", async {
        let mut last = 0;
        let mut same = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = rss_kib(pid);
            same = if now == last { same + 1 } else { 0 };
            last = now;
            if same == 3 {
                return now;
            }
        }
    })
    .await;
    let per_download = during.saturating_sub(before) / N as u64;
    println!("RSS {before} KiB, {during} KiB with {N} stalled downloads: {per_download} KiB each");
    assert!(
        per_download < LIMIT_KIB,
        "{per_download} KiB per stalled download (RSS {before} -> {during} KiB)"
    );
    drop(clients);
}
