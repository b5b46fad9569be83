//! json: `--log-format json`, one JSON object per log line with the stable field names that
//! docs/operations.md lists. Every line written inside a connection's span carries its `conn`
//! and `client` (and `via` when a balancer or proxy named the client). Must never let peer
//! text split a line: every string goes through [`escape`].
//!
//! A tracing layer of its own rather than tracing-subscriber's `json` formatter: that one nests
//! span fields under `span`/`spans` with their own names, where we promise flat, renamed ones
//! (`conn`, `client`, `via`), and its escaping (serde_json's) leaves U+2028/U+2029, C1 and bidi
//! controls raw, which some log viewers take as line breaks or terminal commands.

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// The keys every line may have, in the order they are written; an event field of the same
/// name is written as `field_<name>` instead, so that none can be forged or doubled.
pub const RESERVED: [&str; 7] = ["ts", "level", "module", "conn", "client", "via", "msg"];

/// Writes each event as one JSON line to every sink (stderr, `--log-file`, `--syslog`): one
/// layer for them all, formatted once, since the spans' fields live in one place.
pub struct JsonLayer {
    sinks: Vec<BoxMakeWriter>,
}

impl JsonLayer {
    pub fn new(sinks: Vec<BoxMakeWriter>) -> JsonLayer {
        JsonLayer { sinks }
    }
}

/// A value as a field carried it: numbers and booleans stay JSON numbers and booleans.
#[derive(Debug, Clone)]
enum Value {
    Str(String),
    U64(u64),
    I64(i64),
    Bool(bool),
}

impl Value {
    fn write(&self, out: &mut String) {
        match self {
            Value::Str(s) => escape(out, s),
            Value::U64(n) => {
                let _ = write!(out, "{n}");
            }
            Value::I64(n) => {
                let _ = write!(out, "{n}");
            }
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        }
    }
}

/// A span's or an event's fields, in the order they were recorded (a later value of the same
/// name replaces the earlier one).
#[derive(Debug, Default)]
struct Fields(Vec<(&'static str, Value)>);

impl Fields {
    fn set(&mut self, name: &'static str, value: Value) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.set(field.name(), Value::Str(format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field.name(), Value::Str(value.to_owned()));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field.name(), Value::U64(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field.name(), Value::I64(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field.name(), Value::Bool(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.set(field.name(), Value::Str(value.to_string()));
    }
}

/// The fields of a span, kept in its extensions for the lines written inside it.
struct SpanFields(Fields);

impl<S> Layer<S> for JsonLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        span.extensions_mut().insert(SpanFields(fields));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(SpanFields(fields)) = extensions.get_mut::<SpanFields>() {
            values.record(fields);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        // The spans' fields, outermost first: an inner span's value of a name wins (a
        // request's `forwarded` over nothing, say).
        let mut spans = Fields::default();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                let extensions = span.extensions();
                if let Some(SpanFields(fields)) = extensions.get::<SpanFields>() {
                    for (name, value) in &fields.0 {
                        spans.set(name, value.clone());
                    }
                }
            }
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let line = format_line(now(), *meta.level(), meta.target(), &spans, &fields);
        for sink in &self.sinks {
            // A sink that cannot take the line loses it; logging never fails the server.
            let _ = sink.make_writer_for(meta).write_all(line.as_bytes());
        }
    }
}

/// Milliseconds since the Unix epoch, now.
fn now() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// One line, newline included. `spans` holds the connection's span fields: `id` (becomes
/// `conn`), `peer` (the socket's peer), `client` (the client a PROXY header named) and
/// `forwarded` (the client a trusted reverse proxy named).
fn format_line(
    ms: u128,
    level: tracing::Level,
    module: &str,
    spans: &Fields,
    fields: &Fields,
) -> String {
    let mut out = String::with_capacity(256);
    out.push_str("{\"ts\":");
    escape(&mut out, &rfc3339_ms(ms));
    out.push_str(",\"level\":");
    escape(&mut out, &level.as_str().to_ascii_lowercase());
    out.push_str(",\"module\":");
    escape(&mut out, module);
    // The real client is the innermost one named; `via` is who named it.
    let peer = spans.get("peer");
    let proxied = spans.get("client");
    let forwarded = spans.get("forwarded");
    let (client, via) = match (forwarded, proxied) {
        (Some(f), Some(p)) => (Some(f), Some(p)),
        (Some(f), None) => (Some(f), peer),
        (None, Some(p)) => (Some(p), peer),
        (None, None) => (peer, None),
    };
    if let Some(id) = spans.get("id") {
        out.push_str(",\"conn\":");
        id.write(&mut out);
    }
    if let Some(client) = client {
        out.push_str(",\"client\":");
        client.write(&mut out);
    }
    if let Some(via) = via {
        out.push_str(",\"via\":");
        via.write(&mut out);
    }
    if let Some(msg) = fields.get("message") {
        out.push_str(",\"msg\":");
        msg.write(&mut out);
    }
    let span_keys = ["id", "peer", "client", "forwarded"];
    let extra_span = spans.0.iter().filter(|(n, _)| !span_keys.contains(n));
    let own = fields.0.iter().filter(|(n, _)| *n != "message");
    for (name, value) in extra_span.chain(own) {
        out.push(',');
        if RESERVED.contains(name) {
            escape(&mut out, &format!("field_{name}"));
        } else {
            escape(&mut out, name);
        }
        out.push(':');
        value.write(&mut out);
    }
    out.push_str("}\n");
    out
}

