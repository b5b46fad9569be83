//! The command line, checked against the Python reference's behaviour (0.13.0).

use std::path::PathBuf;
use std::time::Duration;

use websockify::cli::{parse_from, CliError};
use websockify::{AuthConfig, Listen, Settings, TargetSpec, Targets, TlsMinVersion, TokenConfig};

fn parse(args: &[&str]) -> Result<Settings, CliError> {
    parse_from(std::iter::once("websockify").chain(args.iter().copied()))
}

fn ok(args: &[&str]) -> Settings {
    match parse(args) {
        Ok(s) => s,
        Err(e) => panic!("{args:?} should parse, got: {e}"),
    }
}

/// The error message for `args`, which must be a usage error (exit status 2).
fn err(args: &[&str]) -> String {
    match parse(args) {
        Ok(s) => panic!("{args:?} should fail, got {s:?}"),
        Err(e) => {
            assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
            assert!(matches!(e, CliError::Usage(_)), "{args:?}: {e:?}");
            e.to_string()
        }
    }
}

fn assert_err_contains(args: &[&str], needle: &str) {
    let msg = err(args);
    assert!(
        msg.contains(needle),
        "{args:?}: expected {needle:?} in {msg:?}"
    );
}

fn tcp_listen(host: &str, port: u16) -> Listen {
    Listen::Tcp {
        host: host.into(),
        port,
    }
}

fn tcp_target(host: &str, port: u16) -> Targets {
    Targets::Fixed(TargetSpec::Tcp {
        host: host.into(),
        port,
    })
}

// ---- positional forms ----

#[test]
fn source_and_target_give_plain_proxy_with_reference_defaults() {
    let s = ok(&["127.0.0.1:6080", "localhost:5900"]);
    assert_eq!(
        s,
        Settings::new(
            tcp_listen("127.0.0.1", 6080),
            TargetSpec::Tcp {
                host: "localhost".into(),
                port: 5900
            }
        )
    );
    assert_eq!(s.cert, PathBuf::from("self.pem"));
}

#[test]
fn source_port_without_host_listens_on_all_interfaces() {
    let s = ok(&["6080", "localhost:5900"]);
    assert_eq!(s.listen, tcp_listen("", 6080));
}

#[test]
fn bracketed_ipv6_source_and_target_lose_their_brackets() {
    let s = ok(&["[::1]:6080", "[fe80::1]:5900"]);
    assert_eq!(s.listen, tcp_listen("::1", 6080));
    assert_eq!(s.target, tcp_target("fe80::1", 5900));
}

#[test]
fn host_port_splits_on_the_last_colon() {
    let s = ok(&["::1:6080", "fe80::1:5900"]);
    assert_eq!(s.listen, tcp_listen("::1", 6080));
    assert_eq!(s.target, tcp_target("fe80::1", 5900));
}

#[test]
fn unix_target_replaces_the_target_argument() {
    for args in [
        &["--unix-target=/tmp/vnc.sock", "6080"][..],
        &["--unix-target", "/tmp/vnc.sock", "6080"],
        &["6080", "--unix-target", "/tmp/vnc.sock"],
    ] {
        let s = ok(args);
        assert_eq!(s.listen, tcp_listen("", 6080), "{args:?}");
        assert_eq!(
            s.target,
            Targets::Fixed(TargetSpec::Unix("/tmp/vnc.sock".into())),
            "{args:?}"
        );
    }
}

/// As the reference (Python truthiness): `--unix-target=` is as if not given, and the target
/// argument is the target.
#[test]
fn an_empty_unix_target_is_ignored() {
    let s = ok(&["--unix-target=", "6080", "h:5900"]);
    assert_eq!(s.target, tcp_target("h", 5900));
}

#[test]
fn unix_target_with_a_target_argument_too_is_too_many_arguments() {
    assert_err_contains(
        &["--unix-target=/tmp/s", "6080", "h:5900"],
        "Too many arguments",
    );
}

fn tokens(plugin: &str, source: Option<&str>, host_token: bool) -> Targets {
    Targets::Tokens(TokenConfig {
        plugin: plugin.into(),
        source: source.map(str::to_owned),
        host_token,
    })
}

#[test]
fn token_plugin_form_needs_no_target() {
    let s = ok(&[
        "--token-plugin=TokenFile",
        "--token-source=/etc/tokens",
        "6080",
    ]);
    assert_eq!(s.target, tokens("TokenFile", Some("/etc/tokens"), false));
    let s = ok(&[
        "--token-plugin",
        "websockify.token_plugins.ReadOnlyTokenFile",
        "--token-source",
        "/t",
        "--host-token",
        "6080",
    ]);
    assert_eq!(
        s.target,
        tokens(
            "websockify.token_plugins.ReadOnlyTokenFile",
            Some("/t"),
            true
        )
    );
}

#[test]
fn target_config_is_token_file_with_that_source() {
    let s = ok(&["--target-config", "/etc/tokens", "6080"]);
    assert_eq!(s.target, tokens("TokenFile", Some("/etc/tokens"), false));
    // As the reference: --target-config wins over --token-plugin/--token-source.
    let s = ok(&[
        "--target-config=/a",
        "--token-plugin=ReadOnlyTokenFile",
        "--token-source=/b",
        "6080",
    ]);
    assert_eq!(s.target, tokens("TokenFile", Some("/a"), false));
}

