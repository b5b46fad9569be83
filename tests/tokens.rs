//! Token plugins: the request's token picks its target, before the 101. Two echo targets
//! behind two tokens; unknown and missing tokens; `--host-token`; TokenFile edits applied
//! without a restart (in place and by rename); a directory source; a source that disappears.

use websockify_test_support as support;

use std::net::SocketAddr;
use std::path::Path;

use support::*;
use tokio::net::TcpStream;
use websockify::{Settings, Targets, TokenConfig};

fn token_settings(plugin: &str, source: &Path, host_token: bool) -> Settings {
    let mut settings = settings_to(closed_port_sync());
    settings.target = Targets::Tokens(TokenConfig {
        plugin: plugin.into(),
        source: Some(source.to_string_lossy().into_owned()),
        host_token,
    });
    settings
}

/// An address nothing listens on (the fixed target is replaced anyway).
fn closed_port_sync() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn each_token_reaches_its_own_target_and_nothing_else_reaches_anything() {
    let (a, b) = (named_target("A").await, named_target("B").await);
    let dir = temp_dir("tokens-two");
    let file = dir.join("tokens");
    write(
        &file,
        &format!(
            "# two desks\n\ndesk-a: {a}\ndesk-b:\t127.0.0.1:{}\n",
            b.port()
        ),
    );
    let proxy = start_proxy(token_settings("TokenFile", &file, false)).await;
    assert_reaches(proxy.addr, "/websockify?token=desk-a", "A").await;
    assert_reaches(proxy.addr, "/?token=desk-b", "B").await;
    // Any path, other parameters around it.
    assert_reaches(proxy.addr, "/x/y?a=1&token=desk-b&z", "B").await;
    assert_upgrade_refused(proxy.addr, "/?token=desk-c", 404, "Token not found").await;
    assert_upgrade_refused(proxy.addr, "/?token=DESK-A", 404, "Token not found").await;
    assert_upgrade_refused(proxy.addr, "/websockify", 404, "Token not present").await;
    assert_upgrade_refused(proxy.addr, "/?token=", 404, "Token not present").await;
    // A fixed target (the settings' original one) is not a fallback.
    assert_upgrade_refused(proxy.addr, "/?tokenx=desk-a", 404, "Token not present").await;
    proxy.stop().await;
}

#[tokio::test]
async fn host_token_takes_the_host_header_without_its_port() {
    let (a, b) = (named_target("A").await, named_target("B").await);
    let dir = temp_dir("tokens-host");
    let file = dir.join("tokens");
    write(&file, &format!("desk-a: {a}\ndesk-b: {b}\n"));
    let proxy = start_proxy(token_settings("ReadOnlyTokenFile", &file, true)).await;
    // upgrade_request sends `Host: 127.0.0.1`; a second Host line would be a bad request, so
    // the requests here are written out whole.
    for (host, name) in [("desk-a:6080", "A"), ("desk-b", "B")] {
        let raw = upgrade_request("/?token=desk-b", "")
            .replace("Host: 127.0.0.1", &format!("Host: {host}"));
        let mut client = RawClient::new(TcpStream::connect(proxy.addr).await.unwrap());
        let head = client.request(&raw).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{host}: {head}");
        assert_eq!(client.read_data(1).await, name.as_bytes(), "{host}");
    }
    // The query's token is not used with --host-token.
    assert_upgrade_refused(proxy.addr, "/?token=desk-a", 404, "Token not found").await;
    proxy.stop().await;
}

