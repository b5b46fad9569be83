//! The command line, and above all its `[host:]port` positionals. The input is split on NUL
//! into at most 6 words (any bytes, not only UTF-8) after the program name, and given to
//! `websockify::cli::parse_from`. Properties: no panic; when it succeeds, the listen and target
//! hosts carry no brackets (they are stripped from `[::1]:6080`, and a host that still has one
//! is no host at all) and the ports are what the words say (but a wrapped program's, picked at
//! start-up); when it fails, the message is a
//! usage error in clap's form (`error: ...`, exit status 2) or help (status 0).
//!
//! The clap command is built once and cloned per run (`cli::parse_with`): building it runs
//! clap's consistency checks, which under debug assertions cost more than the parse itself.
#![no_main]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use websockify::cli::{command, parse_with, CliError};
use websockify::{Listen, TargetSpec, Targets};

fn no_brackets(host: &str) -> bool {
    !host.contains(['[', ']'])
}

/// Whether some word ends with `:port` (or is `port`), as the parsed port must come from one.
fn some_word_has_port(words: &[Vec<u8>], port: u16) -> bool {
    words.iter().any(|w| {
        let text = String::from_utf8_lossy(w);
        let tail = text.rsplit(':').next().unwrap_or("");
        tail.trim().parse::<u16>() == Ok(port)
    })
}

static COMMAND: OnceLock<clap::Command> = OnceLock::new();

fuzz_target!(|input: &[u8]| {
    let built = COMMAND.get_or_init(|| {
        let mut cmd = command();
        cmd.build();
        cmd
    });
    let words: Vec<Vec<u8>> = input
        .split(|&b| b == 0)
        .take(6)
        .map(<[u8]>::to_vec)
        .collect();
    let argv = std::iter::once(OsString::from("websockify"))
        .chain(words.iter().cloned().map(OsString::from_vec));
    match parse_with(built.clone(), argv) {
        Ok(settings) => {
            if let Listen::Tcp { host, port } = &settings.listen {
                assert!(no_brackets(host), "listen host {host:?}");
                assert!(some_word_has_port(&words, *port), "listen port {port}");
            }
            // With a wrapped program the target is its loopback port, picked at start-up:
            // no word names it.
            if let (Targets::Fixed(TargetSpec::Tcp { host, port }), None) =
                (&settings.target, &settings.wrap)
            {
                assert!(no_brackets(host), "target host {host:?}");
                assert!(some_word_has_port(&words, *port), "target port {port}");
            }
        }
        Err(err) => match &err {
            CliError::Usage(msg) => {
                assert!(msg.starts_with("error: "), "{msg:?}");
                assert_eq!(err.exit_code(), 2);
            }
            CliError::Help(_) => assert_eq!(err.exit_code(), 0),
        },
    }
});