#[test]
fn wrap_command_form_gives_the_command_its_listen_port_and_mode() {
    for (args, command) in [
        (
            &["6080", "--", "vncserver", ":1", "-geometry", "800x600"][..],
            &["vncserver", ":1", "-geometry", "800x600"][..],
        ),
        (&["-v", "6080", "--", "vncserver"], &["vncserver"]),
        // The reference reads every word after `--` as positional, source included.
        (&["--", "6080", "vncserver"], &["vncserver"]),
    ] {
        let s = ok(args);
        let wrap = s.wrap.expect("a wrapped command");
        assert_eq!(wrap.command, command, "{args:?}");
        assert_eq!(wrap.port, 6080);
        assert_eq!(wrap.mode, websockify::WrapMode::Exit);
    }
    let s = ok(&["--wrap-mode=respawn", "6080", "--", "x"]);
    assert_eq!(s.wrap.unwrap().mode, websockify::WrapMode::Respawn);
    // As the reference, --wrap-mode without a command is accepted (and means nothing).
    assert_eq!(ok(&["--wrap-mode=ignore", "6080", "h:5900"]).wrap, None);
}

/// The wrapped program is the target (its loopback port is picked at start-up), never a
/// token lookup.
#[test]
fn a_wrapped_program_is_a_fixed_target() {
    let s = ok(&["6080", "--", "vncserver"]);
    assert!(matches!(s.target, Targets::Fixed(_)), "{:?}", s.target);
}

#[test]
fn metrics_listen_is_taken_as_given_and_an_empty_one_ignored() {
    let s = ok(&["--metrics-listen", "127.0.0.1:9100", "6080", "h:5900"]);
    assert_eq!(s.metrics_listen.as_deref(), Some("127.0.0.1:9100"));
    assert_eq!(
        ok(&["--metrics-listen=", "6080", "h:5900"]).metrics_listen,
        None
    );
}

#[test]
fn wrap_with_unix_listen_takes_the_programs_port_before_the_separator() {
    let s = ok(&["--unix-listen=/tmp/w.sock", "5999", "--", "prog", "5999"]);
    assert_eq!(s.wrap.unwrap().port, 5999);
    assert_err_contains(
        &["--unix-listen=/tmp/w.sock", "--", "prog"],
        "give the port the program binds",
    );
    assert_err_contains(
        &["--inetd", "--", "prog"],
        "--inetd: not supported with a wrapped",
    );
    assert_err_contains(&["0", "--", "prog"], "must not be 0");
}

#[test]
fn wrap_separator_without_command_still_needs_a_target() {
    assert_err_contains(&["6080", "--"], "Too few arguments");
    assert_err_contains(&["--", "6080"], "Too few arguments");
}

#[test]
fn words_between_source_and_wrap_separator_are_too_many_arguments() {
    assert_err_contains(&["6080", "h:5900", "--", "cmd"], "Too many arguments");
}

#[test]
fn inetd_takes_no_source_argument() {
    let s = ok(&["--inetd", "h:5900"]);
    assert_eq!(s.listen, Listen::Inetd);
    assert_eq!(s.target, tcp_target("h", 5900));
    // The source word is taken for the target, as in the reference.
    assert_err_contains(&["--inetd", "6080", "h:5900"], "Error parsing target");
}

#[test]
fn systemd_takes_no_source_argument_and_excludes_other_listeners_and_daemon() {
    let s = ok(&["--systemd", "h:5900"]);
    assert_eq!(s.listen, Listen::Systemd);
    assert_eq!(s.target, tcp_target("h", 5900));
    assert_err_contains(&["--systemd", "6080", "h:5900"], "Error parsing target");
    assert_err_contains(
        &["--systemd", "--inetd", "h:5900"],
        "--systemd: the sockets",
    );
    assert_err_contains(
        &["--systemd", "--unix-listen=/tmp/ws.sock", "h:5900"],
        "--systemd: the sockets",
    );
    assert_err_contains(&["--systemd", "-D", "h:5900"], "--systemd: not with -D");
    let s = ok(&["--systemd", "5999", "--", "prog"]);
    assert_eq!(s.wrap.unwrap().port, 5999);
    assert_err_contains(
        &["--systemd", "--", "prog"],
        "give the port the program binds",
    );
}

#[test]
fn unix_listen_takes_no_source_argument() {
    let s = ok(&["--unix-listen=/tmp/ws.sock", "h:5900"]);
    assert_eq!(
        s.listen,
        Listen::Unix {
            path: PathBuf::from("/tmp/ws.sock"),
            mode: 0o600
        }
    );
    assert_eq!(s.target, tcp_target("h", 5900));
}

/// As the reference: `--inetd` wins over `--unix-listen`, and a mode without `--unix-listen`
/// is ignored.
#[test]
fn inetd_wins_and_a_mode_alone_is_ignored() {
    let s = ok(&["--inetd", "--unix-listen=/tmp/ws.sock", "h:5900"]);
    assert_eq!(s.listen, Listen::Inetd);
    let s = ok(&["--unix-listen-mode=0666", "6080", "h:5900"]);
    assert_eq!(s.listen, tcp_listen("", 6080));
}

// ---- argument counts and addresses ----

#[test]
fn no_arguments_is_too_few() {
    assert_err_contains(&[], "Too few arguments");
}

#[test]
fn source_without_target_is_too_few() {
    assert_err_contains(&["6080"], "Too few arguments");
}

#[test]
fn a_third_positional_is_too_many() {
    assert_err_contains(&["6080", "h:5900", "extra"], "Too many arguments");
}

#[test]
fn target_without_colon_is_a_target_error() {
    assert_err_contains(&["6080", "localhost"], "Error parsing target");
}