#[tokio::test]
async fn token_file_edits_apply_without_a_restart_in_place_and_by_rename() {
    let (a, b) = (named_target("A").await, named_target("B").await);
    let dir = temp_dir("tokens-edit");
    let file = dir.join("tokens");
    write(&file, &format!("desk: {a}\n"));
    let proxy = start_proxy(token_settings("TokenFile", &file, false)).await;
    assert_reaches(proxy.addr, "/?token=desk", "A").await;
    // Edited in place, the same length (size unchanged: the modification time or inode tells).
    write(&file, &format!("desk: {b}\n"));
    assert_reaches(proxy.addr, "/?token=desk", "B").await;
    // Replaced by rename, as editors and configuration managers do.
    let staged = dir.join("tokens.new");
    write(&staged, &format!("desk: {a}\nother: {b}\n"));
    std::fs::rename(&staged, &file).unwrap();
    assert_reaches(proxy.addr, "/?token=desk", "A").await;
    assert_reaches(proxy.addr, "/?token=other", "B").await;
    // Removed: every token is refused (revoking access must not keep the old table) ...
    std::fs::remove_file(&file).unwrap();
    assert_upgrade_refused(proxy.addr, "/?token=desk", 503, "token source unavailable").await;
    // ... until it is back.
    write(&file, &format!("desk: {b}\n"));
    assert_reaches(proxy.addr, "/?token=desk", "B").await;
    proxy.stop().await;
}

#[tokio::test]
async fn read_only_token_file_reads_its_source_once() {
    let (a, b) = (named_target("A").await, named_target("B").await);
    let dir = temp_dir("tokens-ro");
    let file = dir.join("tokens");
    write(&file, &format!("desk: {a}\n"));
    let proxy = start_proxy(token_settings("ReadOnlyTokenFile", &file, false)).await;
    write(&file, &format!("desk: {b}\n"));
    assert_reaches(proxy.addr, "/?token=desk", "A").await;
    proxy.stop().await;
}

#[tokio::test]
async fn a_directory_source_reads_every_file_in_it_and_sees_new_ones() {
    let (a, b) = (named_target("A").await, named_target("B").await);
    let dir = temp_dir("tokens-dir");
    write(&dir.join("one"), &format!("desk-a: {a}\n"));
    std::fs::create_dir(dir.join("subdir")).unwrap();
    let proxy = start_proxy(token_settings("TokenFile", &dir, false)).await;
    assert_reaches(proxy.addr, "/?token=desk-a", "A").await;
    assert_upgrade_refused(proxy.addr, "/?token=desk-b", 404, "Token not found").await;
    write(&dir.join("two"), &format!("desk-b: {b}\n"));
    assert_reaches(proxy.addr, "/?token=desk-b", "B").await;
    proxy.stop().await;
}

#[tokio::test]
async fn a_unix_socket_target_from_a_token() {
    let dir = temp_dir("tokens-unix");
    let sock = dir.join("desk.sock");
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let file = dir.join("tokens");
    write(&file, &format!("u: unix_socket:{}\n", sock.display()));
    let proxy = start_proxy(token_settings("TokenFile", &file, false)).await;
    let mut client = RawClient::new(TcpStream::connect(proxy.addr).await.unwrap());
    let head = client.request(&upgrade_request("/?token=u", "")).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    client.send(true, 0x2, b"over unix").await;
    assert_eq!(client.read_data(9).await, b"over unix");
    proxy.stop().await;
}

#[test]
fn bad_token_configurations_are_start_up_errors_naming_what_is_wrong() {
    let missing = temp_dir("tokens-missing").join("nope");
    let err = startup_error(token_settings("TokenFile", &missing, false));
    assert!(
        err.message
            .contains(&format!("--token-source {}", missing.display())),
        "{err}"
    );
    let dir = temp_dir("tokens-bad");
    let err = startup_error(token_settings("NoSuchPlugin", &dir, false));
    assert!(
        err.message.contains("--token-plugin NoSuchPlugin: unknown"),
        "{err}"
    );
    let err = startup_error(token_settings("some.module.Plugin", &dir, false));
    assert!(
        err.message.contains("--token-plugin some.module.Plugin"),
        "{err}"
    );
    let mut settings = token_settings("TokenFile", &dir, false);
    if let Targets::Tokens(config) = &mut settings.target {
        config.source = None;
    }
    let err = startup_error(settings);
    assert!(err.message.contains("needs --token-source"), "{err}");
    assert_eq!(err.code, 1);
}

