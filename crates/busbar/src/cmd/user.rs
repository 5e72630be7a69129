//! `busbar user create|delete|list`: users of the HTTP API and Kafka SASL, stored on the server as
//! SCRAM credentials only. While authentication is on, only super users may manage them (pass
//! `--user`/`--password` or `BUSBAR_USER`/`BUSBAR_PASSWORD`).

use crate::client::{enc, outln, table, CliError, CliResult, Client, Output};
use clap::Subcommand;
use serde_json::{json, Value};
use std::io::BufRead;

#[derive(Debug, Clone, Subcommand)]
pub enum UserCmd {
    /// Create a user, or change its password (read from standard input, first line, unless
    /// --new-password is given).
    Create {
        name: String,
        /// The user's password (visible in the process list: prefer standard input).
        #[arg(long)]
        new_password: Option<String>,
    },
    /// Delete a user and its credentials.
    Delete { name: String },
    /// List users and their SCRAM mechanisms (never a secret).
    List,
}

/// The first line of standard input, without its line break.
fn password_from_stdin() -> CliResult<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::Usage(format!("reading the password from standard input: {e}")))?;
    let password = line.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        return Err(CliError::Usage(
            "no password: give --new-password or one line on standard input".into(),
        ));
    }
    Ok(password)
}

fn mechanisms(u: &Value) -> String {
    let list: Vec<String> = u["mechanisms"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            format!(
                "{} ({} iterations)",
                m["mechanism"].as_str().unwrap_or("?"),
                m["iterations"]
            )
        })
        .collect();
    list.join(", ")
}

pub fn run(c: &Client, cmd: UserCmd) -> CliResult<()> {
    match cmd {
        UserCmd::Create { name, new_password } => {
            let password = match new_password {
                Some(p) => p,
                None => password_from_stdin()?,
            };
            let body = json!({"name": name, "password": password});
            let u = c.json("POST", "/users", &body)?;
            match c.output {
                Output::Json => outln!("{u}"),
                Output::Table => outln!("user {name}: {}", mechanisms(&u)),
            }
        }
        UserCmd::Delete { name } => {
            c.call("DELETE", &format!("/users/{}", enc(&name)), None)?;
            if c.output == Output::Table {
                outln!("deleted user {name}");
            } else {
                outln!("{}", json!({"deleted": name}));
            }
        }
        UserCmd::List => {
            let v = c.get("/users", &["users"])?;
            if c.output == Output::Json {
                outln!("{v}");
                return Ok(());
            }
            let rows = v["users"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|u| vec![u["name"].as_str().unwrap_or("?").to_string(), mechanisms(u)])
                .collect();
            table(&["name", "mechanisms"], rows);
        }
    }
    Ok(())
}