#[test]
fn non_numeric_ports_are_errors() {
    assert_err_contains(&["x", "h:5900"], "Error parsing listen port");
    assert_err_contains(&["h:x", "h:5900"], "Error parsing listen port");
    assert_err_contains(&["6080", "h:x"], "Error parsing target port");
    assert_err_contains(&["6080", "h:"], "Error parsing target port");
}

#[test]
fn ports_above_65535_or_negative_are_errors() {
    assert_err_contains(&["65536", "h:5900"], "Error parsing listen port");
    assert_err_contains(&["h:70000", "h:5900"], "Error parsing listen port");
    assert_err_contains(&["6080", "h:65536"], "Error parsing target port");
    assert_err_contains(&["6080", "h:-1"], "Error parsing target port");
}

#[test]
fn port_65535_is_accepted() {
    let s = ok(&["65535", "h:65535"]);
    assert_eq!(s.listen, tcp_listen("", 65535));
    assert_eq!(s.target, tcp_target("h", 65535));
}

// ---- option spellings ----

#[test]
fn options_take_values_with_equals_or_as_next_word() {
    let eq = ok(&[
        "--cert=c.pem",
        "--key=k.pem",
        "--ssl-version=tlsv1_3",
        "--timeout=5",
        "--idle-timeout=7",
        "6080",
        "h:5900",
    ]);
    let sp = ok(&[
        "--cert",
        "c.pem",
        "--key",
        "k.pem",
        "--ssl-version",
        "tlsv1_3",
        "--timeout",
        "5",
        "--idle-timeout",
        "7",
        "6080",
        "h:5900",
    ]);
    assert_eq!(eq, sp);
    assert_eq!(eq.cert, PathBuf::from("c.pem"));
    assert_eq!(eq.key, Some(PathBuf::from("k.pem")));
    assert_eq!(eq.ssl_min_version, TlsMinVersion::Tls13);
    assert_eq!(eq.timeout, Some(Duration::from_secs(5)));
    assert_eq!(eq.idle_timeout, Some(Duration::from_secs(7)));
}

#[test]
fn boolean_flags_map_into_settings() {
    let s = ok(&[
        "-v",
        "-6",
        "--ssl-only",
        "--run-once",
        "--libserver",
        "6080",
        "h:5900",
    ]);
    assert!(s.verbose && s.prefer_ipv6 && s.ssl_only && s.run_once);
    let long = ok(&["--verbose", "--prefer-ipv6", "6080", "h:5900"]);
    assert!(long.verbose && long.prefer_ipv6);
}

#[test]
fn short_flags_combine() {
    let s = ok(&["-v6", "6080", "h:5900"]);
    assert!(s.verbose && s.prefer_ipv6);
}

#[test]
fn options_may_follow_and_interleave_positionals() {
    let s = ok(&["6080", "-v", "h:5900", "--run-once", "--timeout=3"]);
    assert!(s.verbose && s.run_once);
    assert_eq!(s.timeout, Some(Duration::from_secs(3)));
    assert_eq!(s.target, tcp_target("h", 5900));
}

#[test]
fn unique_long_prefixes_are_accepted() {
    let s = ok(&["--ssl-o", "--idle=9", "--pref", "--run", "6080", "h:5900"]);
    assert!(s.ssl_only && s.prefer_ipv6 && s.run_once);
    assert_eq!(s.idle_timeout, Some(Duration::from_secs(9)));
}

#[test]
fn exact_option_name_wins_over_longer_names_it_prefixes() {
    // --key is also a prefix of --key-password
    let s = ok(&["--key", "k.pem", "6080", "h:5900"]);
    assert_eq!(s.key, Some(PathBuf::from("k.pem")));
}

#[test]
fn verify_client_and_cafile_are_kept_and_an_empty_cafile_is_none() {
    let s = ok(&["--verify-client", "--cafile", "ca.pem", "6080", "h:5900"]);
    assert!(s.verify_client);
    assert_eq!(s.cafile, Some(PathBuf::from("ca.pem")));
    let s = ok(&["--cafile=", "6080", "h:5900"]);
    assert!(!s.verify_client);
    assert_eq!(s.cafile, None);
}

#[test]
fn ssl_target_options_are_kept_and_need_ssl_target() {
    let s = ok(&["--ssl-target", "--target-cafile=ca.pem", "6080", "h:5900"]);
    assert!(s.ssl_target && !s.target_insecure);
    assert_eq!(s.target_cafile, Some(PathBuf::from("ca.pem")));
    let s = ok(&["--ssl-target", "--target-insecure", "6080", "h:5900"]);
    assert!(s.ssl_target && s.target_insecure);
    assert_err_contains(
        &["--target-cafile=ca.pem", "6080", "h:5900"],
        "You must use --ssl-target to use --target-cafile",
    );
    assert_err_contains(
        &["--target-insecure", "6080", "h:5900"],
        "You must use --ssl-target to use --target-insecure",
    );
    assert_err_contains(
        &[
            "--ssl-target",
            "--target-insecure",
            "--target-cafile=ca.pem",
            "6080",
            "h:5900",
        ],
        "exclude each other",
    );
    assert_err_contains(
        &["--ssl-target", "--unix-target=/tmp/s", "6080"],
        "--ssl-target: not supported with --unix-target",
    );
}

