//! The crate's rooms import downwards only: a room may use the rooms below it in the
//! pipeline's order, never one above it, and the pure leaves use nothing of the crate. This
//! reads the sources, so a new upward import fails here, not in a reviewer's head.

use std::path::{Path, PathBuf};

/// Rooms from the top of the pipeline to the bottom (see `docs/architecture.md`). Rooms on the
/// same line share a rank and may not import each other.
const ORDER: &[&[&str]] = &[
    &["server", "process"],
    &["listen"],
    &["sniff"],
    &["tls"],
    &["http"],
    &["gate"],
    &["target"],
    &["relay"],
    &["config"],
    &["observe"],
    &["conninfo"],
    &["error"],
    &["ws", "percent", "net", "proxy_header"],
];

fn rank(room: &str) -> Option<usize> {
    ORDER.iter().position(|rooms| rooms.contains(&room))
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The room a source file belongs to: its folder under src/, or its own name.
fn room_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

/// Every room named as `crate::ROOM` in `text`.
fn rooms_used(text: &str) -> Vec<String> {
    let mut used = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        // `websockify::` paths in doc text are not imports; `crate::` always is one.
        let rest = &text[i + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            used.push(name);
        }
    }
    used
}

#[test]
fn rooms_import_only_the_rooms_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let room = room_of(&src, file);
        if room == "lib" || room == "main" {
            continue;
        }
        let Some(own) = rank(&room) else {
            broken.push(format!("{}: room {room:?} is not in ORDER", file.display()));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for used in rooms_used(&text) {
            checked += 1;
            if used == room {
                continue;
            }
            match rank(&used) {
                Some(r) if r > own => {}
                _ => broken.push(format!(
                    "{}: room {room:?} uses crate::{used}",
                    file.display()
                )),
            }
        }
    }
    assert!(
        checked > 20,
        "found only {checked} imports: is the scan broken?"
    );
    assert!(broken.is_empty(), "upward imports:\n{}", broken.join("\n"));
}

#[test]
fn the_scan_sees_an_upward_import() {
    assert_eq!(
        rooms_used("use crate::relay::Mode;\nlet x = crate::ws::frame::opcode::PING;"),
        ["relay", "ws"]
    );
    assert!(rank("ws") > rank("relay"));
    assert_eq!(rank("ws"), rank("net"));
}
