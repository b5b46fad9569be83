//! websockify.1: clap_mangen renders what the command line defines (name, synopsis from the
//! usage `--help` prints, every option under its `--help` heading, version); the sections a
//! command line cannot say (token files, plugins, signals, files, exit status, examples) are
//! written here. The examples are data, so a test parses each one with the real parser.

use roff::{bold, italic, roman, Inline, Roff};

/// How an example runs: a websockify command line (`sudo ` allowed in front), checked by the
/// tests with websockify's own parser, or another program's.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Runs {
    Websockify,
    Other,
}

/// The EXAMPLES section: what it does, the command, who runs it. The reference's man page
/// examples are here, as written there (without its `./`).
pub const EXAMPLES: &[(&str, &str, Runs)] = &[
    (
        "Bridge WebSocket clients on port 6080 to the VNC server on port 5900 of this machine:",
        "websockify 6080 localhost:5900",
        Runs::Websockify,
    ),
    (
        "Serve noVNC from the same port, and accept wss:// as well as ws:// (certificate chain \
         and key in one PEM file); then open http://HOST:6080/vnc.html:",
        "websockify --web /usr/share/novnc --cert /etc/websockify/self.pem 6080 localhost:5900",
        Runs::Websockify,
    ),
    (
        "Make a self-signed certificate as self.pem, which websockify loads from the current \
         directory when no --cert is given (use the server's host name as the common name):",
        "openssl req -new -x509 -days 365 -nodes -out self.pem -keyout self.pem",
        Runs::Other,
    ),
    (
        "One port, many desks: the token in the URL (vnc.html?path=websockify%3Ftoken%3Ddesk1) \
         picks the target from a token file (see TOKEN FILES):",
        "websockify --token-plugin TokenFile --token-source /etc/websockify/tokens 6080",
        Runs::Websockify,
    ),
    (
        "Wrap a program: start it, move its bind() of port 2023 to a free loopback port, and \
         bridge port 2023 to it:",
        "websockify 2023 -- PROGRAM ARGS",
        Runs::Websockify,
    ),
    (
        "Wrap vncserver, which puts itself in the background, for use with noVNC:",
        "websockify 5901 --wrap-mode=ignore -- vncserver -geometry 1024x768 :1",
        Runs::Websockify,
    ),
    (
        "Wrap telnetd (from krb5-telnetd), which exits after each connection, so start it again \
         each time:",
        "sudo websockify 2023 --wrap-mode=respawn -- telnetd -debug 2023",
        Runs::Websockify,
    ),
    (
        "A VNC server with password-less, certificate-driven authentication: clients must \
         present a certificate issued by a CA of ca-certificates.crt whose common name is one \
         of those listed:",
        "websockify 5901 --cert=fullchain.pem --key=privkey.pem --ssl-only --verify-client \
         --cafile=ca-certificates.crt --auth-plugin=ClientCertCNAuth \
         --auth-source='jane@example.com Joe User9824510' --web=noVNC/ --wrap-mode=ignore \
         -- vncserver :1 -geometry 1024x768 -SecurityTypes=None",
        Runs::Websockify,
    ),
    (
        "Debian's noVNC launcher runs the websockify it finds on the PATH: with this package \
         installed, that is this one:",
        "/usr/share/novnc/utils/novnc_proxy --vnc localhost:5900",
        Runs::Other,
    ),
];

/// What each plugin does, by class name; every name websockify knows must be here (tested).
const TOKEN_PLUGINS: &[(&str, &str)] = &[
    (
        "TokenFile",
        "--token-source is a token file, or a directory of them (see TOKEN FILES); re-read \
         when it changes.",
    ),
    ("ReadOnlyTokenFile", "As TokenFile, read once at start-up."),
    (
        "TokenFileName",
        "--token-source is a directory; the token names a file in it whose content is the \
         target. Read at every lookup.",
    ),
    (
        "UnixDomainSocketDirectory",
        "--token-source is a directory of Unix sockets; the token is a socket's path relative \
         to it, which must stay inside it.",
    ),
    (
        "BaseTokenAPI",
        "--token-source is an http:// or https:// URL with one %s where the (percent-encoded) \
         token goes; the answer's body is host:port.",
    ),
    (
        "JSONTokenApi",
        "As BaseTokenAPI; the answer is {\"host\": ..., \"port\": ...}.",
    ),
    (
        "JWTTokenApi",
        "--token-source is a key file (PEM RSA, EC or Ed25519 key or certificate, else the \
         text of a symmetric key); the token is a JWT (JWS, JWE, or a JWS inside a JWE) whose \
         host and port claims name the target.",
    ),
    (
        "TokenRedis",
        "--token-source is host[:port[:db[:password[:namespace]]]] of a Redis server; the \
         token is a key whose value is host:port or JSON.",
    ),
];

