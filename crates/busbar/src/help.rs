//! The command line describing itself: shell completions and man pages generated from the clap
//! definitions (`busbar completions SHELL`, `busbar man`), and the global client flags (`--server`,
//! `--output`, `--user`, `--password`, `--token`) taken out of the commands that do not use them, so their
//! `--help` lists only their own flags.

use clap::{Arg, CommandFactory};
use std::path::PathBuf;

/// `busbar completions`.
#[derive(Debug, Clone, clap::Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    shell: clap_complete::Shell,
}

/// `busbar man`.
#[derive(Debug, Clone, clap::Args)]
pub struct ManArgs {
    /// Write one page per command (busbar.1, busbar-topic-create.1, ...) into this directory
    /// instead of printing busbar(1).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Commands that do not talk to a server over HTTP, with the global client flags they do use.
const OFFLINE: &[(&str, &[&str])] = &[
    ("serve", &[]),
    ("check-config", &["output"]),
    ("rule", &["output"]),
    ("bench", &["output", "ca_file"]),
    ("tls", &[]),
    ("completions", &[]),
    ("man", &[]),
];

/// A hidden flag of `name` that refuses any value: it keeps the global client flag of the same
/// name out of a command that does not use it (clap does not copy a global flag into a command
/// that has one of that name).
fn refused(name: &'static str) -> Arg {
    // The id is the field name (`ca_file`), the flag its kebab form (`--ca-file`).
    let long = if name == "ca_file" { "ca-file" } else { name };
    Arg::new(name)
        .long(long)
        .hide(true)
        .value_parser(move |_: &str| -> Result<String, String> {
            Err(format!(
                "--{long} is for commands that talk to a busbar server"
            ))
        })
}

/// The whole command line.
pub fn command() -> clap::Command {
    let mut cmd = crate::Cli::command();
    for (sub, keeps) in OFFLINE {
        cmd = cmd.mut_subcommand(*sub, |mut c| {
            for global in ["server", "output", "user", "password", "token", "ca_file"] {
                if !keeps.contains(&global) {
                    c = c.arg(refused(global));
                }
            }
            c
        });
    }
    cmd
}

/// Prints the completion script for `a.shell`.
pub fn completions(a: CompletionsArgs) {
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut command(), "busbar", &mut script);
    crate::client::outln!("{}", String::from_utf8_lossy(&script).trim_end());
}

/// Prints busbar(1), or writes every command's page into `a.dir`.
pub fn man(a: ManArgs) -> std::io::Result<()> {
    let mut cmd = command();
    cmd.build();
    match a.dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            clap_mangen::generate_to(cmd, &dir)
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut page)?;
            crate::client::outln!("{}", String::from_utf8_lossy(&page).trim_end());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let builtin = matches!(arg.get_id().as_str(), "help" | "version");
            let flag = !arg.is_positional() && !arg.is_hide_set();
            if !builtin && flag && arg.get_help().is_none() {
                missing.push(format!("{path} {}", arg.get_id()));
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }

    #[test]
    fn the_command_line_is_consistent_and_every_flag_has_help() {
        let mut cmd = command();
        cmd.build();
        cmd.clone().debug_assert();
        let mut missing = Vec::new();
        walk(&cmd, "busbar", &mut missing);
        assert!(missing.is_empty(), "flags without help: {missing:#?}");
    }
}