/// `ms` (since the Unix epoch) as RFC 3339 in UTC with milliseconds.
fn rfc3339_ms(ms: u128) -> String {
    let secs = u64::try_from(ms / 1000).unwrap_or(u64::MAX);
    let whole = super::syslog::utc_timestamp(secs);
    let whole = whole.strip_suffix('Z').unwrap_or(&whole);
    format!("{whole}.{:03}Z", ms % 1000)
}

/// `text` as a JSON string in printable ASCII: beyond what JSON requires (`"`, `\\`,
/// U+0000–U+001F), every other character but printable ASCII is written as `\uXXXX` (a
/// surrogate pair past U+FFFF). A line stays one line and shows as what it is in any viewer or
/// terminal (no U+2028, no C1 or bidi controls), and a syslog body needs no byte-order mark.
pub fn escape(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(text: &str) -> String {
        let mut out = String::new();
        escape(&mut out, text);
        out
    }

    #[test]
    fn escaping_keeps_every_string_on_one_line_and_round_trips() {
        let hostile =
            "a\nb\r\"c\\d\u{2028}e\u{2029}f\u{0}\u{1b}[31m\u{7f}\u{85}\u{202e}g\u{feff}é日";
        let json = escaped(hostile);
        assert!(
            json.is_ascii() && !json.contains(|c: char| c.is_ascii_control()),
            "{json}"
        );
        assert!(
            json.contains(r"\u2028e\u2029f\u0000\u001b[31m\u007f\u0085\u202eg"),
            "{json}"
        );
        let back: String = serde_json::from_str(&json).unwrap();
        assert_eq!(back, hostile);
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(rfc3339_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339_ms(951_782_400_007), "2000-02-29T00:00:00.007Z");
    }

    #[test]
    fn a_line_is_one_json_object_with_reserved_names_never_forged() {
        let mut spans = Fields::default();
        spans.set("id", Value::U64(7));
        spans.set("peer", Value::Str("10.0.0.1:4000".into()));
        spans.set("client", Value::Str("203.0.113.7:5555".into()));
        let mut fields = Fields::default();
        fields.set("message", Value::Str("closed\n{\"conn\":1}".into()));
        fields.set("conn", Value::U64(99));
        fields.set("duration_ms", Value::U64(5));
        let line = format_line(0, tracing::Level::INFO, "websockify", &spans, &fields);
        assert_eq!(line.matches('\n').count(), 1);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["ts"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["level"], "info");
        assert_eq!(v["conn"], 7);
        assert_eq!(v["client"], "203.0.113.7:5555");
        assert_eq!(v["via"], "10.0.0.1:4000");
        assert_eq!(v["msg"], "closed\n{\"conn\":1}");
        assert_eq!(v["field_conn"], 99);
        assert_eq!(v["duration_ms"], 5);
    }

    #[test]
    fn newlines_returns_and_tabs_take_their_short_escapes() {
        assert_eq!(escaped("a\nb\rc\td"), r#""a\nb\rc\td""#);
    }

    /// What the layer wrote for the events `work` logged, one JSON object a line.
    fn layer_lines(work: impl FnOnce()) -> Vec<serde_json::Value> {
        use std::sync::{Arc, Mutex};
        use tracing_subscriber::layer::SubscriberExt;

        #[derive(Clone, Default)]
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Sink {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let writer = sink.clone();
        let layer = JsonLayer::new(vec![BoxMakeWriter::new(move || writer.clone())]);
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), work);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    #[test]
    fn the_layer_writes_each_kind_of_field_as_its_json_type_with_the_spans_fields() {
        let err = std::io::Error::other("disk \"full\"");
        let before = rfc3339_ms(now_by_the_clock());
        let lines = layer_lines(|| {
            let span = tracing::info_span!(
                "conn",
                id = 7u64,
                peer = "10.0.0.1:4000",
                path = tracing::field::Empty
            );
            let _entered = span.enter();
            span.record("path", "/a");
            tracing::warn!(
                n = -3i64,
                big = 5u64,
                yes = true,
                no = false,
                name = "x",
                shown = ?Some(1),
                err = &err as &(dyn std::error::Error + 'static),
                "hello {}",
                1
            );
        });
        let after = rfc3339_ms(now_by_the_clock());
        assert_eq!(lines.len(), 1, "{lines:?}");
        let v = &lines[0];
        let ts = v["ts"].as_str().unwrap();
        assert!(
            before.as_str() <= ts && ts <= after.as_str(),
            "{before} {ts} {after}"
        );
        assert_eq!(v["level"], "warn");
        assert_eq!(v["module"], module_path!());
        assert_eq!(v["conn"], 7);
        assert_eq!(v["client"], "10.0.0.1:4000");
        assert!(v.get("via").is_none() && v.get("id").is_none(), "{v}");
        assert!(v.get("peer").is_none(), "{v}");
        // A span field recorded after the span began, written after the reserved keys.
        assert_eq!(v["path"], "/a");
        assert_eq!(v["msg"], "hello 1");
        assert_eq!(v["n"], -3);
        assert_eq!(v["big"], 5);
        assert_eq!(v["yes"], true);
        assert_eq!(v["no"], false);
        assert_eq!(v["name"], "x");
        assert_eq!(v["shown"], "Some(1)");
        assert_eq!(v["err"], "disk \"full\"");
    }

    /// Milliseconds since the epoch by the system clock, as `now` should give.
    fn now_by_the_clock() -> u128 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis()
    }
}
