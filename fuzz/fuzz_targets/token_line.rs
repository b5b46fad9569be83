//! `parse_line`, one line of a TokenFile, against an independent model of the reference's
//! rules (`token_plugins.ReadOnlyTokenFile._load_targets`) with our documented improvements.
//! Input: the line's bytes as lossy UTF-8. Properties: no panic; the same verdict as the
//! model (skipped, an entry with the same token and target, or malformed); a TCP host carries
//! no bracket at either end; an entry written back as `token: host:port` reads back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use websockify::codec::{parse_line, Line};
use websockify::TargetSpec;

/// Python's whitespace (`str.isspace`, `str.strip()`, the regex `\s`), listed code point by
/// code point as CPython 3 reports it, not derived from Rust's `char::is_whitespace`.
const PY_SPACE: &[u32] = &[
    0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0, 0x1680, 0x2000, 0x2001,
    0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028, 0x2029, 0x202f,
    0x205f, 0x3000,
];

fn py_space(c: char) -> bool {
    PY_SPACE.contains(&(c as u32))
}

/// `s.strip()` in Python.
fn strip(s: &str) -> &str {
    let chars: Vec<(usize, char)> = s.char_indices().collect();
    let Some(first) = chars.iter().position(|&(_, c)| !py_space(c)) else {
        return "";
    };
    let last = chars.iter().rposition(|&(_, c)| !py_space(c)).unwrap();
    let end = chars[last].0 + chars[last].1.len_utf8();
    &s[chars[first].0..end]
}

#[derive(Debug, PartialEq)]
enum Verdict {
    Skip,
    Entry(String, TargetSpec),
    Malformed,
}

/// The reference: strip; skip blank and `#` lines; `tok, target = re.split(r':\s', line)`
/// (exactly two pieces); `target.strip().rsplit(':', 1)` (two pieces); host `unix_socket`
/// means a Unix socket at the (non-empty) rest. Ours on top: brackets around the host go, the
/// host must be non-empty, the port is an optional `+` and decimal digits worth 0..=65535.
fn model(line: &str) -> Verdict {
    let line = strip(line);
    if line.is_empty() || line.starts_with('#') {
        return Verdict::Skip;
    }
    // re.split(r':\s', line): every ':' directly followed by a whitespace character.
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut cuts = Vec::new();
    let mut i = 0;
    while i + 1 < chars.len() {
        if chars[i].1 == ':' && py_space(chars[i + 1].1) {
            cuts.push((chars[i].0, chars[i + 1].0 + chars[i + 1].1.len_utf8()));
            i += 2;
        } else {
            i += 1;
        }
    }
    if cuts.len() != 1 {
        return Verdict::Malformed;
    }
    let (colon, after) = cuts[0];
    let token = &line[..colon];
    let target = strip(&line[after..]);
    let Some(last_colon) = target.bytes().rposition(|b| b == b':') else {
        return Verdict::Malformed;
    };
    let (host, port) = (&target[..last_colon], &target[last_colon + 1..]);
    if host == "unix_socket" {
        if port.is_empty() {
            return Verdict::Malformed;
        }
        return Verdict::Entry(token.to_owned(), TargetSpec::Unix(port.into()));
    }
    let host = host
        .trim_start_matches(['[', ']'])
        .trim_end_matches(['[', ']']);
    if host.is_empty() {
        return Verdict::Malformed;
    }
    let digits = port.strip_prefix('+').unwrap_or(port);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Verdict::Malformed;
    }
    let mut value: u32 = 0;
    for b in digits.bytes() {
        value = value * 10 + u32::from(b - b'0');
        if value > 65535 {
            return Verdict::Malformed;
        }
    }
    Verdict::Entry(
        token.to_owned(),
        TargetSpec::Tcp {
            host: host.to_owned(),
            port: value as u16,
        },
    )
}

fuzz_target!(|input: &[u8]| {
    let line = String::from_utf8_lossy(input);
    let got = match parse_line(&line) {
        Line::Skip => Verdict::Skip,
        Line::Entry { token, target } => Verdict::Entry(token, target),
        Line::Malformed(why) => {
            assert!(!why.is_empty() && !why.contains('\n'), "{line:?}: {why:?}");
            Verdict::Malformed
        }
    };
    assert_eq!(got, model(&line), "{line:?}");
    if let Verdict::Entry(token, target) = &got {
        if let TargetSpec::Tcp { host, .. } = target {
            assert!(
                !host.starts_with(['[', ']']) && !host.ends_with(['[', ']']),
                "{line:?} gave host {host:?}"
            );
        }
        // Written back (the token as it is, the target as Display writes it), it reads back
        // the same, unless the token or the target's text would change the line's reading.
        let written = match target {
            TargetSpec::Unix(path) => format!("{token}: unix_socket:{}", path.display()),
            other => format!("{token}: {other}"),
        };
        if model(&written) == got {
            assert_eq!(parse_line(&written), parse_line(&line), "{written:?}");
        }
    }
});
