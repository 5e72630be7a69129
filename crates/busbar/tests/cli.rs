//! The `busbar` command line as a Unix tool (issue 15): quiet on a closed pipe, exit codes from the
//! README's table, output styles, flags and help, shell completions and the man page. Each test runs
//! the real binary, most against a real server started on port 0.

mod common;

use common::*;
use serde_json::json;
use std::process::{Command, Output, Stdio};

/// Runs a client command whose standard output is a pipe the reader already closed, as
/// `busbar ... | head -2` once `head` has its lines.
fn cli_into_closed_pipe(s: &Server, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Command::new(BIN)
        .args(["--server", &s.url()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn a_closed_output_pipe_ends_commands_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    topics(&s, &[("t", 2)]);
    let events: Vec<_> = (0..50).map(|i| json!({ "value": i })).collect();
    publish(&s, "t", json!(events));
    for args in [
        &["consume", "t"][..],
        &["topic", "describe", "t"],
        &["topic", "list"],
        &["--output", "json", "consume", "t"],
    ] {
        let o = cli_into_closed_pipe(&s, args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert_eq!(stderr(&o), "", "{args:?}: nothing on stderr");
    }
    // A group member whose reader went away leaves the group before it exits.
    let o = cli_into_closed_pipe(&s, &["consume", "t", "--group", "g"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stderr(&o), "");
    let (_, g) = s.http("GET", "/groups/g", None);
    assert_eq!(g["members"], json!([]), "{g}");
}