const AUTH_PLUGINS: &[(&str, &str)] = &[
    (
        "BasicHTTPAuth",
        "--auth-source is USER:PASSWORD; clients must send them in an Authorization header \
         (with --web-auth, web requests too).",
    ),
    (
        "ExpectOrigin",
        "--auth-source is a space-separated list of origins; the request's Origin header must \
         be one of them.",
    ),
    (
        "ClientCertCNAuth",
        "--auth-source is a space-separated list of common names; with --verify-client, the \
         client certificate's subject CN must be one of them.",
    ),
];

/// The whole page; `date` (YYYY-MM-DD) goes into the title line.
pub fn page(date: &str) -> String {
    let cmd = websockify::cli::command();
    let man = clap_mangen::Man::new(cmd.clone())
        .date(date)
        .source(format!("websockify {}", websockify::cli::VERSION))
        .manual("User Commands");
    let mut out = Vec::new();
    let render = |out: &mut Vec<u8>| -> std::io::Result<()> {
        man.render_title(out)?;
        man.render_name_section(out)?;
        synopsis(&cmd).to_writer(out)?;
        description().to_writer(out)?;
        man.render_options_section(out)?;
        extra_sections().to_writer(out)?;
        man.render_version_section(out)
    };
    render(&mut out).expect("writing to a Vec cannot fail");
    let page = String::from_utf8(out).expect("roff output is UTF-8");
    // Each rendered piece starts with the same apostrophe preamble: the first one is enough.
    let preamble = Roff::new().render();
    let mut pieces = page.split(preamble.as_str());
    let mut once = pieces.next().unwrap_or_default().to_owned();
    once.push_str(&preamble);
    once.extend(pieces);
    once
}

/// The usage forms `--help` prints (the command's own usage, not one rebuilt from its options).
fn synopsis(cmd: &clap::Command) -> Roff {
    let usage = cmd.clone().render_usage().to_string();
    let usage = usage.strip_prefix("Usage: ").unwrap_or(&usage);
    let mut roff = Roff::new();
    roff.control("SH", ["SYNOPSIS"]);
    for (i, form) in usage.lines().map(str::trim).enumerate() {
        if i > 0 {
            roff.control("br", []);
        }
        let mut words = form.splitn(2, ' ');
        let name = words.next().unwrap_or_default();
        roff.text([
            bold(name),
            roman(format!(" {}", words.next().unwrap_or_default())),
        ]);
    }
    roff
}

fn description() -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["DESCRIPTION"]);
    para(
        &mut roff,
        "websockify accepts WebSocket connections (ws:// and, with a certificate, wss:// on the \
         same port), and bridges each one to a TCP or Unix socket target: binary frames from \
         the client become bytes to the target, bytes from the target become frames. It is a \
         drop-in replacement for the Python websockify 0.13.0: the same command line, token \
         and auth plugins, and web server for a client such as noVNC.",
    );
    para(
        &mut roff,
        "Options may come before or after the addresses; long options may be abbreviated to \
         any unique prefix and take their value as --opt=value or --opt value.",
    );
    roff
}