#[tokio::test]
async fn an_edit_that_keeps_size_time_and_inode_is_still_seen_while_the_file_is_fresh() {
    let (a, b) = (named_target("A").await, named_target("B").await);
    // Same length, so only the content differs.
    assert_eq!(a.to_string().len(), b.to_string().len());
    let dir = temp_dir("tokens-racy");
    let file = dir.join("tokens");
    write(&file, &format!("desk: {a}\n"));
    let modified = std::fs::metadata(&file).unwrap().modified().unwrap();
    let proxy = start_proxy(token_settings("TokenFile", &file, false)).await;
    assert_reaches(proxy.addr, "/?token=desk", "A").await;
    // Rewritten in place within one tick of the file clock: size, time and inode all as
    // they were (the time set back explicitly, as a coarse clock would leave it).
    write(&file, &format!("desk: {b}\n"));
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(modified)
        .unwrap();
    assert_reaches(proxy.addr, "/?token=desk", "B").await;
    proxy.stop().await;
}

/// A Unix socket target at `path` that says who it is, then echoes.
fn unix_named_target(path: &Path, name: &'static str) {
    let listener = tokio::net::UnixListener::bind(path).unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let _ = stream.write_all(name.as_bytes()).await;
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
}

fn symlink(target: &str, link: &Path) {
    std::os::unix::fs::symlink(target, link).unwrap();
}

#[tokio::test]
async fn token_file_name_reads_the_file_the_token_names_and_stays_in_its_directory() {
    let (a, b) = (named_target("A").await, named_target("B").await);
    let root = temp_dir("tokens-filename");
    let dir = root.join("tok");
    std::fs::create_dir(&dir).unwrap();
    write(&dir.join("desk-a"), &format!("{a}\n"));
    // Surrounding whitespace; the last colon splits.
    write(
        &dir.join("desk-b"),
        &format!("  [{}]:{} \n", b.ip(), b.port()),
    );
    unix_named_target(&root.join("u.sock"), "U");
    write(
        &dir.join("desk-u"),
        &format!("unix_socket:{}", root.join("u.sock").display()),
    );
    // A symlink to a file inside is that file.
    symlink("desk-a", &dir.join("alias"));
    // Outside: beside the directory, and in a sibling sharing its name as a prefix.
    write(&root.join("secret"), &format!("{b}\n"));
    std::fs::create_dir(root.join("tok-other")).unwrap();
    write(&root.join("tok-other/secret"), &format!("{b}\n"));
    symlink("../secret", &dir.join("leak"));
    symlink("../tok-other/secret", &dir.join("leak-sibling"));
    symlink(
        root.join("tok-other/secret").to_str().unwrap(),
        &dir.join("leak-absolute"),
    );
    write(&dir.join("broken"), "no port here\n");
    std::fs::write(dir.join("not-utf8"), b"127.0.0.1:\xff\n").unwrap();
    std::fs::create_dir(dir.join("subdir")).unwrap();

    let proxy = start_proxy(token_settings("TokenFileName", &dir, false)).await;
    let p = proxy.addr;
    assert_reaches(p, "/?token=desk-a", "A").await;
    assert_reaches(p, "/?token=desk-b", "B").await;
    assert_reaches(p, "/?token=desk-u", "U").await;
    assert_reaches(p, "/?token=alias", "A").await;
    // Reduced to the base name, as the reference: a path in the token cannot climb out.
    assert_reaches(p, "/?token=..%2F..%2Fdesk-a", "A").await;
    assert_reaches(p, "/?token=%2Fetc%2Fdesk-a", "A").await;
    for refused in [
        "nope",
        "..",
        ".",
        "x%2F",
        "subdir",
        "leak",
        "leak-sibling",
        "leak-absolute",
        "..%2Fsecret",
        "..%2Ftok-other%2Fsecret",
    ] {
        assert_upgrade_refused(p, &format!("/?token={refused}"), 404, "Token not found").await;
    }
    // The token exists but its file is broken: our side's fault, not a wrong token.
    for broken in ["broken", "not-utf8"] {
        let path = format!("/?token={broken}");
        assert_upgrade_refused(p, &path, 503, "token source unavailable").await;
    }
    // Files added later apply at once.
    write(&dir.join("late"), &format!("{b}"));
    assert_reaches(p, "/?token=late", "B").await;
    proxy.stop().await;
}

