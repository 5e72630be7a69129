//! The crate dependency rules of `DESIGN.md`, checked against `cargo metadata`: dependencies point
//! one way (log ← broker ← bus ← front ends ← binary, broker ← cluster ← binary; the Kafka front end does not need the bus), front ends never import each other, nothing
//! imports the binary, and no product crate depends on the test kit outside dev-dependencies.

use std::collections::BTreeMap;
use std::process::Command;

/// The workspace crates each crate may depend on (normal and build dependencies).
fn allowed() -> BTreeMap<&'static str, &'static [&'static str]> {
    BTreeMap::from([
        ("busbar-log", &[][..]),
        ("busbar-rules", &[][..]),
        ("busbar-broker", &["busbar-log"][..]),
        // Cluster mode's shared store (issue 20): beside the front ends, under the binary.
        (
            "busbar-cluster",
            &["busbar-broker", "busbar-bus", "busbar-log"][..],
        ),
        (
            "busbar-schema",
            &["busbar-broker", "busbar-log", "busbar-rules"][..],
        ),
        (
            "busbar-bus",
            &[
                "busbar-broker",
                "busbar-log",
                "busbar-rules",
                "busbar-schema",
            ][..],
        ),
        (
            "busbar-kafka",
            &["busbar-broker", "busbar-log", "busbar-rules"][..],
        ),
        (
            "busbar-http",
            &[
                "busbar-broker",
                "busbar-bus",
                "busbar-log",
                "busbar-rules",
                "busbar-schema",
            ][..],
        ),
        (
            "busbar",
            &[
                "busbar-broker",
                "busbar-bus",
                "busbar-log",
                "busbar-rules",
                "busbar-kafka",
                "busbar-http",
                "busbar-schema",
                "busbar-cluster",
            ][..],
        ),
        (
            "busbar-testkit",
            &["busbar-log", "busbar-rules", "busbar-broker"][..],
        ),
    ])
}

fn workspace_edges() -> Vec<(String, String, String)> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let mut edges = Vec::new();
    for pkg in meta["packages"].as_array().expect("packages") {
        let from = pkg["name"].as_str().expect("name").to_string();
        for dep in pkg["dependencies"].as_array().expect("dependencies") {
            let to = dep["name"].as_str().expect("dep name");
            if to.starts_with("busbar") {
                let kind = dep["kind"].as_str().unwrap_or("normal").to_string();
                edges.push((from.clone(), to.to_string(), kind));
            }
        }
    }
    edges
}

fn violations(edges: &[(String, String, String)]) -> Vec<String> {
    let allowed = allowed();
    let mut bad = Vec::new();
    for (from, to, kind) in edges {
        if kind == "dev" && to == "busbar-testkit" {
            continue;
        }
        let ok = allowed
            .get(from.as_str())
            .is_some_and(|list| list.contains(&to.as_str()));
        if !ok {
            bad.push(format!("{from} -> {to} ({kind})"));
        }
    }
    bad
}

#[test]
fn every_workspace_crate_is_known() {
    let allowed = allowed();
    for (from, _, _) in workspace_edges() {
        assert!(
            allowed.contains_key(from.as_str()),
            "crate {from} is not in the architecture table"
        );
    }
}

#[test]
fn dependencies_point_one_way() {
    let bad = violations(&workspace_edges());
    assert!(bad.is_empty(), "forbidden crate dependencies: {bad:?}");
}

#[test]
fn the_checker_catches_forbidden_edges() {
    let e = |a: &str, b: &str, k: &str| (a.to_string(), b.to_string(), k.to_string());
    let planted = [
        e("busbar-log", "busbar-broker", "normal"),
        e("busbar-kafka", "busbar-http", "normal"),
        e("busbar-http", "busbar", "normal"),
        e("busbar-broker", "busbar-testkit", "normal"),
    ];
    assert_eq!(violations(&planted).len(), 4);
    assert!(violations(&[e("busbar-log", "busbar-testkit", "dev")]).is_empty());
}
