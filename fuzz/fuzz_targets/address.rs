//! `cli::parse_address`, the `host:port` reading of both positionals, against an independent
//! model of the reference's rules. Input: `[kind] [argument bytes]`, the kind's low bit picking
//! listen or target, the argument as lossy UTF-8. Properties: no panic; success exactly when
//! the model succeeds, with the same host and port; the host carries no bracket; a result
//! written back (`[host]:port` when the host has a colon) reads back the same; failures are
//! one-line usage errors naming the positional (exit status 2).
#![no_main]

use libfuzzer_sys::fuzz_target;
use websockify::cli::{parse_address, AddressKind, CliError};

/// The reference's reading, restated byte by byte: the host is everything before the last
/// `:` with every leading and trailing `[`/`]` removed; the port is the rest, which after
/// Unicode whitespace is trimmed must be an optional `+` and ASCII digits worth at most 65535.
/// No colon: a bare port for listen, an error for target. A bracket left inside the host is
/// an error.
fn model(arg: &str, listen: bool) -> Option<(String, u16)> {
    let colon = arg
        .bytes()
        .enumerate()
        .filter(|&(_, b)| b == b':')
        .map(|(i, _)| i)
        .last();
    let (host, port) = match colon {
        Some(i) => (&arg[..i], &arg[i + 1..]),
        None if listen => ("", arg),
        None => return None,
    };
    let port = port.trim();
    let digits = port.strip_prefix('+').unwrap_or(port);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut value: u32 = 0;
    for b in digits.bytes() {
        value = value * 10 + u32::from(b - b'0');
        if value > 65535 {
            return None;
        }
    }
    let mut host = host;
    while let Some(rest) = host.strip_prefix(['[', ']']) {
        host = rest;
    }
    while let Some(rest) = host.strip_suffix(['[', ']']) {
        host = rest;
    }
    if host.bytes().any(|b| b == b'[' || b == b']') {
        return None;
    }
    Some((host.to_owned(), value as u16))
}

fuzz_target!(|input: &[u8]| {
    let Some((&kind, arg)) = input.split_first() else {
        return;
    };
    let (kind, listen, name) = if kind & 1 == 0 {
        (AddressKind::Listen, true, "listen")
    } else {
        (AddressKind::Target, false, "target")
    };
    let arg = String::from_utf8_lossy(arg);
    let got = parse_address(&arg, kind);
    match (&got, model(&arg, listen)) {
        (Ok(got), Some(expected)) => {
            assert_eq!(got, &expected, "{arg:?}");
            let (host, port) = got;
            assert!(!host.contains(['[', ']']), "{arg:?} gave host {host:?}");
            let written = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            let again = parse_address(&written, kind).ok();
            assert_eq!(again.as_ref(), Some(got), "{arg:?} written as {written:?}");
        }
        (Err(err), None) => {
            let CliError::Usage(msg) = err else {
                panic!("{arg:?}: not a usage error: {err:?}");
            };
            assert!(
                msg.starts_with(&format!("error: Error parsing {name}")),
                "{arg:?}: {msg:?}"
            );
            assert!(
                !msg.trim_end().contains('\n') || arg.contains('\n'),
                "{msg:?}"
            );
            assert_eq!(err.exit_code(), 2);
        }
        (got, expected) => panic!("{arg:?}: got {got:?}, model says {expected:?}"),
    }
});