#[test]
fn ssl_ciphers_are_kept_as_given() {
    let s = ok(&[
        "--ssl-ciphers",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "6080",
        "h:5900",
    ]);
    assert_eq!(
        s.ssl_ciphers.as_deref(),
        Some("ECDHE-RSA-AES128-GCM-SHA256")
    );
    assert_eq!(ok(&["--ssl-ciphers=", "6080", "h:5900"]).ssl_ciphers, None);
}

#[test]
fn key_password_is_kept_for_the_key_and_an_empty_one_is_none() {
    let s = ok(&["--key-password", "s3cret pw", "6080", "h:5900"]);
    assert_eq!(s.key_password.as_deref(), Some("s3cret pw"));
    assert_eq!(
        ok(&["--key-password=", "6080", "h:5900"]).key_password,
        None
    );
    assert_eq!(ok(&["6080", "h:5900"]).key_password, None);
}

#[test]
fn ambiguous_prefix_is_an_error_listing_the_candidates() {
    let msg = err(&["--ssl", "6080", "h:5900"]);
    assert!(msg.contains("ambiguous option: --ssl"), "{msg}");
    assert!(
        msg.contains("--ssl-only") && msg.contains("--ssl-version"),
        "{msg}"
    );
    // as in the reference: --verbose and --verify-client
    assert_err_contains(&["--ver", "6080", "h:5900"], "ambiguous option: --ver");
}

#[test]
fn repeated_options_are_allowed_and_the_last_value_wins() {
    let s = ok(&["-v", "-v", "--cert=a.pem", "--cert=b.pem", "6080", "h:5900"]);
    assert!(s.verbose);
    assert_eq!(s.cert, PathBuf::from("b.pem"));
}

#[test]
fn option_values_may_start_with_a_hyphen_like_optparse() {
    let s = ok(&["--cert", "-odd.pem", "6080", "h:5900"]);
    assert_eq!(s.cert, PathBuf::from("-odd.pem"));
}

#[test]
fn unknown_option_is_a_usage_error_naming_it() {
    assert_err_contains(
        &["--no-such-option", "6080", "h:5900"],
        "no such option: --no-such-option",
    );
    assert_err_contains(&["6080", "-x", "h:5900"], "no such option: -x");
    assert_err_contains(&["--verbosee", "6080", "h:5900"], "did you mean --verbose?");
}

// ---- values ----

#[test]
fn ssl_versions_map_to_minimum_tls_versions() {
    for (v, want) in [
        ("default", TlsMinVersion::Default),
        ("tlsv1_2", TlsMinVersion::Tls12),
        ("tlsv1_3", TlsMinVersion::Tls13),
    ] {
        let s = ok(&["--ssl-version", v, "6080", "h:5900"]);
        assert_eq!(s.ssl_min_version, want, "{v}");
    }
}

/// rustls has no TLS 1.1: asking for it is a start-up error saying so, not a quiet TLS 1.2.
#[test]
fn ssl_version_tlsv1_1_is_refused_saying_why() {
    for args in [
        &["--ssl-version", "tlsv1_1", "6080", "h:5900"][..],
        &["--ssl-version=tlsv1_1", "6080", "h:5900"][..],
    ] {
        let msg = err(args);
        assert_eq!(
            msg,
            "error: --ssl-version tlsv1_1: TLS 1.1 is not supported (rustls speaks TLS 1.2 and \
             1.3); use tlsv1_2 or default",
            "{args:?}"
        );
    }
}

#[test]
fn unknown_ssl_version_is_an_error() {
    assert_err_contains(&["--ssl-version=sslv3", "6080", "h:5900"], "sslv3");
}

#[test]
fn unknown_wrap_mode_is_an_error() {
    assert_err_contains(&["--wrap-mode=sometimes", "6080", "h:5900"], "sometimes");
}

#[test]
fn zero_timeouts_mean_none() {
    let s = ok(&["--timeout=0", "--idle-timeout=0", "6080", "h:5900"]);
    assert_eq!(s.timeout, None);
    assert_eq!(s.idle_timeout, None);
}

#[test]
fn timeouts_and_heartbeat_must_be_integers() {
    assert_err_contains(&["--timeout=soon", "6080", "h:5900"], "--timeout");
    assert_err_contains(&["--idle-timeout=1.5", "6080", "h:5900"], "--idle-timeout");
    assert_err_contains(&["--timeout", "-5", "6080", "h:5900"], "--timeout");
    assert_err_contains(&["--heartbeat=x", "6080", "h:5900"], "--heartbeat");
}

#[test]
fn heartbeat_zero_is_accepted() {
    ok(&["--heartbeat=0", "6080", "h:5900"]);
}

#[test]
fn heartbeat_and_drain_timeout_become_durations() {
    let s = ok(&["--heartbeat=30", "6080", "h:5900"]);
    assert_eq!(s.heartbeat, Some(Duration::from_secs(30)));
    assert_eq!(s.drain_timeout, Duration::from_secs(5));
    let s = ok(&["--drain-timeout", "0", "6080", "h:5900"]);
    assert_eq!((s.heartbeat, s.drain_timeout), (None, Duration::ZERO));
    assert_err_contains(&["--drain-timeout=x", "6080", "h:5900"], "--drain-timeout");
}

#[test]
fn bad_unix_listen_mode_is_an_error() {
    for mode in ["9", "rw", "0x1ff", "17777"] {
        let arg = format!("--unix-listen-mode={mode}");
        let msg = err(&["--unix-listen=/tmp/ws.sock", &arg, "h:5900"]);
        assert!(
            msg.contains("Error parsing listen unix socket mode"),
            "{mode:?}: {msg}"
        );
    }
}

