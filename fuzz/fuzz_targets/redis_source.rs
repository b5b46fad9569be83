//! `parse_redis_source`, the `TokenRedis` source (`host[:port[:db[:password[:namespace]]]]`),
//! against an independent model of the reference's `parse_source_args` regex and its field
//! rules. Input: the source as lossy UTF-8. Properties: no panic; `split_source` gives the
//! model's fields; success exactly when the model succeeds, with the same host, port, db,
//! password and key prefix; a result written back (quoting the fields that hold `:`) reads
//! back the same; failures name the expected format.
#![no_main]

use libfuzzer_sys::fuzz_target;
use websockify::codec::{parse_redis_source, split_source, RedisSource};

/// The fields, found another way: split at every colon, then join back the runs of pieces
/// that make a quoted field (the first piece starts with `"`, the joined text ends with `"`,
/// holds no other `"` and has something between the quotes).
fn model_fields(src: &str) -> Vec<String> {
    let pieces: Vec<&str> = src.split(':').collect();
    let mut fields = Vec::new();
    let mut i = 0;
    while i < pieces.len() {
        let mut taken = None;
        if pieces[i].starts_with('"') {
            for j in i..pieces.len() {
                let joined = pieces[i..=j].join(":");
                let inner_quotes = joined.chars().filter(|&c| c == '"').count();
                if joined.len() >= 3 && joined.ends_with('"') && inner_quotes == 2 {
                    taken = Some((j, joined[1..joined.len() - 1].to_owned()));
                    break;
                }
                if inner_quotes >= 2 {
                    break;
                }
            }
        }
        match taken {
            Some((j, field)) => {
                fields.push(field);
                i = j + 1;
            }
            None => {
                fields.push(pieces[i].to_owned());
                i += 1;
            }
        }
    }
    fields
}

/// A number field: empty is the default; else whitespace around, an optional `+`, ASCII
/// digits, no larger than `max`.
fn model_number(field: &str, default: u64, max: u64) -> Option<u64> {
    if field.is_empty() {
        return Some(default);
    }
    let t = field.trim();
    let t = t.strip_prefix('+').unwrap_or(t);
    if t.is_empty() || !t.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut value: u128 = 0;
    for c in t.chars() {
        value = value * 10 + u128::from(c as u8 - b'0');
        if value > u128::from(max) {
            return None;
        }
    }
    Some(value as u64)
}

fn model(src: &str) -> Option<RedisSource> {
    let fields = model_fields(src);
    if fields.len() > 5 {
        return None;
    }
    let get = |i: usize| fields.get(i).cloned().unwrap_or_default();
    let host = get(0);
    if host.is_empty() {
        return None;
    }
    let port = model_number(&get(1), 6379, 65535)?;
    if port == 0 {
        return None;
    }
    let db = model_number(&get(2), 0, i64::MAX as u64)?;
    let password = Some(get(3)).filter(|p| !p.is_empty());
    let namespace = get(4);
    let prefix = if namespace.is_empty() {
        String::new()
    } else {
        namespace + ":"
    };
    Some(RedisSource {
        host,
        port: port as u16,
        db: db as i64,
        password,
        prefix,
    })
}

fn quoted(field: &str) -> String {
    if field.contains(':') {
        format!("\"{field}\"")
    } else {
        field.to_owned()
    }
}

fuzz_target!(|input: &[u8]| {
    let src = String::from_utf8_lossy(input);
    assert_eq!(split_source(&src), model_fields(&src), "{src:?}");
    match (parse_redis_source(&src), model(&src)) {
        (Ok(got), Some(expected)) => {
            assert_eq!(got, expected, "{src:?}");
            let namespace = got.prefix.strip_suffix(':').unwrap_or("");
            let password = got.password.as_deref().unwrap_or("");
            let plain = |f: &str| !f.contains('"');
            if plain(&got.host) && plain(password) && plain(namespace) {
                let written = format!(
                    "{}:{}:{}:{}:{}",
                    quoted(&got.host),
                    got.port,
                    got.db,
                    quoted(password),
                    quoted(namespace)
                );
                assert_eq!(
                    parse_redis_source(&written).as_ref(),
                    Ok(&got),
                    "{src:?} written as {written:?}"
                );
            }
        }
        (Err(err), None) => {
            assert!(err.contains("<host>[:<port>[:<db>"), "{src:?}: {err}");
            assert!(!err.contains('\n'), "{err:?}");
        }
        (got, expected) => panic!("{src:?}: got {got:?}, model says {expected:?}"),
    }
});
