//! `--metrics-listen`: the real binary scraped over HTTP while sessions flow; `/healthz`; the
//! endpoint's refusals; a port in use; every exported metric documented; every query of the
//! Grafana dashboard (`contrib/grafana/websockify.json`) names an exported metric.

use websockify_test_support as support;

use std::net::SocketAddr;
use std::time::Duration;

use support::metrics::{get, scrape, start, value};
use support::*;
use tokio::net::TcpStream;

/// Scrapes until `done` holds (the server updates metrics as sessions end, a moment after the
/// client saw the end), failing after the common bound.
async fn scrape_until(addr: SocketAddr, what: &str, done: impl Fn(&str) -> bool) -> String {
    bounded(what, async {
        loop {
            let text = scrape(addr).await;
            if done(&text) {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

const ACCEPTED: &str = "websockify_connections_accepted_total";
const ACTIVE: &str = "websockify_connections_active";
const CLOSED: &str = "websockify_connections_closed_total";
const UP: &str = "websockify_bytes_total{direction=\"client_to_target\"}";
const DOWN: &str = "websockify_bytes_total{direction=\"target_to_client\"}";

#[tokio::test]
async fn counters_follow_sessions_while_they_flow() {
    let target = echo_server().await;
    let (server, metrics) = start(&[&target.to_string()]).await;

    let (mut long, _) = RawClient::connect(server.addr, None).await;
    long.send(true, 0x2, b"hello").await;
    assert_eq!(long.read_data(5).await, b"hello");
    let text = scrape(metrics).await;
    assert_eq!(value(&text, ACCEPTED), 1.0, "{text}");
    assert_eq!(value(&text, ACTIVE), 1.0, "{text}");
    assert_eq!(value(&text, CLOSED), 0.0, "{text}");
    assert_eq!(
        value(&text, "websockify_sessions_total{transport=\"plain\"}"),
        1.0
    );

    // A second session starts, relays and ends while the first one still runs.
    let (mut short, _) = RawClient::connect(server.addr, None).await;
    let payload = vec![7u8; 1000];
    short.send(true, 0x2, &payload).await;
    assert_eq!(short.read_data(1000).await, payload);
    short.send(true, 0x8, &[0x03, 0xE8]).await;
    assert_eq!(short.read_close().await.0, 1000);
    let text = scrape_until(metrics, "the short session counted closed", |t| {
        value(t, CLOSED) == 1.0
    })
    .await;
    assert_eq!(value(&text, ACCEPTED), 2.0, "{text}");
    assert_eq!(value(&text, ACTIVE), 1.0, "{text}");
    assert_eq!(
        value(
            &text,
            "websockify_sessions_closed_total{outcome=\"client_closed\"}"
        ),
        1.0,
        "{text}"
    );
    assert_eq!(value(&text, UP), 1000.0, "{text}");
    assert_eq!(value(&text, DOWN), 1000.0, "{text}");

    long.send(true, 0x8, &[0x03, 0xE8]).await;
    assert_eq!(long.read_close().await.0, 1000);
    let text = scrape_until(metrics, "both sessions counted closed", |t| {
        value(t, CLOSED) == 2.0
    })
    .await;
    assert_eq!(value(&text, ACTIVE), 0.0, "{text}");
    assert_eq!(value(&text, UP), 1005.0, "{text}");
    assert_eq!(value(&text, DOWN), 1005.0, "{text}");
    assert_eq!(
        value(&text, "websockify_session_duration_seconds_count"),
        2.0,
        "{text}"
    );
    assert!(
        text.contains("websockify_session_duration_seconds_bucket{le=\"+Inf\"} 2"),
        "{text}"
    );
    assert_eq!(
        value(&text, "websockify_target_connect_duration_seconds_count"),
        2.0,
        "{text}"
    );
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        text.contains(&format!("websockify_build_info{{version=\"{version}\"}} 1")),
        "{text}"
    );
}

/// A server with a token file that sees one of each: a 404, a 502 after a failed connect, a
/// 400, a session; returns the scrape once every connection is counted closed.
async fn one_of_each() -> String {
    let echo = echo_server().await;
    let closed = closed_port().await;
    let dir = temp_dir("metrics-tokens");
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, format!("good: {echo}\ndead: {closed}\n")).unwrap();
    let source = format!("--token-source={}", tokens.display());
    let (server, metrics) = start(&["--token-plugin=TokenFile", &source]).await;

    for (path, status) in [("/?token=nope", "404"), ("/?token=dead", "502")] {
        let answer = send_and_read_all(server.addr, upgrade_request(path, "").as_bytes()).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{answer}"
        );
    }
    let no_key = b"GET /?token=good HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
                   Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let answer = send_and_read_all(server.addr, no_key).await;
    assert!(answer.starts_with(b"HTTP/1.1 400"), "{answer:?}");
    let mut client = RawClient::new(TcpStream::connect(server.addr).await.unwrap());
    let head = client.request(&upgrade_request("/?token=good", "")).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    client.send(true, 0x8, &[0x03, 0xE8]).await;
    assert_eq!(client.read_close().await.0, 1000);

    scrape_until(metrics, "every connection counted closed", |t| {
        value(t, CLOSED) == 4.0
    })
    .await
}

#[tokio::test]
async fn refusals_connect_failures_and_token_lookups_show_under_their_reason() {
    let text = one_of_each().await;
    let refusals = "websockify_handshake_refusals_total";
    for (series, n) in [
        (
            format!("{refusals}{{reason=\"client_not_found\",status=\"404\"}}"),
            1.0,
        ),
        (
            format!("{refusals}{{reason=\"target_connect\",status=\"502\"}}"),
            1.0,
        ),
        (
            format!("{refusals}{{reason=\"client_bad_request\",status=\"400\"}}"),
            1.0,
        ),
        (
            "websockify_target_connect_failures_total{reason=\"target_connect\"}".into(),
            1.0,
        ),
        (
            "websockify_token_lookups_total{plugin=\"file\",result=\"unknown\"}".into(),
            1.0,
        ),
        (
            "websockify_token_lookups_total{plugin=\"file\",result=\"found\"}".into(),
            2.0,
        ),
        ("websockify_sessions_total{transport=\"plain\"}".into(), 1.0),
    ] {
        assert_eq!(value(&text, &series), n, "{series} in\n{text}");
    }
}

#[tokio::test]
async fn healthz_says_ok_while_listening_and_503_once_the_listener_stopped() {
    let target = echo_server().await;
    let (server, metrics) = start(&["--timeout=1", &target.to_string()]).await;
    assert_eq!(
        get(metrics, "GET", "/healthz").await,
        ("HTTP/1.1 200 OK".into(), "ok\n".into())
    );
    // A session keeps the process alive after the listener stops at --timeout.
    let (mut client, _) = RawClient::connect(server.addr, None).await;
    server.wait_for("listener exit due to --timeout").await;
    let (status, _) = get(metrics, "GET", "/healthz").await;
    assert!(status.starts_with("HTTP/1.1 503"), "{status}");
    // Metrics still answer during the drain.
    assert_eq!(value(&scrape(metrics).await, ACTIVE), 1.0);
    client.send(true, 0x8, &[0x03, 0xE8]).await;
    assert_eq!(client.read_close().await.0, 1000);
}

#[tokio::test]
async fn only_get_metrics_and_healthz_are_served() {
    let (_server, metrics) = start(&["127.0.0.1:1"]).await;
    let (status, _) = get(metrics, "POST", "/metrics").await;
    assert!(status.starts_with("HTTP/1.1 405"), "{status}");
    let (status, _) = get(metrics, "DELETE", "/healthz").await;
    assert!(status.starts_with("HTTP/1.1 405"), "{status}");
    let (status, _) = get(metrics, "GET", "/").await;
    assert!(status.starts_with("HTTP/1.1 404"), "{status}");
    let (status, _) = get(metrics, "GET", "/metrics/../healthz").await;
    assert!(status.starts_with("HTTP/1.1 404"), "{status}");
    // A head that never ends is cut off at the buffer bound, not kept.
    let mut huge = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 64 * 1024));
    let mut stream = TcpStream::connect(metrics).await.unwrap();
    use tokio::io::AsyncWriteExt;
    let _ = stream.write_all(&huge).await;
    let answer = read_until_dropped(&mut stream).await;
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

#[tokio::test]
async fn a_metrics_port_in_use_is_a_startup_error_naming_the_option() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut server =
        LoggedBinary::spawn(&["--metrics-listen", &addr, "127.0.0.1:0", "127.0.0.1:1"]);
    let status = server.exit_status(WAIT).await;
    assert!(!status.success());
    let line = server.wait_for("--metrics-listen").await;
    assert!(line.contains(&addr), "{line}");
}