fn extra_sections() -> Roff {
    let mut roff = Roff::new();

    roff.control("SH", ["TOKEN FILES"]);
    para(
        &mut roff,
        "With --token-plugin TokenFile (or the deprecated --target-config), each WebSocket \
         request names a token, as ?token=TOKEN in its URL (or, with --host-token, as the \
         host name it asked for), and the token file says where it goes. One target per line:",
    );
    example_block(
        &mut roff,
        &[
            "# comments and blank lines are ignored",
            "desk1: 192.0.2.10:5900",
            "desk2: vnc2.example.com:5901",
            "lab: ::1:5902",
            "kiosk: unix_socket:/run/vnc/kiosk.sock",
        ],
    );
    para(
        &mut roff,
        "The target is split at its last colon, so a bare IPv6 address works; brackets around \
         the host are dropped; unix_socket:PATH names a Unix socket. --token-source may be a \
         directory: every regular file in it is read. An unknown token is answered 404, a \
         target outside --target-allow 403, a target that does not answer 502 (504 on a \
         time-out): all before the WebSocket opens.",
    );

    roff.control("SH", ["PLUGINS"]);
    para(
        &mut roff,
        "Plugins are named by the reference's class names, bare or as \
         websockify.token_plugins.NAME / websockify.auth_plugins.NAME; nothing else can be \
         loaded.",
    );
    roff.control("SS", ["Token plugins (--token-plugin, --token-source)"]);
    term_list(&mut roff, TOKEN_PLUGINS);
    roff.control("SS", ["Auth plugins (--auth-plugin, --auth-source)"]);
    term_list(&mut roff, AUTH_PLUGINS);

    roff.control("SH", ["SIGNALS"]);
    term_list(
        &mut roff,
        &[
            (
                "SIGINT, SIGTERM",
                "Stop: close the listening socket at once, send every WebSocket client a 1001 \
                 \"Going away\" close and shut its target down, wait up to --drain-timeout \
                 seconds (default 5) for the sessions to end, then exit with status 0. A second \
                 signal ends the drain at once. A wrapped program is sent SIGTERM.",
            ),
            (
                "SIGHUP",
                "Reload the certificate and key, and the token and auth sources, for new \
                 connections; running sessions are untouched. A reload that fails keeps the \
                 old configuration and logs an error naming the file. Certificate files \
                 replaced on disk are also picked up without a signal (checked every 2 s).",
            ),
            (
                "SIGUSR1",
                "Reopen the --log-file (for logrotate's postrotate); ignored without one.",
            ),
            (
                "SIGPIPE",
                "Ignored: a peer that goes away ends its session only.",
            ),
        ],
    );

    roff.control("SH", ["ENVIRONMENT"]);
    term_list(
        &mut roff,
        &[
            (
                "RUST_LOG",
                "Log filter (e.g. debug, or websockify=info), overriding the level -v sets.",
            ),
            (
                "SSL_CERT_FILE, SSL_CERT_DIR",
                "The CAs trusted instead of the system's, for --ssl-target, an https token API \
                 and --verify-client without --cafile.",
            ),
        ],
    );

    roff.control("SH", ["FILES"]);
    term_list(
        &mut roff,
        &[
            (
                "./self.pem",
                "The certificate (and key) loaded when no --cert is given and the file exists; \
                 wss:// is then accepted.",
            ),
            (
                "/usr/share/doc/websockify-rs/examples/websockify@.service",
                "An example systemd unit: one instance per file in /etc/websockify/.",
            ),
            (
                "/usr/share/doc/websockify-rs/examples/websockify.socket, websockify.service",
                "Example units for socket activation (--systemd): systemd listens, websockify \
                 serves, and tells systemd when it is ready, reloading or stopping.",
            ),
            (
                "/usr/bin/websockify.python",
                "Where the Debian package moves the Python websockify's /usr/bin/websockify \
                 (dpkg-divert) while it is installed; removing the package puts it back.",
            ),
        ],
    );
    para(
        &mut roff,
        "The LD_PRELOAD library that moves a wrapped program's bind() (rebind.so) is built \
         into the binary and written to a private temporary file when needed: there is no \
         file to install or find.",
    );

    roff.control("SH", ["EXIT STATUS"]);
    term_list(
        &mut roff,
        &[
            (
                "0",
                "Stopped by a signal, --timeout, --idle-timeout or --run-once; or --help.",
            ),
            (
                "1",
                "Could not start: a socket that cannot be bound, a certificate, key, token \
                 source or plugin that cannot be used; the message names the option or file.",
            ),
            (
                "2",
                "The command line is wrong (as the reference's optparse).",
            ),
            (
                "N",
                "With a wrapped program and --wrap-mode=exit: the program's exit status, or \
                 128+N when it was killed by signal N.",
            ),
        ],
    );

    roff.control("SH", ["EXAMPLES"]);
    for (what, command, _) in EXAMPLES {
        para(&mut roff, what);
        example_block(&mut roff, &[command]);
    }

    roff.control("SH", ["SEE ALSO"]);
    roff.text([
        bold("novnc_proxy"),
        roman(" (Debian's novnc package), "),
        bold("openssl"),
        roman("(1), "),
        bold("systemd.service"),
        roman("(5). The README and docs/ of the source, and "),
        italic("https://github.com/novnc/websockify"),
        roman(" for the reference."),
    ]);
    roff
}

fn para(roff: &mut Roff, text: &str) {
    roff.control("PP", []);
    roff.text([roman(text)]);
}

/// Literal lines, indented and not filled (what a user would type or a file holds).
fn example_block(roff: &mut Roff, lines: &[&str]) {
    roff.control("RS", ["4"]);
    roff.control("nf", []);
    for line in lines {
        roff.text([roman(*line)]);
    }
    roff.control("fi", []);
    roff.control("RE", []);
}

