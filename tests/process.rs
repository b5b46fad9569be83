//! The `websockify` binary itself: exit codes and messages of the command line, start-up
//! errors, and a real run that relays and stops on SIGTERM.

use websockify_test_support as support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_websockify");

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_prints_the_usage_forms_and_exits_0() {
    let (code, stdout, _) = run(&["--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("[source_addr:]source_port target_addr:target_port"));
    assert!(stdout.contains("--token-plugin=CLASS"));
}

/// `--version` names the package version and the commit it was built from, so that an
/// installed package can be matched to its source (scripts/package-test.sh relies on it to
/// prove which binary served noVNC). In a git checkout the commit is HEAD's.
#[test]
fn version_prints_the_package_version_and_commit_on_stdout_and_exits_0() {
    let (code, stdout, stderr) = run(&["--version"]);
    assert_eq!(code, 0, "{stderr}");
    let prefix = format!("websockify {} (commit ", env!("CARGO_PKG_VERSION"));
    let commit = stdout
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(")\n"))
        .unwrap_or_else(|| panic!("--version printed {stdout:?}"));
    match checkout_head() {
        Some(head) => assert_eq!(commit, head, "--version's commit is not HEAD's"),
        None => assert!(
            commit == "unknown" || commit.bytes().all(|b| b.is_ascii_hexdigit()),
            "{commit:?}"
        ),
    }
    assert_eq!(stderr, "");
    // Like any long option, a unique prefix works; options after it do not matter.
    assert_eq!(run(&["--vers", "6080"]).1, stdout);
}

/// As the reference (optparse): the usage forms on stderr, a blank line, then the error.
#[test]
fn too_few_arguments_prints_the_usage_forms_then_the_error() {
    for args in [&[][..], &["6080"], &["-v", "127.0.0.1:6080"]] {
        let (code, stdout, stderr) = run(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert_eq!(stdout, "", "{args:?}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(
            lines[0],
            "Usage: websockify [options] [source_addr:]source_port target_addr:target_port",
            "{args:?}: {stderr}"
        );
        for form in [
            "websockify [options] --token-plugin=CLASS [source_addr:]source_port",
            "websockify [options] --unix-target=FILE [source_addr:]source_port",
            "websockify [options] [source_addr:]source_port -- WRAP_COMMAND_LINE",
        ] {
            assert!(lines.iter().any(|l| l.trim() == form), "{form}: {stderr}");
        }
        assert_eq!(
            lines[lines.len() - 2..],
            ["", "error: Too few arguments"],
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn usage_errors_exit_2_with_one_line_naming_the_problem() {
    let (code, _, stderr) = run(&["6080"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("Too few arguments"), "{stderr}");
    let (code, _, stderr) = run(&["--syslog", "localhost:x", "6080", "localhost:5900"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--syslog localhost:x"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[test]
fn ssl_only_without_the_certificate_fails_at_start_naming_cert() {
    let (code, _, stderr) = run(&[
        "--ssl-only",
        "--cert",
        "/nonexistent/self.pem",
        "127.0.0.1:0",
        "127.0.0.1:5900",
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("--cert /nonexistent/self.pem"), "{stderr}");
}

#[test]
fn busy_port_fails_at_start_naming_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (code, _, stderr) = run(&[&format!("127.0.0.1:{port}"), "127.0.0.1:5900"]);
    assert_eq!(code, 1);
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
}

/// Kills the child if a test fails before it is reaped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn relays_and_exits_cleanly_on_sigterm() {
    let echo = echo_server().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Child(
        Command::new(BIN)
            .args([&format!("127.0.0.1:{port}"), &echo.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let started = Instant::now();
    let stream = loop {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(stream) => break stream,
            Err(_) if started.elapsed() < WAIT => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(err) => panic!("proxy never listened: {err}"),
        }
    };
    let (mut client, _) = RawClient::upgrade(stream, Some("binary")).await;
    client.send(true, 0x2, b"through the binary").await;
    assert_eq!(client.read_data(18).await, b"through the binary");

    let sent = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = bounded("exit after SIGTERM", async {
        loop {
            if let Some(status) = child.0.try_wait().unwrap() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(status.success(), "{status:?}");
    client.expect_eof().await;
}

#[test]
fn a_missing_cert_named_by_the_user_fails_at_start_naming_it() {
    // --timeout: should it start, it stops by itself.
    let (code, _, stderr) = run(&[
        "--timeout=1",
        "--cert",
        "/nonexistent/mine.pem",
        "127.0.0.1:0",
        "127.0.0.1:5900",
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        stderr.trim(),
        "websockify: --cert /nonexistent/mine.pem: no such file"
    );
}

/// Without `--cert` and without `self.pem` the server serves plain clients only, as the
/// reference, and its log lines (even with `-v`, even when a TLS client comes) name no
/// certificate file: the user never named one.
#[test]
fn without_cert_or_self_pem_the_logs_name_no_certificate_file() {
    use std::io::{Read, Write};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(BIN)
        .current_dir(temp_dir("no-self-pem"))
        .args(["-v", &format!("127.0.0.1:{port}"), "127.0.0.1:5900"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Child(child);
    let started = Instant::now();
    let mut tls_client = loop {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(stream) => break stream,
            Err(_) if started.elapsed() < WAIT => std::thread::sleep(Duration::from_millis(20)),
            Err(err) => panic!("proxy never listened: {err}"),
        }
    };
    // The start of a TLS ClientHello: the server refuses it and closes.
    tls_client
        .write_all(&[0x16, 0x03, 0x01, 0x00, 0x05])
        .unwrap();
    tls_client.set_read_timeout(Some(WAIT)).unwrap();
    let mut rest = Vec::new();
    let _ = tls_client.read_to_end(&mut rest);

    let sent = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let mut stderr = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.contains("No SSL/TLS support"), "{stderr}");
    assert!(stderr.contains("TLS client refused"), "{stderr}");
    assert!(!stderr.contains("self.pem"), "{stderr}");
    assert!(!stderr.contains(".pem"), "{stderr}");
}

// ---- demo/run: its command line, checked without starting anything ----

/// Runs `bash demo/run ARGS` from the checkout's root.
fn demo(args: &[&str]) -> (i32, String, String) {
    let out = Command::new("bash")
        .arg("demo/run")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn demo_help_prints_the_whole_comment_header_and_no_code() {
    let (code, stdout, stderr) = demo(&["--help"]);
    assert_eq!(code, 0, "{stderr}");
    let first = stdout.lines().next().unwrap_or_default();
    assert!(first.starts_with("One-command demo"), "{stdout}");
    for option in [
        "--port N",
        "--console-port N",
        "--listen ADDR",
        "--tls",
        "--no-build",
    ] {
        assert!(stdout.contains(option), "{option} in {stdout}");
    }
    // The header's last line is there, and nothing after it.
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.contains("which it names"), "last line: {last:?}");
    assert!(!stdout.contains("set -euo"), "{stdout}");
    assert!(!stdout.contains("#!"), "{stdout}");
    // From another directory too.
    let out = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/demo/run"))
        .arg("-h")
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), stdout);
}

#[test]
fn demo_options_without_a_value_or_with_a_bad_port_fail_in_one_line_naming_the_option() {
    for (args, want) in [
        (&["--port"][..], "--port needs a value"),
        (&["--console-port"], "--console-port needs a value"),
        (&["--listen"], "--listen needs a value"),
        (&["--tls", "--port"], "--port needs a value"),
        (&["--port", "abc"], "--port: 'abc' is not a port number"),
        (&["--port", "70000"], "--port: '70000' is not a port number"),
        (&["--port", "0"], "--port: '0' is not a port number"),
        (
            &["--console-port", "-1"],
            "--console-port: '-1' is not a port number",
        ),
        (
            &["--port", "6080", "--console-port", "x"],
            "--console-port: 'x'",
        ),
    ] {
        let (code, stdout, stderr) = demo(args);
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert_eq!(stdout, "", "{args:?}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.contains(want),
            "{args:?}: expected {want:?} in {stderr:?}"
        );
    }
}

#[test]
fn demo_cleanup_keeps_the_logs_and_says_where_they_are() {
    let keep = |dir: &std::path::Path| {
        let out = Command::new("bash")
            .args(["-c", ". demo/lib.sh && keep_logs \"$1\"", "-"])
            .arg(dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let dir = temp_dir("demo-logs");
    std::fs::write(dir.join("proxy-novnc.log"), "served\n").unwrap();
    std::fs::write(dir.join("key.pem"), "secret\n").unwrap();
    let said = keep(&dir);
    assert!(said.contains(&dir.display().to_string()), "{said}");
    assert!(dir.join("proxy-novnc.log").exists(), "the log is gone");
    assert!(!dir.join("key.pem").exists(), "the key is kept");

    // Nothing logged yet (an early error): nothing kept, nothing said.
    let empty = temp_dir("demo-nologs");
    assert_eq!(keep(&empty), "");
    assert!(!empty.exists());
}

/// HEAD's short commit when the crate's directory is the top of a git checkout (what build.rs
/// takes); None otherwise (an unpacked archive).
fn checkout_head() -> Option<String> {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let top = std::path::PathBuf::from(git(&["rev-parse", "--show-toplevel"])?);
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    (top.canonicalize().ok()? == here.canonicalize().ok()?)
        .then(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .flatten()
}