#[tokio::test]
async fn unix_domain_socket_directory_finds_sockets_and_nothing_outside_its_directory() {
    let root = temp_dir("tokens-unixdir");
    let dir = root.join("vnc");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::create_dir(root.join("vnc-other")).unwrap();
    unix_named_target(&dir.join("desk.sock"), "D");
    unix_named_target(&dir.join("sub/two.sock"), "T");
    unix_named_target(&root.join("vnc-other/other.sock"), "O");
    unix_named_target(&root.join("outside.sock"), "X");
    write(&dir.join("plain"), "not a socket");
    symlink("desk.sock", &dir.join("alias.sock"));
    symlink("../outside.sock", &dir.join("link-out.sock"));
    // A directory symlink to the sibling sharing the prefix: `/…/vnc-other` starts with the
    // string `/…/vnc`, not with its components.
    symlink("../vnc-other", &dir.join("sibling"));

    let proxy = start_proxy(token_settings("UnixDomainSocketDirectory", &dir, false)).await;
    let p = proxy.addr;
    assert_reaches(p, "/?token=desk.sock", "D").await;
    assert_reaches(p, "/?token=sub%2Ftwo.sock", "T").await;
    assert_reaches(p, "/?token=alias.sock", "D").await;
    assert_reaches(p, "/?token=sub%2F..%2Fdesk.sock", "D").await;
    for refused in [
        // The reference's escapes: `..` and a sibling sharing the prefix.
        "..%2Foutside.sock",
        "..%2Fvnc-other%2Fother.sock",
        "sub%2F..%2F..%2Fvnc-other%2Fother.sock",
        "sibling%2Fother.sock",
        "link-out.sock",
        // An absolute token replaces the directory in a join.
        &format!("{}", root.join("outside.sock").display()).replace('/', "%2F"),
        "plain",
        "missing.sock",
        "sub",
        ".",
        "..",
    ] {
        assert_upgrade_refused(p, &format!("/?token={refused}"), 404, "Token not found").await;
    }
    proxy.stop().await;
}

#[test]
fn directory_plugins_need_a_directory() {
    let file = temp_dir("tokens-notdir").join("file");
    write(&file, "x");
    for plugin in ["TokenFileName", "UnixDomainSocketDirectory"] {
        let err = startup_error(token_settings(plugin, &file, false));
        assert!(
            err.message.contains(&format!(
                "--token-source {}: not a directory ({plugin} needs one)",
                file.display()
            )),
            "{err}"
        );
        let missing = file.with_file_name("missing");
        let err = startup_error(token_settings(plugin, &missing, false));
        assert!(err.message.contains("No such file"), "{err}");
    }
}