#[test]
fn unix_listen_mode_is_octal_and_empty_means_0600() {
    // empty means "not given", as in the reference
    for (mode, want) in [
        ("0600", 0o600),
        ("750", 0o750),
        ("0o755", 0o755),
        ("", 0o600),
    ] {
        let arg = format!("--unix-listen-mode={mode}");
        let s = ok(&["--unix-listen=/tmp/ws.sock", &arg, "h:5900"]);
        assert_eq!(
            s.listen,
            Listen::Unix {
                path: PathBuf::from("/tmp/ws.sock"),
                mode: want
            },
            "{mode:?}"
        );
    }
}

// ---- the reference's validation rules ----

#[test]
fn token_source_needs_token_plugin() {
    assert_err_contains(
        &["--token-source", "x"],
        "You must use --token-plugin to use --token-source",
    );
}

#[test]
fn host_token_needs_token_plugin() {
    assert_err_contains(
        &["--host-token", "6080"],
        "You must use --token-plugin to use --host-token",
    );
}

#[test]
fn auth_source_needs_auth_plugin() {
    assert_err_contains(
        &["--auth-source=user:pass", "6080", "h:5900"],
        "You must use --auth-plugin to use --auth-source",
    );
}

#[test]
fn web_auth_needs_auth_plugin() {
    assert_err_contains(
        &["--web-auth", "--web=/srv", "6080", "h:5900"],
        "You must use --auth-plugin to use --web-auth",
    );
}

#[test]
fn web_auth_needs_web() {
    assert_err_contains(
        &[
            "--web-auth",
            "--auth-plugin=BasicHTTPAuth",
            "6080",
            "h:5900",
        ],
        "You must use --web to use --web-auth",
    );
}

#[test]
fn legacy_syslog_needs_syslog() {
    assert_err_contains(
        &["--legacy-syslog", "6080", "h:5900"],
        "You must use --syslog to use --legacy-syslog",
    );
}

#[test]
fn validation_errors_come_before_positional_errors() {
    // no positionals at all: still the validation message, not "Too few arguments"
    assert_err_contains(&["--legacy-syslog"], "You must use --syslog");
    assert_err_contains(
        &["--auth-source=a", "6080", "h"],
        "You must use --auth-plugin",
    );
}

#[test]
fn empty_option_values_count_as_not_given_like_the_reference() {
    let s = ok(&[
        "--token-source=",
        "--record=",
        "--web=",
        "--log-file=",
        "--syslog=",
        "6080",
        "h:5900",
    ]);
    assert_eq!(s.target, tcp_target("h", 5900));
    assert_eq!((s.record, s.log_file, s.syslog), (None, None, None));
}

// ---- recording and logging ----

#[test]
fn record_and_log_file_paths_are_made_absolute_as_the_reference() {
    let s = ok(&[
        "--record=rec",
        "--log-file",
        "ws.log",
        "--traffic",
        "6080",
        "h:5900",
    ]);
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(s.record, Some(cwd.join("rec")));
    assert_eq!(s.log_file, Some(cwd.join("ws.log")));
    assert!(s.traffic);
    let s = ok(&["6080", "h:5900"]);
    assert_eq!((s.record, s.log_file, s.traffic), (None, None, false));
}

#[test]
fn syslog_is_a_udp_host_port_with_a_colon_and_a_socket_path_without() {
    use websockify::{Facility, SyslogConfig, SyslogDest};
    let s = ok(&["--syslog=logs.example:514", "6080", "h:5900"]);
    assert_eq!(
        s.syslog,
        Some(SyslogConfig {
            dest: SyslogDest::Udp {
                host: "logs.example".into(),
                port: 514
            },
            legacy: false,
            // Not a daemon: facility user, as the reference.
            facility: Facility::User,
        })
    );
    let s = ok(&["--syslog", "/dev/log", "--legacy-syslog", "6080", "h:5900"]);
    let syslog = s.syslog.unwrap();
    assert_eq!(syslog.dest, SyslogDest::Unix("/dev/log".into()));
    assert!(syslog.legacy);
    assert_err_contains(
        &["--syslog=host:x", "6080", "h:5900"],
        "--syslog host:x: Error parsing syslog port",
    );
}

#[test]
fn syslog_facility_is_daemon_with_dash_d_and_user_without() {
    use websockify::Facility;
    let daemon = ok(&["-D", "--syslog=/dev/log", "6080", "h:5900"]);
    assert_eq!(daemon.syslog.unwrap().facility, Facility::Daemon);
    let foreground = ok(&["--syslog=/dev/log", "6080", "h:5900"]);
    assert_eq!(foreground.syslog.unwrap().facility, Facility::User);
}

// ---- --web ----

/// A fresh directory for `--web`, with a subdirectory and a file.
fn web_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("websockify-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("file.txt"), "x").unwrap();
    dir
}

#[test]
fn web_dir_is_accepted_as_an_absolute_canonical_path() {
    let dir = web_dir("canonical");
    let roundabout = dir.join("sub").join("..");
    let s = ok(&["--web", roundabout.to_str().unwrap(), "6080", "h:5900"]);
    let want = std::fs::canonicalize(&dir).unwrap();
    assert_eq!(s.web, Some(want.clone()));
    assert!(want.is_absolute());
    assert!(!s.file_only);
    let eq = ok(&[&format!("--web={}", dir.display()), "6080", "h:5900"]);
    assert_eq!(eq.web, Some(want));
}

