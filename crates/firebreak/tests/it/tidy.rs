//! Tidy: the crate graph keeps its boundaries (ARCHITECTURE.md): dependencies point downward,
//! only the store crates know SQL, only the server knows HTTP, the domain does no IO.

use std::collections::{BTreeMap, BTreeSet};

fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null()) // normal dependencies only
                .map(|d| d["name"].as_str().unwrap().to_string())
                .collect();
            (p["name"].as_str().unwrap().to_string(), deps)
        })
        .collect()
}

#[test]
fn crate_dependencies_point_downward_and_keep_their_boundaries() {
    let deps = dependencies();
    let ours = |name: &str| -> BTreeSet<String> {
        deps[name]
            .iter()
            .filter(|d| d.starts_with("firebreak"))
            .cloned()
            .collect()
    };
    let set = |v: &[&str]| -> BTreeSet<String> { v.iter().map(|s| s.to_string()).collect() };
    assert_eq!(ours("firebreak-domain"), set(&[]));
    assert_eq!(ours("firebreak-intake"), set(&[]));
    assert_eq!(ours("firebreak-intel"), set(&["firebreak-intake"]));
    assert_eq!(ours("firebreak-store"), set(&["firebreak-domain"]));
    assert_eq!(
        ours("firebreak-store-sqlite"),
        set(&["firebreak-domain", "firebreak-store"])
    );
    assert_eq!(
        ours("firebreak-store-postgres"),
        set(&["firebreak-domain", "firebreak-store"])
    );
    assert_eq!(
        ours("firebreak-app"),
        set(&[
            "firebreak-domain",
            "firebreak-intake",
            "firebreak-intel",
            "firebreak-store"
        ])
    );
    assert_eq!(
        ours("firebreak-server"),
        set(&[
            "firebreak-app",
            "firebreak-domain",
            "firebreak-intake",
            "firebreak-store"
        ])
    );
    for (krate, banned) in [
        (
            "firebreak-domain",
            &["sqlx", "rusqlite", "axum", "tokio", "reqwest"][..],
        ),
        ("firebreak-store", &["sqlx", "rusqlite", "axum"][..]),
        (
            "firebreak-intake",
            &["sqlx", "rusqlite", "axum", "tokio", "reqwest"][..],
        ),
        (
            "firebreak-intel",
            &["sqlx", "rusqlite", "axum", "tokio", "reqwest"][..],
        ),
        (
            "firebreak-app",
            &["sqlx", "rusqlite", "axum", "tower", "hyper"][..],
        ),
        ("firebreak-server", &["sqlx", "rusqlite"][..]),
    ] {
        for b in banned {
            assert!(!deps[krate].contains(*b), "{krate} must not depend on {b}");
        }
    }
}

#[test]
fn both_backends_ship_the_same_migrations() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let list = |backend: &str| -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(root.join(format!("firebreak-store-{backend}/migrations")))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
        v.sort();
        v
    };
    assert_eq!(list("sqlite"), list("postgres"));
}

/// A table added by a migration but missing from the snapshot's list would be left out of
/// every backup and `migrate-store` without a word.
#[test]
fn backups_carry_every_table_the_migrations_create() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for backend in ["sqlite", "postgres"] {
        // the migrations in their order (file names), each statement applied in turn
        let mut files: Vec<std::path::PathBuf> =
            std::fs::read_dir(root.join(format!("firebreak-store-{backend}/migrations")))
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
        files.sort();
        let mut created = BTreeSet::new();
        for path in files {
            let sql = std::fs::read_to_string(path).unwrap();
            for line in sql.lines() {
                let l = line.trim_start().to_ascii_lowercase();
                let name = |rest: &str| {
                    rest.split([' ', '(', ';'])
                        .next()
                        .unwrap()
                        .trim()
                        .to_string()
                };
                if let Some(rest) = l.strip_prefix("create table ") {
                    created.insert(name(rest.trim_start_matches("if not exists ")));
                }
                if let Some(rest) = l.strip_prefix("drop table ") {
                    created.remove(&name(rest.trim_start_matches("if exists ")));
                }
                // ALTER TABLE a RENAME TO b
                if let Some(rest) = l.strip_prefix("alter table ")
                    && let Some((from, to)) = rest.split_once(" rename to ")
                {
                    created.remove(&name(from));
                    created.insert(name(to));
                }
            }
        }
        let levels = firebreak_store::snapshot::LEVELS
            .iter()
            .map(|(level, _, _)| level)
            .chain(firebreak_store::snapshot::PRIVATE)
            .filter(|_| backend == "sqlite");
        let listed: BTreeSet<String> = firebreak_store::snapshot::TABLES
            .iter()
            .chain(firebreak_store::snapshot::DERIVED)
            .chain(levels)
            .map(|t| t.to_string())
            .collect();
        assert_eq!(
            created, listed,
            "{backend}: tables created vs tables in snapshots"
        );
    }
}