/// A target on `ip` that says who it is, then echoes.
async fn named_target_on(ip: &str, name: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let _ = stream.write_all(name.as_bytes()).await;
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

fn allow(entries: &[&str]) -> Vec<websockify::AllowEntry> {
    entries
        .iter()
        .map(|e| websockify::AllowEntry::parse(e).unwrap())
        .collect()
}

#[tokio::test]
async fn target_allow_refuses_token_targets_outside_the_list_names_resolved_and_checked() {
    // Two loopback addresses: one allowed, one not.
    let one = named_target_on("127.0.0.1", "1").await;
    let two = named_target_on("127.0.0.2", "2").await;
    let dir = temp_dir("tokens-allow");
    let file = dir.join("tokens");
    write(
        &file,
        &format!(
            "one: {one}\ntwo: {two}\nname-one: localhost:{}\n\
             mapped-two: [::ffff:127.0.0.2]:{}\n",
            one.port(),
            two.port()
        ),
    );
    let forbidden = |p, path: &'static str| async move {
        assert_upgrade_refused(p, path, 403, "Target not allowed").await;
    };

    // Without the option every target goes (the reference's behaviour).
    let proxy = start_proxy(token_settings("TokenFile", &file, false)).await;
    assert_reaches(proxy.addr, "/?token=one", "1").await;
    assert_reaches(proxy.addr, "/?token=two", "2").await;
    proxy.stop().await;

    // A block holding 127.0.0.0 and 127.0.0.1 only.
    let mut settings = token_settings("TokenFile", &file, false);
    settings.target_allow = allow(&["127.0.0.0/31"]);
    let proxy = start_proxy(settings).await;
    let p = proxy.addr;
    assert_reaches(p, "/?token=one", "1").await;
    assert_reaches(p, "/?token=name-one", "1").await;
    forbidden(p, "/?token=two").await;
    forbidden(p, "/?token=mapped-two").await;
    proxy.stop().await;

    // An IPv4-mapped IPv6 address is checked as the IPv4 address it is: "every IPv6
    // address" does not let it reach IPv4 hosts.
    let mut settings = token_settings("TokenFile", &file, false);
    settings.target_allow = allow(&["::/0", "127.0.0.1"]);
    let proxy = start_proxy(settings).await;
    forbidden(proxy.addr, "/?token=mapped-two").await;
    assert_reaches(proxy.addr, "/?token=one", "1").await;
    proxy.stop().await;

    // The name is resolved and its address checked: localhost is 127.0.0.1, not allowed here.
    let mut settings = token_settings("TokenFile", &file, false);
    settings.target_allow = allow(&["127.0.0.2"]);
    let proxy = start_proxy(settings).await;
    let p = proxy.addr;
    forbidden(p, "/?token=name-one").await;
    forbidden(p, "/?token=one").await;
    assert_reaches(p, "/?token=two", "2").await;
    proxy.stop().await;
}

#[tokio::test]
async fn target_allow_unix_entries_compare_canonical_paths_by_components() {
    let root = temp_dir("tokens-allow-unix");
    std::fs::create_dir(root.join("vnc")).unwrap();
    std::fs::create_dir(root.join("vnc-other")).unwrap();
    unix_named_target(&root.join("vnc/a.sock"), "A");
    unix_named_target(&root.join("vnc-other/b.sock"), "B");
    symlink("../vnc-other/b.sock", &root.join("vnc/link.sock"));
    let r = root.display();
    let file = root.join("tokens");
    write(
        &file,
        &format!(
            "in: unix_socket:{r}/vnc/a.sock\nsibling: unix_socket:{r}/vnc-other/b.sock\n\
             dotdot: unix_socket:{r}/vnc/../vnc-other/b.sock\n\
             link: unix_socket:{r}/vnc/link.sock\ntcp: 127.0.0.1:1\n"
        ),
    );
    let mut settings = token_settings("TokenFile", &file, false);
    settings.target_allow = allow(&[&format!("unix:{r}/vnc")]);
    let proxy = start_proxy(settings).await;
    let p = proxy.addr;
    assert_reaches(p, "/?token=in", "A").await;
    for token in ["sibling", "dotdot", "link", "tcp"] {
        let path = format!("/?token={token}");
        assert_upgrade_refused(p, &path, 403, "Target not allowed").await;
    }
    proxy.stop().await;
}

/// A client's token reaches no warning unescaped, and a name no file system allows is simply
/// not found (404, not a 503 with a warning per request).
#[tokio::test]
async fn overlong_or_hostile_tokens_are_not_found_and_never_logged_raw() {
    let dir = temp_dir("tokens-long");
    let server = LoggedBinary::start(&[
        "--token-plugin=TokenFileName",
        &format!("--token-source={}", dir.display()),
        "127.0.0.1:0",
    ])
    .await;
    let long = "x".repeat(300);
    for token in [long.as_str(), "a%0Ab%E2%80%A8c", "..%2F..%2Fetc%2Fpasswd"] {
        let path = format!("/?token={token}");
        let answer = send_and_read_all(server.addr, upgrade_request(&path, "").as_bytes()).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 404 "), "{token}: {answer}");
    }
    server.wait_for("refused:").await;
    for line in server.lines() {
        assert!(!line.contains(['\u{2028}']), "raw separator: {line}");
        assert!(!line.contains(&long), "the token in the log: {line}");
        assert!(
            !line.contains("WARN"),
            "a warning for a client's token: {line}"
        );
    }
}
