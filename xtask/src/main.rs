//! xtask: what is generated from websockify's command-line definition (`websockify::cli::command`),
//! so that it cannot drift from `--help`: the man page and the bash, zsh and fish completions.
//!
//! `cargo xtask gen DIR` (alias in .cargo/config.toml) writes
//! `DIR/man/websockify.1` and `DIR/completions/{websockify.bash,_websockify,websockify.fish}`;
//! scripts/package.sh puts them into the .deb and the release archive.
//!
//! A workspace member rather than a hidden option of the binary: the shipped binary keeps the
//! reference's command line exactly and carries no man page or completion generator.

mod man;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap_complete::Shell;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["gen", dir] => match generate(Path::new(dir)) {
            Ok(written) => {
                for path in written {
                    println!("{}", path.display());
                }
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("xtask gen {dir}: {err}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!(
                "usage: cargo xtask gen DIR   (writes DIR/man/websockify.1 and DIR/completions/*)"
            );
            ExitCode::from(2)
        }
    }
}

/// Writes the man page and the completions under `dir`; returns the files written.
fn generate(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let man_dir = dir.join("man");
    let comp_dir = dir.join("completions");
    std::fs::create_dir_all(&man_dir)?;
    std::fs::create_dir_all(&comp_dir)?;
    let page = man_dir.join("websockify.1");
    std::fs::write(&page, man::page(&source_date()))?;
    let mut written = vec![page];
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let path = comp_dir.join(completion_file(shell));
        std::fs::write(&path, completion(shell))?;
        written.push(path);
    }
    Ok(written)
}

/// The file name each shell's completion gets (clap_complete's own naming).
fn completion_file(shell: Shell) -> &'static str {
    match shell {
        Shell::Bash => "websockify.bash",
        Shell::Zsh => "_websockify",
        Shell::Fish => "websockify.fish",
        _ => unreachable!("only bash, zsh and fish are generated"),
    }
}

/// The completion script for `shell`, from the same command `--help` prints.
fn completion(shell: Shell) -> Vec<u8> {
    let mut cmd = websockify::cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "websockify", &mut out);
    out
}

/// The man page's date: `SOURCE_DATE_EPOCH` (reproducible builds; scripts/package.sh sets it
/// to the commit's date), else today.
fn source_date() -> String {
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        });
    civil_date(secs.div_euclid(86_400))
}

/// Days since 1970-01-01 as YYYY-MM-DD (Howard Hinnant's `civil_from_days`).
fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_from_source_date_epoch() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(1_709_164_800 / 86_400), "2024-02-29");
        assert_eq!(civil_date(951_782_400 / 86_400), "2000-02-29");
    }

    /// The bash completion, loaded into a real bash, completes a prefix to the options the
    /// command has (and `--help` shows), including one added by another engineer tomorrow.
    #[test]
    fn bash_completion_completes_options_of_the_command() {
        let dir = std::env::temp_dir().join(format!("xtask-bash-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let script = dir.join("websockify.bash");
        std::fs::write(&script, completion(Shell::Bash)).expect("write");
        let complete = |words: &str| -> Vec<String> {
            let out = std::process::Command::new("bash")
                .arg("-c")
                .arg(format!(
                    "source {} && COMP_WORDS=({words}) && COMP_CWORD=$((${{#COMP_WORDS[@]}}-1)) \
                     && COMP_LINE=\"${{COMP_WORDS[*]}}\" && COMP_POINT=${{#COMP_LINE}} \
                     && _websockify websockify \"${{COMP_WORDS[COMP_CWORD]}}\" \
                     \"${{COMP_WORDS[COMP_CWORD-1]}}\" \
                     && printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                    script.display()
                ))
                .output()
                .expect("bash runs");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_owned)
                .collect()
        };
        let mut ssl = complete("websockify --ssl-");
        ssl.sort();
        assert_eq!(
            ssl,
            [
                "--ssl-ciphers",
                "--ssl-only",
                "--ssl-target",
                "--ssl-version"
            ]
        );
        // Every long option of the command is offered after `--`.
        let all = complete("websockify --");
        for arg in websockify::cli::command().get_arguments() {
            if let Some(long) = arg.get_long() {
                assert!(all.contains(&format!("--{long}")), "--{long} not completed");
            }
        }
        // --wrap-mode's values come from the definition too.
        let mut modes = complete("websockify --wrap-mode ''");
        modes.sort();
        assert_eq!(modes, ["exit", "ignore", "respawn"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn zsh_and_fish_completions_name_every_long_option() {
        for shell in [Shell::Zsh, Shell::Fish] {
            let text = String::from_utf8(completion(shell)).expect("utf-8");
            for arg in websockify::cli::command().get_arguments() {
                if let Some(long) = arg.get_long() {
                    let found = match shell {
                        Shell::Zsh => {
                            text.contains(&format!("--{long}["))
                                || text.contains(&format!("--{long}=["))
                        }
                        _ => text.contains(&format!("-l {long} ")),
                    };
                    assert!(found, "{shell}: --{long} missing");
                }
            }
        }
    }
}