fn term_list(roff: &mut Roff, items: &[(&str, &str)]) {
    for (term, text) in items {
        roff.control("TP", []);
        roff.text([bold(*term)]);
        roff.text(Vec::<Inline>::from([roman(*text)]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command line as a shell splits it: words on spaces, '…' quoting (all the examples
    /// use).
    fn shell_words(line: &str) -> Vec<String> {
        let mut words = Vec::new();
        let mut word: Option<String> = None;
        let mut quoted = false;
        for c in line.chars() {
            match c {
                '\'' => {
                    quoted = !quoted;
                    word.get_or_insert_with(String::new);
                }
                ' ' if !quoted => words.extend(word.take()),
                c => word.get_or_insert_with(String::new).push(c),
            }
        }
        assert!(!quoted, "unbalanced quote in {line:?}");
        words.extend(word);
        words
    }

    /// The reference's man page examples (and ours) work as written: each websockify command
    /// line passes websockify's own parser, with every option it uses supported. The parser
    /// checks that --web's directory exists, so the test runs where the examples' directories
    /// are: a scratch directory with noVNC/ in it (the one test here that changes the working
    /// directory), /usr/share/novnc standing for itself.
    #[test]
    fn every_example_parses_with_the_real_command_line() {
        let scratch = std::env::temp_dir().join(format!("xtask-examples-{}", std::process::id()));
        std::fs::create_dir_all(scratch.join("noVNC")).expect("scratch dir");
        std::fs::create_dir_all(scratch.join("novnc")).expect("scratch dir");
        std::env::set_current_dir(&scratch).expect("cd scratch");
        let mut checked = 0;
        for (_, line, runs) in EXAMPLES {
            if *runs == Runs::Other {
                continue;
            }
            let line = line.replace("/usr/share/novnc", "novnc");
            let mut words = shell_words(&line);
            if words[0] == "sudo" {
                words.remove(0);
            }
            assert_eq!(words[0], "websockify", "{line}");
            if let Err(err) = websockify::cli::parse_from(&words) {
                panic!("example does not parse: {line}\n{err}");
            }
            checked += 1;
        }
        assert!(checked >= 6, "only {checked} examples checked");
        let _ = std::fs::remove_dir_all(&scratch);
        assert_eq!(
            shell_words("a --x='b c' d"),
            ["a", "--x=b c", "d"],
            "the splitter itself"
        );
    }

    /// Every plugin websockify knows is described, and nothing it does not know.
    #[test]
    fn plugins_section_matches_the_plugins_websockify_knows() {
        let described = |list: &[(&'static str, &'static str)]| {
            let mut names: Vec<&'static str> = list.iter().map(|(n, _)| *n).collect();
            names.sort_unstable();
            names
        };
        let mut known = websockify::TOKEN_PLUGINS.to_vec();
        known.sort_unstable();
        assert_eq!(described(TOKEN_PLUGINS), known, "token plugins");
        let mut known = websockify::AUTH_PLUGINS.to_vec();
        known.sort_unstable();
        assert_eq!(described(AUTH_PLUGINS), known, "auth plugins");
    }

    /// The page is generated from the definition: every long option and the usage forms of
    /// `--help` are in it, with the not-yet-supported mark where `--help` has it.
    #[test]
    fn page_follows_the_command_line_definition() {
        let page = page("2024-01-01");
        let cmd = websockify::cli::command();
        for arg in cmd.get_arguments() {
            if let Some(long) = arg.get_long() {
                // roff escapes '-' as '\-'
                let needle = format!("\\-\\-{}", long.replace('-', "\\-"));
                assert!(page.contains(&needle), "--{long} missing from the page");
            }
        }
        // Every option is implemented: nothing may be marked as missing.
        assert!(
            !page.contains("not yet supported"),
            "a stale mark in the page"
        );
        for section in [
            "SYNOPSIS",
            "TOKEN FILES",
            "PLUGINS",
            "SIGNALS",
            "FILES",
            "EXIT STATUS",
            "EXAMPLES",
        ] {
            assert!(
                page.contains(&format!(".SH \"{section}\""))
                    || page.contains(&format!(".SH {section}\n")),
                "{section}"
            );
        }
        assert!(page.contains("\\-\\-unix\\-listen=FILE"), "usage forms");
        assert!(
            page.contains("\n.TH websockify 1 2024-01-01 \"websockify "),
            "title line"
        );
        assert_eq!(page.matches(".ds Aq").count(), 2, "one apostrophe preamble");
    }
}
