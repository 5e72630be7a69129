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

/// A server that is not busbar: answers every request with 200 and `body`.
fn impostor(body: &'static str) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                use std::io::{BufRead, BufReader, Write};
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                // Headers up to the blank line; the requests these commands send have no body.
                while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                    line.clear();
                }
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    url
}

#[test]
fn a_server_that_is_not_busbar_is_named_and_exits_3() {
    for body in ["", "{}", "[]", "<html>hello</html>"] {
        let url = impostor(body);
        for args in [
            &["topic", "list"][..],
            &["topic", "describe", "t"],
            &["consume", "t"],
            &["group", "list"],
            &["group", "describe", "g"],
            &["subscription", "list"],
            &["subscription", "get", "s"],
            &["dlq", "list", "d"],
        ] {
            let o = cli_at(&url, args, None);
            assert_eq!(
                o.status.code(),
                Some(3),
                "{body:?} {args:?}: {}",
                stdout(&o)
            );
            assert!(
                stderr(&o).contains("not a busbar server"),
                "{body:?} {args:?}: {}",
                stderr(&o)
            );
            assert_eq!(stdout(&o), "", "{body:?} {args:?}: no empty table");
        }
    }
}

#[test]
fn exit_codes_follow_the_readme_table() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    topics(&s, &[("dlq", 1)]);
    // A dead letter that does not exist is refused like any missing thing (1), not bad usage (2).
    let o = s.cli(&["dlq", "show", "dlq", "0", "5"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("no dead letter"), "{}", stderr(&o));
    // bench: bad flags are usage (2) even with no server; an unreachable server is 3.
    let kafka = s.kafka.to_string();
    for bad in [
        &["--size", "1"][..],
        &["--acks", "7"],
        &["--compression", "brotli"],
        &["--producers", "0"],
        &["--batch", "0"],
    ] {
        let mut args = vec!["bench", "produce", "--kafka", "127.0.0.1:1"];
        args.extend_from_slice(bad);
        let o = s.cli(&args);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", stderr(&o));
    }
    let o = s.cli(&[
        "bench",
        "produce",
        "--kafka",
        "127.0.0.1:1",
        "--count",
        "10",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    // A bench the server refuses (a topic name Kafka cannot have) is 1.
    let o = s.cli(&[
        "bench", "produce", "--kafka", &kafka, "--count", "10", "--topic", "bad name",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}

/// `busbar check-config` (or `serve`, when `serve` is given) with `args`: exit code, stdout, stderr.
fn busbar(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (o.status.code().unwrap_or(-1), stdout(&o), stderr(&o))
}

#[test]
fn listen_addresses_may_be_host_names() {
    let (code, out, err) = busbar(&[
        "check-config",
        "--http-addr",
        "localhost:8080",
        "--kafka-addr",
        "localhost:9092",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("addr = \"localhost:8080\""), "{out}");
    // And serve binds them.
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg("serve").arg("--data-dir").arg(dir.path()).args([
        "--http-addr",
        "localhost:0",
        "--kafka-addr",
        "localhost:0",
    ]);
    let s = Server::spawn(cmd, &[], dir.path());
    assert!(s.addr.ip().is_loopback(), "{}", s.ready_line);
    assert_eq!(s.http("GET", "/topics", None).0, 200);
    assert_eq!(s.stop(), 0);
}

#[test]
fn topic_defaults_take_toml_numbers_and_booleans() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("busbar.toml");
    std::fs::write(
        &file,
        "[topic_defaults]\n\"retention.ms\" = 604800001\n\"segment.bytes\" = 1048576\n\
         \"cleanup.policy\" = \"delete\"\n",
    )
    .unwrap();
    let (code, out, err) = busbar(&["check-config", "--config", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"retention.ms\" = \"604800001\""), "{out}");
    assert!(out.contains("\"segment.bytes\" = \"1048576\""), "{out}");
    // A value of the wrong kind is still refused with its name.
    std::fs::write(&file, "[topic_defaults]\n\"retention.ms\" = [1]\n").unwrap();
    let (code, _, err) = busbar(&["check-config", "--config", file.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("retention.ms"), "{err}");
}

#[test]
fn every_listen_address_is_checked_before_the_data_directory_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = busbar(&["check-config", "--kafka-addr", "nowhere"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("kafka.addr"), "{err}");
    let data = dir.path().join("data");
    let (code, _, err) = busbar(&[
        "serve",
        "--data-dir",
        data.to_str().unwrap(),
        "--http-addr",
        "127.0.0.1:0",
        "--kafka-addr",
        "nowhere",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("kafka.addr"), "{err}");
    assert!(!data.exists(), "the data directory was created: {err}");
    // An address another process holds: refused before the data directory is opened, as usage.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    for (flag, other) in [
        ("--kafka-addr", "--http-addr"),
        ("--http-addr", "--kafka-addr"),
    ] {
        let (code, _, err) = busbar(&[
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            flag,
            &taken,
            other,
            "127.0.0.1:0",
        ]);
        assert_eq!(code, 2, "{flag}: {err}");
        assert!(err.contains(&taken), "{err}");
        assert!(
            !data.exists(),
            "{flag}: the data directory was created: {err}"
        );
    }
}

#[test]
fn a_first_start_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("busbar.toml");
    std::fs::write(
        &file,
        "[[subscriptions]]\nname = \"copy\"\nsources = [\"a\"]\ntarget = { topic = \"b\" }\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let s = Server::start(&data, &["--config", file.to_str().unwrap()], &[]);
    assert!(s.ready_line.contains("first start"), "{}", s.ready_line);
    assert!(!s.ready_line.contains("crash"), "{}", s.ready_line);
    assert_eq!(s.stop(), 0);
    let s = Server::start(&data, &["--config", file.to_str().unwrap()], &[]);
    assert!(
        s.ready_line.contains("clean start, 2 partitions"),
        "{}",
        s.ready_line
    );
    s.kill9();
    let s = Server::start(&data, &["--config", file.to_str().unwrap()], &[]);
    assert!(s.ready_line.contains("after a crash"), "{}", s.ready_line);
    assert_eq!(s.stop(), 0);
}

#[test]
fn consume_takes_relative_times_and_errors_name_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    topics(&s, &[("t", 1)]);
    publish(&s, "t", json!([{ "value": 1 }, { "value": 2 }]));
    for time in ["5m", "2h", "1d", "30s", "2020-01-01T00:00:00Z", "0"] {
        let o = s.cli(&["consume", "t", "--time", time]);
        assert!(o.status.success(), "{time}: {}", stderr(&o));
        assert_eq!(stdout(&o), "1\n2\n", "{time}");
    }
    // A time after the events: nothing.
    let o = s.cli(&["consume", "t", "--time", "2999-01-01T00:00:00Z"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "");
    for bad in ["yesterday", "5 m", "5w", "2026-13-01T00:00:00Z"] {
        let o = s.cli(&["consume", "t", "--time", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains("--time"), "{bad}: {err}");
        assert!(!err.contains("timestamp"), "{bad}: {err}");
    }
    // The other time flags take the same forms.
    let o = s.cli(&["group", "reset-offsets", "g", "--topic", "t", "--to", "1h"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// `busbar ARGS` with no server: exit code, stdout, stderr.
fn offline(args: &[&str]) -> (i32, String, String) {
    busbar(args)
}

#[test]
fn shell_completions_and_a_man_page_come_from_the_flags() {
    let subcommands = [
        "serve",
        "topic",
        "produce",
        "consume",
        "group",
        "subscription",
        "dlq",
    ];
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = offline(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        for sub in subcommands {
            assert!(out.contains(sub), "{shell} completions lack {sub}");
        }
        assert!(out.contains("max-attempts"), "{shell}: nested flags");
    }
    let (_, bash, _) = offline(&["completions", "bash"]);
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("busbar.bash");
    std::fs::write(&script, &bash).unwrap();
    let check = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(check.status.success(), "bash -n: {}", stderr(&check));
    assert_eq!(offline(&["completions", "tcsh"]).0, 2);
    let (code, man, err) = offline(&["man"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        man.starts_with(".ie") || man.contains(".TH busbar"),
        "{man}"
    );
    for sub in subcommands {
        assert!(man.contains(sub), "the man page lacks {sub}");
    }
    // One page per command into a directory.
    let pages = dir.path().join("man");
    let (code, _, err) = offline(&["man", "--dir", pages.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    for page in [
        "busbar.1",
        "busbar-topic-create.1",
        "busbar-subscription-create.1",
    ] {
        let text = std::fs::read_to_string(pages.join(page)).unwrap();
        assert!(text.contains(".TH"), "{page}");
    }
}

#[test]
fn help_lists_each_commands_own_flags_with_defaults() {
    let (code, out, _) = offline(&["serve", "--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("--data-dir"), "{out}");
    for client_flag in ["--server", "--output", "--ca-file"] {
        assert!(
            !out.contains(client_flag),
            "serve --help lists {client_flag}: {out}"
        );
    }
    let (code, _, err) = offline(&["serve", "--server", "http://x:1"]);
    assert_eq!(code, 2, "{err}");
    let (_, out, _) = offline(&["subscription", "create", "--help"]);
    for (flag, default) in [
        ("--max-attempts", "20"),
        ("--backoff-initial-ms", "1000"),
        ("--backoff-max-ms", "60000"),
        ("--max-age-s", "86400"),
        ("--timeout-ms", "5000"),
        ("--concurrency", "16"),
    ] {
        let line = out
            .lines()
            .skip_while(|l| !l.contains(flag))
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            line.contains(&format!("default {default}")),
            "{flag}: {line:?}"
        );
    }
}

#[test]
fn output_json_is_honoured_by_every_command() {
    let (code, out, err) = offline(&["--output", "json", "check-config"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["http"]["addr"], "127.0.0.1:8080");
    assert!(
        offline(&["check-config"]).1.contains("[http]"),
        "TOML by default"
    );

    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    topics(&s, &[("src", 1), ("dst", 1)]);
    subscribe(
        &s,
        json!({"name": "copy", "sources": ["src"], "target": {"topic": "dst"}}),
    );
    let replay = [
        "subscription",
        "replay",
        "copy",
        "--run",
        "r1",
        "--from",
        "1h",
        "--to",
        "0s",
    ];
    let v = json_out(&s.cli(&[&["--output", "json"][..], &replay].concat()));
    assert_eq!(v["name"], "r1", "{v}");
    let o = s.cli(&replay.map(|a| if a == "r1" { "r2" } else { a }));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        serde_json::from_slice::<serde_json::Value>(&o.stdout).is_err(),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("r2"), "{}", stdout(&o));
    let v = json_out(&s.cli(&["--output", "json", "subscription", "replays", "copy"]));
    assert_eq!(v["replays"].as_array().unwrap().len(), 2, "{v}");
    let table = stdout(&s.cli(&["subscription", "replays", "copy"]));
    assert!(table.starts_with("NAME"), "{table}");
    assert!(table.contains("r1") && table.contains("r2"), "{table}");
    let table = stdout(&s.cli(&["subscription", "replays", "copy", "r1"]));
    assert!(table.starts_with("NAME") && table.contains("r1"), "{table}");
    let v = json_out(&s.cli(&["--output", "json", "subscription", "delete", "copy"]));
    assert_eq!(v, json!({ "deleted": "copy" }));
    subscribe(
        &s,
        json!({"name": "copy", "sources": ["src"], "target": {"topic": "dst"}}),
    );
    // subscription list shows the counters its help promises.
    let table = stdout(&s.cli(&["subscription", "list"]));
    let header = table.lines().next().unwrap();
    for column in [
        "NAME",
        "STATE",
        "LAG",
        "MATCHED",
        "DELIVERED",
        "DEAD-LETTERED",
    ] {
        assert!(header.contains(column), "{header}");
    }
}

/// Runs `busbar --server URL ARGS < stdin_file` with stdout and stderr on a terminal (a pty from
/// `script`); answers everything the terminal showed.
fn on_a_terminal(s: &Server, args: &[&str], stdin_file: &std::path::Path) -> String {
    let quote = |a: &str| format!("'{}'", a.replace('\'', "'\\''"));
    let mut line = format!("{} --server {}", quote(BIN), quote(&s.url()));
    for a in args {
        line.push(' ');
        line.push_str(&quote(a));
    }
    line.push_str(&format!(" < {}", quote(stdin_file.to_str().unwrap())));
    let o = Command::new("script")
        .args(["-qefc", &line, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{line}: {}{}", stdout(&o), stderr(&o));
    stdout(&o)
}

#[test]
fn produce_prints_a_summary_and_progress_only_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    topics(&s, &[("t", 2)]);
    let lines: String = (0..5000).map(|i| format!("{{\"n\": {i}}}\n")).collect();
    // Piped: one summary line, nothing on stderr.
    let o = s.cli_stdin(&["produce", "t", "--batch", "100"], &lines);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.starts_with("produced 5000 events to t in "), "{out}");
    assert_eq!(stderr(&o), "");
    // --verbose: each event's partition and offset first.
    let o = s.cli_stdin(&["produce", "t", "--verbose"], "a\nb\n");
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(
        out.lines().next().unwrap().starts_with("partition "),
        "{out}"
    );
    // On a terminal: a progress line (cleared at the end), then the summary.
    let input = dir.path().join("in.txt");
    std::fs::write(&input, lines.repeat(4)).unwrap();
    let shown = on_a_terminal(&s, &["produce", "t", "--batch", "50"], &input);
    assert!(shown.contains("events produced"), "{shown}");
    assert!(shown.contains("produced 20000 events to t in "), "{shown}");
    assert_eq!(s.events_stored("t"), 25002);
    // consume into a pipe with stderr piped too: the events alone.
    let o = s.cli(&["consume", "t", "-p", "0", "-n", "3"]);
    assert_eq!(stdout(&o).lines().count(), 3);
    assert_eq!(stderr(&o), "");
}

#[test]
fn a_group_member_says_it_is_joining_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    topics(&s, &[("t", 1)]);
    publish(&s, "t", json!([{ "value": 1 }]));
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "").unwrap();
    let shown = on_a_terminal(&s, &["consume", "t", "--group", "g", "-n", "1"], &empty);
    assert!(shown.contains("joining group g…"), "{shown}");
    // Piped: no such line.
    let o = s.cli(&["consume", "t", "--group", "h", "-n", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "1\n");
    assert_eq!(stderr(&o), "");
}
