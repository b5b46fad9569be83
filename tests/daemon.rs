//! `-D/--daemon`, driving the real binary: it detaches (the command returns 0 at once; the
//! daemon is nobody's child of ours, in a session of its own, not its leader, cwd `/` or the
//! `--web` directory, stdio on /dev/null and nothing else), still serves, and every start-up failure reaches
//! the terminal and the exit status with nothing left running.

use websockify_test_support as support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::procs::{self, free_port, stat};
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_websockify");

/// Runs `websockify ARGS` and waits (bounded) for the command to return.
fn run_bounded(args: &[&str]) -> (std::process::ExitStatus, String, Duration) {
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = procs::poll("the command to return", WAIT, || child.try_wait().unwrap());
    let mut stderr = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status, stderr, started.elapsed())
}

/// Stops the daemon on drop, whatever the test's outcome.
struct Daemon(i32);

impl Drop for Daemon {
    fn drop(&mut self) {
        procs::signal(self.0, libc::SIGTERM);
        procs::wait_gone(self.0, WAIT);
    }
}

/// The daemon whose command line has `marker` (its listen address, unique to the test): the
/// one process left with it, once the forks in between have exited.
fn find_daemon(marker: &str) -> Daemon {
    Daemon(procs::poll("the daemon", WAIT, || {
        let first = procs::pids_with_arg(marker);
        std::thread::sleep(Duration::from_millis(100));
        (first.len() == 1 && procs::pids_with_arg(marker) == first).then(|| first[0])
    }))
}

fn assert_detached(pid: i32, dir: &Path) {
    let me = std::process::id() as i32;
    let daemon = stat(pid).expect("the daemon runs");
    let ours = stat(me).unwrap();
    assert_ne!(daemon.ppid, me, "still our child");
    assert_ne!(daemon.session, ours.session, "still in our session");
    // The second fork: not a session leader, so it can never get a controlling terminal.
    assert_ne!(daemon.session, pid, "a session leader");
    assert_eq!(procs::cwd(pid).unwrap(), dir);
    for fd in 0..3 {
        assert_eq!(
            procs::fd_target(pid, fd).unwrap(),
            Path::new("/dev/null"),
            "fd {fd}"
        );
        // Open for writing too: the log's lines to stderr must not fail.
        assert_eq!(fd_flags(pid, fd) & libc::O_ACCMODE, libc::O_RDWR, "fd {fd}");
    }
    // The descriptor opened for them (close-on-exec, unlike any inherited one) is closed once
    // copied.
    let opened: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| procs::fd_target(pid, fd).is_some_and(|to| to == Path::new("/dev/null")))
        .filter(|&fd| fd_flags(pid, fd) & libc::O_CLOEXEC != 0)
        .collect();
    assert_eq!(opened, Vec::<i32>::new(), "our /dev/null left open");
}

/// The open flags of `pid`'s descriptor `fd` (octal in `/proc/PID/fdinfo`).
fn fd_flags(pid: i32, fd: i32) -> i32 {
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap();
    let flags = info.lines().find_map(|l| l.strip_prefix("flags:")).unwrap();
    i32::from_str_radix(flags.trim(), 8).unwrap()
}

#[tokio::test]
async fn the_daemon_detaches_and_serves() {
    let target = named_target("behind-the-daemon").await;
    let listen = format!("127.0.0.1:{}", free_port());
    let (status, stderr, took) = run_bounded(&["-D", &listen, &target.to_string()]);
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(took < Duration::from_secs(3), "the command took {took:?}");
    let daemon = find_daemon(&listen);
    assert_detached(daemon.0, Path::new("/"));
    assert_reaches(listen.parse().unwrap(), "/", "behind-the-daemon").await;
    // SIGTERM still stops it (the reference's daemon ignores it).
    drop(daemon);
}

#[tokio::test]
async fn the_daemon_runs_in_the_web_directory() {
    let web = std::fs::canonicalize(temp_dir("daemon-web")).unwrap();
    std::fs::write(web.join("hello.txt"), "hello from the daemon").unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let (status, stderr, _) =
        run_bounded(&["-D", "--web", web.to_str().unwrap(), &listen, "127.0.0.1:9"]);
    assert!(status.success(), "{status:?}: {stderr}");
    let daemon = find_daemon(&listen);
    assert_detached(daemon.0, &web);
    let answer = send_and_read_all(
        listen.parse().unwrap(),
        b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        String::from_utf8_lossy(&answer).ends_with("hello from the daemon"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

#[test]
fn start_up_failures_reach_stderr_and_the_status_with_nothing_left_running() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let free = format!("127.0.0.1:{}", free_port());
    let cases: &[(&[&str], &str)] = &[
        (&["-D", &taken, "127.0.0.1:9"], "cannot listen on"),
        (
            &["-D", "--cert=/nonexistent/cert.pem", &free, "127.0.0.1:9"],
            "/nonexistent/cert.pem",
        ),
        (
            &[
                "-D",
                "--token-plugin=TokenFile",
                "--token-source=/nonexistent/tokens",
                &free,
            ],
            "/nonexistent/tokens",
        ),
    ];
    for (args, says) in cases {
        let (status, stderr, _) = run_bounded(args);
        assert_eq!(status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        let marker = args
            .iter()
            .find(|a| a.starts_with("127.0.0.1:") && **a != "127.0.0.1:9");
        let marker = marker.unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(
            procs::pids_with_arg(marker),
            Vec::<i32>::new(),
            "{args:?}: something still runs"
        );
    }
}

#[tokio::test]
async fn a_daemon_wraps_a_program_as_its_own_child() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let script = "trap 'exit 0' TERM; while :; do sleep 0.1; done";
    let (status, stderr, _) = run_bounded(&["-D", &listen, "--", "sh", "-c", script]);
    assert!(status.success(), "{status:?}: {stderr}");
    let daemon = find_daemon(&listen);
    let child = procs::poll("the wrapped program", WAIT, || {
        procs::children(daemon.0).into_iter().next()
    });
    drop(daemon);
    procs::wait_gone(child.0, WAIT);
}