#[test]
fn web_dir_given_relative_is_made_absolute() {
    // tests run in the package directory, which has a `src` directory
    let s = ok(&["--web", "src", "6080", "h:5900"]);
    let web = s.web.unwrap();
    assert!(web.is_absolute(), "{web:?}");
    assert!(web.ends_with("src"), "{web:?}");
}

#[test]
fn file_only_maps_into_settings() {
    let dir = web_dir("file-only");
    let s = ok(&[
        "--web",
        dir.to_str().unwrap(),
        "--file-only",
        "6080",
        "h:5900",
    ]);
    assert!(s.file_only);
    assert!(s.web.is_some());
    // without --web it is accepted and has no effect, as in the reference
    let alone = ok(&["--file-only", "6080", "h:5900"]);
    assert!(alone.file_only && alone.web.is_none());
}

#[test]
fn missing_web_dir_is_a_one_line_error_naming_web_and_the_path() {
    let missing = web_dir("missing").join("no-such-dir");
    let shown = missing.display().to_string();
    let msg = err(&["--web", &shown, "6080", "h:5900"]);
    assert!(msg.contains("--web") && msg.contains(&shown), "{msg}");
    assert_eq!(msg.lines().count(), 1, "{msg}");
}

#[test]
fn web_path_that_is_a_file_is_a_one_line_error() {
    let file = web_dir("not-a-dir").join("file.txt");
    let shown = file.display().to_string();
    let msg = err(&["--web", &shown, "6080", "h:5900"]);
    assert!(
        msg.contains("--web") && msg.contains(&shown) && msg.contains("not a directory"),
        "{msg}"
    );
    assert_eq!(msg.lines().count(), 1, "{msg}");
}

#[test]
fn auth_plugin_source_and_web_auth_reach_the_settings() {
    let dir = web_dir("web-auth");
    let web = format!("--web={}", dir.display());
    let s = ok(&[
        &web,
        "--auth-plugin=BasicHTTPAuth",
        "--auth-source",
        "user:pa ss",
        "--web-auth",
        "6080",
        "h:5900",
    ]);
    assert_eq!(
        s.auth,
        Some(AuthConfig {
            plugin: "BasicHTTPAuth".into(),
            source: Some("user:pa ss".into()),
        })
    );
    assert!(s.web_auth);
    // Without a source, and dotted: the plugin checks both when the server starts.
    let s = ok(&[
        "--auth-plugin",
        "websockify.auth_plugins.ExpectOrigin",
        "--auth-source=",
        "6080",
        "h:5900",
    ]);
    let auth = s.auth.expect("auth");
    assert_eq!(
        (auth.plugin.as_str(), auth.source, s.web_auth),
        ("websockify.auth_plugins.ExpectOrigin", None, false)
    );
    // An empty plugin name is kept, to fail at start-up: never a silent "no auth".
    assert_eq!(
        ok(&["--auth-plugin=", "6080", "h:5900"])
            .auth
            .map(|a| a.plugin),
        Some(String::new())
    );
    assert_eq!(ok(&["6080", "h:5900"]).auth, None);
}

/// The password in `--auth-source` never shows in the settings' debug output.
#[test]
fn auth_source_is_redacted_in_debug_output() {
    let s = ok(&[
        "--auth-plugin=BasicHTTPAuth",
        "--auth-source=user:s3cret",
        "6080",
        "h:5900",
    ]);
    let shown = format!("{s:?}");
    assert!(
        !shown.contains("s3cret") && shown.contains("BasicHTTPAuth"),
        "{shown}"
    );
}

// ---- options not implemented yet ----

// ---- help ----

#[test]
fn help_is_a_successful_exit_with_grouped_options_and_usage_forms() {
    for flag in ["--help", "-h", "--hel"] {
        let e = parse(&[flag]).expect_err("help is not settings");
        assert_eq!(e.exit_code(), 0, "{flag}");
        let CliError::Help(text) = &e else {
            panic!("{flag}: expected Help, got {e:?}");
        };
        for heading in [
            "Listening",
            "TLS",
            "Targets and tokens",
            "Authentication",
            "Web server",
            "Recording and logging",
            "Process",
        ] {
            assert!(text.contains(&format!("{heading}:")), "{heading} in {text}");
        }
        for form in [
            "[source_addr:]source_port target_addr:target_port",
            "--token-plugin=CLASS [source_addr:]source_port",
            "--unix-target=FILE [source_addr:]source_port",
            "[source_addr:]source_port -- WRAP_COMMAND_LINE",
        ] {
            assert!(text.contains(form), "{form} in {text}");
        }
        for option in [
            "--verbose",
            "--traffic",
            "--record",
            "--daemon",
            "--run-once",
            "--timeout",
            "--idle-timeout",
            "--cert",
            "--key",
            "--key-password",
            "--ssl-only",
            "--ssl-target",
            "--verify-client",
            "--cafile",
            "--ssl-version",
            "--ssl-ciphers",
            "--unix-listen",
            "--unix-listen-mode",
            "--unix-target",
            "--inetd",
            "--web",
            "--web-auth",
            "--file-only",
            "--wrap-mode",
            "--prefer-ipv6",
            "--libserver",
            "--target-config",
            "--token-plugin",
            "--token-source",
            "--host-token",
            "--auth-plugin",
            "--auth-source",
            "--heartbeat",
            "--drain-timeout",
            "--log-file",
            "--syslog",
            "--legacy-syslog",
        ] {
            assert!(text.contains(option), "{option} in {text}");
        }
    }
}

#[test]
fn help_wins_over_other_errors() {
    let e = parse(&["--token-source=x", "--help"]).expect_err("help");
    assert_eq!(e.exit_code(), 0);
}

