//! The real binary with `--metrics-listen`, and its endpoint read over HTTP: for the metrics,
//! Grafana and scale-out tests.

use std::net::SocketAddr;

use super::{send_and_read_all, LoggedBinary};

/// The binary on 127.0.0.1 (any port), metrics on 127.0.0.1 (any port), with `args` last.
pub async fn start(args: &[&str]) -> (LoggedBinary, SocketAddr) {
    let mut all = vec!["--metrics-listen", "127.0.0.1:0", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let server = LoggedBinary::start(&all).await;
    let line = server.wait_for("Metrics on http://").await;
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (server, addr)
}

/// The status line and body of `METHOD PATH` on the metrics endpoint.
pub async fn get(addr: SocketAddr, method: &str, path: &str) -> (String, String) {
    let raw = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let answer = send_and_read_all(addr, raw.as_bytes()).await;
    let answer = String::from_utf8(answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, body.to_owned())
}

pub async fn scrape(addr: SocketAddr) -> String {
    let (status, body) = get(addr, "GET", "/metrics").await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    body
}

/// The value of the sample `series` (name and labels exactly as exposed), 0 when absent.
pub fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}