#[tokio::test]
async fn every_exported_metric_is_documented() {
    // Families without a sample are not shown: make one of each.
    let text = one_of_each().await;
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
        .unwrap();
    let mut exported: Vec<String> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .map(|rest| match rest.split_once(' ') {
            Some((name, "counter")) => format!("{name}_total"),
            Some((name, "info")) => format!("{name}_info"),
            Some((name, _)) => name.to_owned(),
            None => rest.to_owned(),
        })
        .collect();
    exported.sort();
    let mut listed: Vec<String> = websockify::metrics::NAMES
        .iter()
        .map(|n| n.to_string())
        .collect();
    listed.sort();
    assert_eq!(exported, listed, "NAMES is not what a scrape shows");
    for name in &exported {
        assert!(
            doc.contains(&format!("`{name}`")),
            "{name} is not documented in docs/operations.md"
        );
    }
}

// ---- The Grafana dashboard ----

/// The metric names a PromQL expression selects: what is left once strings, label matchers,
/// ranges, numbers, functions, keywords and the labels of `by (...)` and the like are gone.
fn promql_metric_names(expr: &str) -> Vec<String> {
    const GROUPINGS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    // Aggregations may come before their `by (...)`, away from their parenthesis.
    const KEYWORDS: &[&str] = &[
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    // Skips from an opening bracket to its match, strings inside included.
    let skip_group = |mut i: usize, open: char, close: char| {
        let mut depth = 0;
        let mut quoted = false;
        while i < chars.len() {
            match chars[i] {
                '\\' if quoted => i += 1,
                '"' => quoted = !quoted,
                c if c == open && !quoted => depth += 1,
                c if c == close && !quoted => {
                    depth -= 1;
                    if depth == 0 {
                        return i + 1;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        i
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            i = skip_group(i, '{', '}');
        } else if c == '[' {
            i = skip_group(i, '[', ']');
        } else if c == '"' {
            i = skip_group(i, '"', '"');
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let call = chars.get(next) == Some(&'(');
            if GROUPINGS.contains(&word.as_str()) && call {
                i = skip_group(next, '(', ')');
            } else if !call && !KEYWORDS.contains(&word.as_str()) {
                names.push(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn promql_metric_names_strip_functions_labels_ranges_and_groupings() {
    assert_eq!(
        promql_metric_names(
            "histogram_quantile(0.9, sum by (le) (rate(a_bucket{x=~\"$i\",y=\"}\"}[5m]))) \
             / on (instance) group_left (version) b_total offset 1h and bool c:d"
        ),
        ["a_bucket", "b_total", "c:d"]
    );
}

/// Every expression of the dashboard: each panel's targets' `expr`, and the metric of each
/// `label_values(METRIC, LABEL)` variable query.
fn dashboard_queries(dashboard: &serde_json::Value) -> Vec<String> {
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().unwrap_or("?");
        let targets = panel["targets"].as_array();
        let targets = targets.unwrap_or_else(|| panic!("panel {title:?} has no targets"));
        for target in targets {
            let expr = target["expr"].as_str();
            queries.push(
                expr.unwrap_or_else(|| panic!("{title:?}: no expr"))
                    .to_owned(),
            );
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
    {
        let query = variable["query"]["query"]
            .as_str()
            .expect("a variable query");
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|rest| rest.split(',').next())
            .unwrap_or_else(|| panic!("not label_values(METRIC, LABEL): {query}"));
        queries.push(inner.trim().to_owned());
    }
    queries
}

#[tokio::test]
async fn every_grafana_query_names_a_metric_the_server_exports() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/grafana/websockify.json"
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("valid JSON");
    // Importable: the data source is asked for at import and used by every query.
    assert_eq!(dashboard["__inputs"][0]["name"], "DS_PROMETHEUS");
    for panel in dashboard["panels"].as_array().unwrap() {
        assert_eq!(panel["datasource"]["uid"], "${DS_PROMETHEUS}", "{panel}");
    }

    // The names a real scrape shows, samples as Prometheus stores them (_total, _bucket...).
    let text = one_of_each().await;
    let scraped: std::collections::HashSet<&str> = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .collect();
    let mut used = std::collections::HashSet::new();
    for query in dashboard_queries(&dashboard) {
        let names = promql_metric_names(&query);
        assert!(!names.is_empty(), "no metric in {query}");
        for name in names {
            assert!(
                scraped.contains(name.as_str()),
                "{name} (in {query}) is not exported; a scrape shows {scraped:?}"
            );
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|family| websockify::metrics::NAMES.contains(family))
                .unwrap_or(&name);
            assert!(
                websockify::metrics::NAMES.contains(&family),
                "{name} is not in metrics::NAMES (the documented list)"
            );
            used.insert(family.to_owned());
        }
    }
    for name in websockify::metrics::NAMES {
        assert!(used.contains(*name), "no panel shows {name}");
    }
}
