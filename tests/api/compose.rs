//! The docker-compose stack and Dockerfile users run (no Docker engine here:
//! the files are parsed and checked).

use serde_yaml::Value;

fn compose() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docker-compose.yml"))
        .expect("docker-compose.yml");
    serde_yaml::from_str(&text).expect("valid YAML")
}

fn healthcheck_command(service: &Value) -> String {
    match &service["healthcheck"]["test"] {
        Value::Sequence(parts) => parts
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" "),
        Value::String(s) => s.clone(),
        other => panic!("healthcheck test missing: {other:?}"),
    }
}

#[test]
fn compose_runs_postgres_16_redis_7_with_persistence_and_latchkey_behind_health_checks() {
    let c = compose();
    let services = &c["services"];
    let image = |name: &str| {
        services[name]["image"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        image("postgres").starts_with("postgres:16"),
        "{}",
        image("postgres")
    );
    assert!(image("redis").starts_with("redis:7"), "{}", image("redis"));
    let redis_cmd: Vec<&str> = services["redis"]["command"]
        .as_sequence()
        .expect("redis command")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        redis_cmd.windows(2).any(|w| w == ["--appendonly", "yes"]),
        "{redis_cmd:?}"
    );
    assert!(
        !services["latchkey"]["build"].is_null(),
        "latchkey is built from the Dockerfile"
    );

    for name in ["postgres", "redis", "latchkey"] {
        let cmd = healthcheck_command(&services[name]);
        assert!(!cmd.is_empty(), "{name} has a health check");
    }
    assert!(healthcheck_command(&services["latchkey"]).contains("/readyz"));
    for dep in ["postgres", "redis"] {
        assert_eq!(
            services["latchkey"]["depends_on"][dep]["condition"].as_str(),
            Some("service_healthy"),
            "latchkey waits for a healthy {dep}"
        );
    }

    // Every volume used is a named volume declared at the top level.
    let declared = c["volumes"].as_mapping().expect("named volumes");
    for name in ["postgres", "redis", "latchkey"] {
        for v in services[name]["volumes"].as_sequence().expect("volumes") {
            let source = v
                .as_str()
                .and_then(|s| s.split(':').next())
                .expect("volume");
            assert!(
                declared.contains_key(Value::from(source)),
                "{source} is a named volume"
            );
        }
    }
}

#[test]
fn every_variable_compose_sets_is_one_latchkey_reads() {
    let c = compose();
    let env = c["services"]["latchkey"]["environment"]
        .as_mapping()
        .expect("environment");
    let known: Vec<&str> = latchkey::config::VARIABLES
        .iter()
        .map(|(name, _)| *name)
        .collect();
    assert!(env.len() >= 6);
    for key in env.keys() {
        let key = key.as_str().expect("name");
        assert!(key.starts_with("LATCHKEY_"), "{key}");
        assert!(known.contains(&key), "{key} is not a latchkey setting");
    }
    for needed in [
        "LATCHKEY_DATABASE_URL",
        "LATCHKEY_REDIS_URL",
        "LATCHKEY_MASTER_KEY",
        "LATCHKEY_BIND",
        "LATCHKEY_PUBLIC_URL",
    ] {
        assert!(env.contains_key(Value::from(needed)), "{needed} is set");
    }
    let db = env[&Value::from("LATCHKEY_DATABASE_URL")]
        .as_str()
        .unwrap_or_default();
    assert!(
        db.starts_with("postgres://") && db.contains("@postgres:5432/"),
        "{db}"
    );
}

#[test]
fn the_dockerfile_is_multi_stage_and_runs_as_a_non_root_user() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile"))
        .expect("Dockerfile");
    let froms = text.lines().filter(|l| l.starts_with("FROM ")).count();
    assert!(froms >= 2, "multi-stage");
    let user = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    assert!(user.trim() != "root" && user.trim() != "0", "{user}");
    assert!(text.contains("--locked"), "the build uses Cargo.lock");
    assert!(text.contains("/readyz"));
}

/// The build stage copies what cargo needs to load the workspace: a member
/// left out stops `docker build` at `cargo build`. Checked by copying
/// exactly the stage's `COPY` sources into an empty directory and loading
/// the workspace there with cargo, offline.
#[test]
fn the_dockerfile_build_stage_copies_the_whole_workspace() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("Dockerfile")).expect("Dockerfile");
    // The text between the first FROM and the second.
    let build_stage = text.split("\nFROM ").nth(1).expect("the build stage");
    let dir = tempfile::tempdir().expect("tempdir");
    for line in build_stage.lines() {
        let Some(args) = line.strip_prefix("COPY ") else {
            continue;
        };
        let words: Vec<&str> = args.split_whitespace().collect();
        let (dest, sources) = words.split_last().expect("COPY sources and a destination");
        for source in sources {
            let from = root.join(source);
            let to = if dest.ends_with('/') || *dest == "./" {
                dir.path().join(source)
            } else {
                dir.path().join(dest)
            };
            copy_tree(&from, &to);
        }
    }
    let out = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
            "--locked",
        ])
        .current_dir(dir.path())
        .env("CARGO_TARGET_DIR", dir.path().join("target"))
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "the workspace does not load from what the Dockerfile copies: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).expect("mkdir");
        for entry in std::fs::read_dir(from).expect("read_dir") {
            let entry = entry.expect("entry");
            let name = entry.file_name();
            if name == "node_modules" || name == "target" || name == "dist" {
                continue;
            }
            copy_tree(&entry.path(), &to.join(name));
        }
    } else {
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    }
}