/// Every option of the reference's `--help` (0.13.0) is in ours, and none is marked as
/// missing: they are all implemented.
#[test]
fn help_lists_every_option_of_the_reference() {
    const REFERENCE: &[&str] = &[
        "--help",
        "--verbose",
        "--traffic",
        "--record",
        "--daemon",
        "--run-once",
        "--timeout",
        "--idle-timeout",
        "--cert",
        "--key",
        "--key-password",
        "--ssl-only",
        "--ssl-target",
        "--verify-client",
        "--cafile",
        "--ssl-version",
        "--ssl-ciphers",
        "--unix-listen",
        "--unix-listen-mode",
        "--unix-target",
        "--inetd",
        "--web",
        "--web-auth",
        "--wrap-mode",
        "--prefer-ipv6",
        "--libserver",
        "--target-config",
        "--token-plugin",
        "--token-source",
        "--host-token",
        "--auth-plugin",
        "--auth-source",
        "--heartbeat",
        "--log-file",
        "--syslog",
        "--legacy-syslog",
        "--file-only",
    ];
    let CliError::Help(help) = parse(&["--help"]).expect_err("help") else {
        panic!("--help is not help");
    };
    let entries = help_entries(&help);
    for option in REFERENCE {
        let entry = entries
            .iter()
            .find(|(name, _)| name == option)
            .unwrap_or_else(|| panic!("{option} not in --help:\n{help}"));
        assert!(!entry.1.contains("not yet supported"), "{}", entry.1);
    }
    // The reference lists 37 options (without its short forms).
    assert_eq!(REFERENCE.len(), 37);
}

/// `--help`'s option entries: the first word of each (the long name, or the positional's
/// placeholder) and the entry's whole text, continuation lines included.
fn help_entries(help: &str) -> Vec<(String, String)> {
    let mut entries: Vec<(String, String)> = Vec::new();
    for line in help.lines() {
        let indent = line.len() - line.trim_start().len();
        let text = line.trim();
        if text.is_empty() || indent == 0 {
            continue; // headings, usage, blank lines
        }
        if indent <= 6 && (text.starts_with('-') || text.starts_with('[')) {
            let name = text
                .split([' ', ','])
                .find(|w| w.starts_with("--") || w.starts_with('['))
                .unwrap_or(text)
                .to_owned();
            entries.push((name, text.to_owned()));
        } else if let Some((_, entry)) = entries.last_mut() {
            entry.push(' ');
            entry.push_str(text);
        }
    }
    entries
}

#[test]
fn cert_is_given_only_when_named_on_the_command_line() {
    let s = ok(&["6080", "h:5900"]);
    assert_eq!((s.cert, s.cert_given), (PathBuf::from("self.pem"), false));
    // An empty value is no value, as for the other paths.
    let s = ok(&["--cert=", "6080", "h:5900"]);
    assert_eq!((s.cert, s.cert_given), (PathBuf::from("self.pem"), false));
    for args in [
        &["--cert", "self.pem", "6080", "h:5900"][..],
        &["--cert=/etc/ws.pem", "6080", "h:5900"],
        &["6080", "h:5900", "--ce", "/etc/ws.pem"],
    ] {
        assert!(ok(args).cert_given, "{args:?}");
    }
}

#[test]
fn target_allow_takes_cidrs_addresses_and_unix_paths_repeated_or_comma_separated() {
    use websockify::AllowEntry;
    let s = ok(&[
        "--token-plugin=TokenFile",
        "--token-source=/t",
        "--target-allow=10.1.2.3/8, 192.0.2.7",
        "--target-allow",
        "fd00::/8,::ffff:198.51.100.0/120,unix:/nonexistent/vnc",
        "6080",
    ]);
    let net = |addr: &str, prefix| AllowEntry::Net {
        addr: addr.parse().unwrap(),
        prefix,
    };
    assert_eq!(
        s.target_allow,
        vec![
            net("10.0.0.0", 8),
            net("192.0.2.7", 32),
            net("fd00::", 8),
            net("198.51.100.0", 24),
            AllowEntry::Unix("/nonexistent/vnc".into()),
        ]
    );
    assert!(ok(&["--token-plugin=TokenFile", "6080"])
        .target_allow
        .is_empty());
}

#[test]
fn a_malformed_target_allow_entry_is_a_usage_error_naming_it() {
    for (entry, why) in [
        (
            "10.0.0.0/33",
            "--target-allow 10.0.0.0/33: an IPv4 prefix length is 0-32",
        ),
        (
            "::/129",
            "--target-allow ::/129: an IPv6 prefix length is 0-128",
        ),
        (
            "10.0.0.0/x",
            "--target-allow 10.0.0.0/x: the prefix length is not a number",
        ),
        (
            "10.0.0/8",
            "--target-allow 10.0.0/8: not an IPv4 or IPv6 address",
        ),
        (
            "vnc.example.com",
            "--target-allow vnc.example.com: not an IPv4",
        ),
        (
            "unix:run/vnc",
            "--target-allow unix:run/vnc: a unix: entry needs an absolute path",
        ),
    ] {
        let arg = format!("--target-allow={entry}");
        assert_err_contains(&["--token-plugin=TokenFile", &arg, "6080"], why);
    }
    // A fixed target is not checked: the option alone would mislead.
    assert_err_contains(
        &["--target-allow=10.0.0.0/8", "6080", "h:5900"],
        "--target-allow applies to the targets of token plugins only",
    );
}

#[test]
fn load_balancer_and_limit_options_are_read_and_off_by_default() {
    let s = ok(&[
        "--proxy-protocol=10.0.0.0/8, 192.0.2.7",
        "--trusted-proxies",
        "::1",
        "--target-proxy-protocol",
        "v2",
        "--max-connections",
        "100",
        "--max-connections-per-ip=4",
        "--handshake-rate",
        "20/s",
        "6080",
        "localhost:5900",
    ]);
    let shown: Vec<String> = s.proxy_protocol.iter().map(|e| e.to_string()).collect();
    assert_eq!(shown, ["10.0.0.0/8", "192.0.2.7/32"]);
    assert_eq!(s.trusted_proxies.len(), 1);
    assert_eq!(s.target_proxy_protocol, Some(websockify::ProxyVersion::V2));
    assert_eq!(s.max_connections, Some(100));
    assert_eq!(s.max_connections_per_ip, Some(4));
    assert_eq!(s.handshake_rate, Some(20));
    assert_eq!(
        ok(&["--handshake-rate=5", "6080", "h:1"]).handshake_rate,
        Some(5)
    );

    let plain = ok(&["6080", "localhost:5900"]);
    assert!(plain.proxy_protocol.is_empty() && plain.trusted_proxies.is_empty());
    assert_eq!(plain.target_proxy_protocol, None);
    assert_eq!(
        (
            plain.max_connections,
            plain.max_connections_per_ip,
            plain.handshake_rate
        ),
        (None, None, None)
    );
    let zero = ok(&["--max-connections=0", "--handshake-rate=0", "6080", "h:1"]);
    assert_eq!((zero.max_connections, zero.handshake_rate), (None, None));
}

#[test]
fn malformed_load_balancer_and_limit_options_are_usage_errors_naming_them() {
    assert_err_contains(
        &["--proxy-protocol", "10.0.0.0/33", "6080", "h:1"],
        "--proxy-protocol 10.0.0.0/33: an IPv4 prefix length is 0-32",
    );
    assert_err_contains(
        &["--trusted-proxies", "unix:/run/x", "6080", "h:1"],
        "--trusted-proxies unix:/run/x: only IP addresses and CIDR blocks",
    );
    assert_err_contains(&["--target-proxy-protocol", "v3", "6080", "h:1"], "v3");
    assert_err_contains(
        &["--handshake-rate", "5/m", "6080", "h:1"],
        "connections per second",
    );
    assert_err_contains(
        &["--max-connections", "-1", "6080", "h:1"],
        "--max-connections",
    );
}

#[test]
fn log_format_is_human_by_default_json_when_asked_and_nothing_else() {
    use websockify::LogFormat;
    assert_eq!(ok(&["6080", "h:5900"]).log_format, LogFormat::Human);
    assert_eq!(
        ok(&["--log-format", "json", "6080", "h:5900"]).log_format,
        LogFormat::Json
    );
    assert_eq!(
        ok(&["--log-format=human", "6080", "h:5900"]).log_format,
        LogFormat::Human
    );
    assert_err_contains(&["--log-format", "xml", "6080", "h:5900"], "--log-format");
    // `--log-fi` still abbreviates the reference's --log-file.
    let s = ok(&["--log-fi", "/tmp/x.log", "6080", "h:5900"]);
    assert_eq!(s.log_file, Some(PathBuf::from("/tmp/x.log")));
}

/// optparse takes any unique prefix of the reference's options. Where one of our own options
/// makes such a prefix ambiguous (`--sys`: `--syslog` or `--systemd`; `--log`: `--log-file` or
/// `--log-format`), the reference's option wins, so its command lines keep their meaning; an
/// option's value that looks like a prefix is left alone, and ambiguity among the reference's
/// own options is still an error.
#[test]
fn a_prefix_of_a_reference_option_keeps_its_meaning_beside_our_options() {
    let s = ok(&["--sys", "/dev/log", "6080", "h:5900"]);
    assert!(s.syslog.is_some() && s.listen == tcp_listen("", 6080));
    for args in [
        &["--log", "/tmp/x.log", "6080", "h:5900"][..],
        &["--log-f=/tmp/x.log", "6080", "h:5900"],
        &["--log-file", "/tmp/x.log", "6080", "h:5900"],
    ] {
        assert_eq!(
            ok(args).log_file,
            Some(PathBuf::from("/tmp/x.log")),
            "{args:?}"
        );
    }
    // A value is not an option, even when it looks like a prefix of one; after an option that
    // takes none, or whose value came with `=`, the next word is an option again.
    for args in [
        &["--record", "--sys", "6080", "h:5900"][..],
        &["--recor", "--sys", "6080", "h:5900"],
    ] {
        let s = ok(args);
        assert!(s.record.is_some_and(|r| r.ends_with("--sys")), "{args:?}");
        assert!(s.syslog.is_none(), "{args:?}");
    }
    let s = ok(&["--verbose", "--sys", "/dev/log", "6080", "h:5900"]);
    assert!(s.verbose && s.syslog.is_some());
    let s = ok(&["--record=/tmp/r", "--sys", "/dev/log", "6080", "h:5900"]);
    assert!(s.record.is_some() && s.syslog.is_some());
    // Our options keep their own prefixes where nothing of the reference's is in the way.
    assert!(ok(&["--log-fo", "json", "6080", "h:5900"]).log_format == websockify::LogFormat::Json);
    assert_err_contains(&["--ssl", "6080", "h:5900"], "ambiguous option: --ssl");
}
