//! latchkey on a Redis Cluster of its own (three masters, three replicas,
//! started by the test): the master serving the tenant's slot is killed
//! under a steady load of userinfo and refresh requests, its replica is
//! promoted, and the answers are counted per phase (before, outage, after).
//! Every refusal of a request sent during the outage is 503
//! `store_unavailable` with `Retry-After`, the revoked token is never 200;
//! within 5 s of the promotion every client is served again; no refresh
//! family is lost or rotated twice.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, USER_PASSWORD, json, spawn_app_with, str_of};

/// A free port for a cluster node: its cluster bus port (port + 10000) must
/// be free too, and below 65536, which the kernel's ephemeral ports often
/// are not.
fn node_port(taken: &[u16]) -> u16 {
    loop {
        let port: u16 = rand::random_range(20_000..45_000);
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if !taken.contains(&port) && free(port) && free(port + 10_000) {
            return port;
        }
    }
}

/// A private cluster in a temporary directory, shut down when dropped.
struct Cluster {
    dir: tempfile::TempDir,
    ports: Vec<u16>,
    /// `redis-cli`'s TLS options when the nodes speak TLS only.
    tls: Vec<String>,
}

fn cli(port: u16, args: &[&str]) -> String {
    cli_with(&[], port, args)
}

fn cli_with(tls: &[String], port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(tls)
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .expect("redis-cli (Redis installed?)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Cluster {
    fn start() -> Cluster {
        Self::start_with(false)
    }

    /// A cluster whose nodes speak TLS only (clients, replication and the
    /// cluster bus), with certificates from a CA of its own (`ca.crt`).
    fn start_tls() -> Cluster {
        Self::start_with(true)
    }

    fn ca(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.crt")
    }

    fn start_with(tls: bool) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut ports: Vec<u16> = Vec::new();
        for _ in 0..6 {
            let port = node_port(&ports);
            ports.push(port);
        }
        let mut server_tls: Vec<String> = Vec::new();
        let mut cli_tls: Vec<String> = Vec::new();
        if tls {
            let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
            let mut ca = vec!["req", "-x509", "-nodes", "-days", "1"];
            ca.extend(ec);
            ca.extend([
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-subj",
                "/CN=latchkey test CA",
            ]);
            openssl(dir.path(), &ca);
            let mut csr = vec!["req", "-new", "-nodes"];
            csr.extend(ec);
            csr.extend([
                "-keyout",
                "node.key",
                "-out",
                "node.csr",
                "-subj",
                "/CN=127.0.0.1",
            ]);
            openssl(dir.path(), &csr);
            std::fs::write(
                dir.path().join("node.ext"),
                "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
            )
            .expect("node.ext");
            openssl(
                dir.path(),
                &[
                    "x509",
                    "-req",
                    "-in",
                    "node.csr",
                    "-CA",
                    "ca.crt",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    "1",
                    "-extfile",
                    "node.ext",
                    "-out",
                    "node.crt",
                ],
            );
            let file = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
            server_tls = vec![
                "--tls-cert-file".into(),
                file("node.crt"),
                "--tls-key-file".into(),
                file("node.key"),
                "--tls-ca-cert-file".into(),
                file("ca.crt"),
                "--tls-auth-clients".into(),
                "no".into(),
                "--tls-cluster".into(),
                "yes".into(),
                "--tls-replication".into(),
                "yes".into(),
            ];
            cli_tls = vec!["--tls".into(), "--cacert".into(), file("ca.crt")];
        }
        for port in &ports {
            let port_args = if tls {
                [
                    "--port".to_owned(),
                    "0".to_owned(),
                    "--tls-port".to_owned(),
                    port.to_string(),
                ]
            } else {
                [
                    "--port".to_owned(),
                    port.to_string(),
                    "--bind".to_owned(),
                    "127.0.0.1".to_owned(),
                ]
            };
            let status = Command::new("redis-server")
                .args(port_args)
                .args(&server_tls)
                .args(["--daemonize", "yes", "--cluster-enabled", "yes"])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                .args(["--cluster-node-timeout", "2000"])
                .args(["--cluster-replica-validity-factor", "0"])
                .args(["--repl-diskless-sync-delay", "0"])
                .args(["--save", "", "--appendonly", "no"])
                .args(["--maxmemory-policy", "noeviction"])
                .arg("--dir")
                .arg(dir.path())
                .arg("--pidfile")
                .arg(dir.path().join(format!("{port}.pid")))
                .arg("--logfile")
                .arg(dir.path().join(format!("{port}.log")))
                .status()
                .expect("redis-server (Redis installed?)");
            assert!(status.success(), "redis-server on {port}");
        }
        let cluster = Cluster {
            dir,
            ports,
            tls: cli_tls,
        };
        let cli = |port: u16, args: &[&str]| cli_with(&cluster.tls, port, args);
        for port in &cluster.ports {
            cluster.wait(|| cli(*port, &["ping"]).contains("PONG"), "a node answers");
        }
        let nodes: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let out = Command::new("redis-cli")
            .args(&cluster.tls)
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        for port in &cluster.ports {
            cluster.wait(
                || cli(*port, &["cluster", "info"]).contains("cluster_state:ok"),
                "the cluster is ready",
            );
        }
        // Each replica holds its master's data (the first sync is done), as
        // in any cluster that has been running for a while.
        for port in &cluster.ports {
            cluster.wait(
                || {
                    let info = cli(*port, &["info", "replication"]);
                    info.contains("role:master") || info.contains("master_link_status:up")
                },
                "the replicas are in sync",
            );
        }
        cluster
    }

    fn wait(&self, ready: impl Fn() -> bool, what: &str) {
        let started = Instant::now();
        while !ready() {
            assert!(started.elapsed() < Duration::from_secs(20), "{what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn url(&self) -> String {
        let nodes: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let scheme = if self.tls.is_empty() {
            "redis"
        } else {
            "rediss"
        };
        format!("{scheme}+cluster://{}", nodes.join(","))
    }

    /// The ports of the master serving `key`'s slot and of its replica,
    /// once the first node's view of the cluster shows both (gossip may
    /// lag behind the cluster's creation).
    fn master_and_replica_of(&self, key: &str) -> (u16, u16) {
        let started = Instant::now();
        loop {
            if let Some(found) = self.try_master_and_replica_of(key) {
                return found;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no master with a replica for {key}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn try_master_and_replica_of(&self, key: &str) -> Option<(u16, u16)> {
        let slot: u16 = cli(self.ports[0], &["cluster", "keyslot", key])
            .trim()
            .parse()
            .expect("a slot");
        let nodes = cli(self.ports[0], &["cluster", "nodes"]);
        let port_of = |addr: &str| -> u16 {
            addr.split(['@', ':'])
                .nth(1)
                .and_then(|p| p.parse().ok())
                .expect("a port")
        };
        let (master_id, master) = nodes
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| {
                f.len() > 8
                    && f[2].contains("master")
                    && f[8..].iter().any(|range| {
                        let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                        match (lo.parse::<u16>(), hi.parse::<u16>()) {
                            (Ok(lo), Ok(hi)) => (lo..=hi).contains(&slot),
                            _ => false,
                        }
                    })
            })
            .map(|f| (f[0].to_owned(), port_of(f[1])))?;
        let replica = nodes
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.len() > 3 && f[3] == master_id)
            .map(|f| port_of(f[1]))?;
        Some((master, replica))
    }

    /// [`Self::wait`] for async tests: the runtime's other tasks go on.
    async fn until(&self, ready: impl Fn() -> bool, what: &str) {
        let started = Instant::now();
        while !ready() {
            assert!(started.elapsed() < Duration::from_secs(20), "{what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill(&self, port: u16) {
        self.signal(port, "KILL");
    }

    /// Sends a node's process a signal (`KILL`, `STOP`, `CONT`).
    fn signal(&self, port: u16, signal: &str) {
        let pid =
            std::fs::read_to_string(self.dir.path().join(format!("{port}.pid"))).expect("pid file");
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.trim())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} {port}");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for port in &self.ports {
            // A stopped node would not hear the shutdown.
            if let Ok(pid) = std::fs::read_to_string(self.dir.path().join(format!("{port}.pid"))) {
                let _ = Command::new("kill").args(["-CONT", pid.trim()]).status();
            }
            let _ = cli_with(&self.tls, *port, &["shutdown", "nosave"]);
        }
    }
}

/// A cluster of its own and latchkey on it (PostgreSQL from
/// `LATCHKEY_TEST_DATABASE_URL`), under a fresh key prefix, with the given
/// store timeout: (cluster, prefix, app).
async fn cluster_and_app(store_timeout_ms: u64) -> (Cluster, String, TestApp) {
    crate::helpers::required_env("LATCHKEY_TEST_DATABASE_URL");
    let cluster = tokio::task::spawn_blocking(Cluster::start)
        .await
        .expect("cluster");
    let prefix = format!("lk-test-{}", uuid::Uuid::new_v4().simple());
    let app = spawn_app_with(|c| {
        c.redis_url = Some(cluster.url());
        c.redis_key_prefix = prefix.clone();
        c.store_timeout_ms = store_timeout_ms;
    })
    .await;
    (cluster, prefix, app)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Before,
    Outage,
    After,
}

/// One answer of the load: when its request was sent, which request,
/// status, `Retry-After`.
struct Answer {
    at: Instant,
    refresh: bool,
    status: u16,
    retry_after: bool,
    /// The body of a refusal.
    body: Option<String>,
}

/// A client signed in as its own user: userinfo in a loop, a refresh every
/// fifth request, keeping the pair it gets.
async fn client(
    http: reqwest::Client,
    base: String,
    t: String,
    mut tokens: Value,
    stop: Arc<AtomicBool>,
) -> (Vec<Answer>, Value) {
    let mut answers = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let refresh = n.is_multiple_of(5);
        let at = Instant::now();
        let sent = if refresh {
            http.post(format!("{base}/tenants/{t}/oauth/token"))
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("client_id", "admin-cli"),
                    ("refresh_token", str_of(&tokens, "refresh_token")),
                ])
                .send()
                .await
        } else {
            http.get(format!("{base}/tenants/{t}/oauth/userinfo"))
                .bearer_auth(str_of(&tokens, "access_token"))
                .send()
                .await
        };
        let Ok(res) = sent else {
            answers.push(Answer {
                at,
                refresh,
                status: 0,
                retry_after: false,
                body: None,
            });
            continue;
        };
        let status = res.status().as_u16();
        let retry_after = res.headers().contains_key("retry-after");
        let mut body = None;
        if refresh && status == 200 {
            tokens = res.json().await.expect("tokens");
        } else if status != 200 {
            body = res.text().await.ok();
        } else {
            let _ = res.bytes().await;
        }
        answers.push(Answer {
            at,
            refresh,
            status,
            retry_after,
            body,
        });
        if status != 200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    (answers, tokens)
}

#[tokio::test]
#[ignore = "needs PostgreSQL and redis-server: run with --include-ignored and LATCHKEY_TEST_DATABASE_URL"]
async fn a_master_failing_over_under_load_fails_closed_and_recovers() {
    let (cluster, prefix, app) = cluster_and_app(300).await;
    let admin = app.admin_token().await;
    let t = crate::helpers::slug("fo");
    app.create_tenant(&admin, &t, json!({})).await;
    let mut sessions = Vec::new();
    for i in 0..5 {
        let email = format!("user{i}@{t}.test");
        app.create_user(&admin, &t, &email).await;
        sessions.push(app.login(&t, &email, USER_PASSWORD).await);
    }
    // The fifth session ends before the failure: its token must never pass.
    let revoked = sessions.pop().expect("a session");
    let res = app
        .http
        .post(app.url(&format!("/tenants/{t}/logout")))
        .bearer_auth(str_of(&revoked, "access_token"))
        .send()
        .await
        .expect("logout");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let revoked = str_of(&revoked, "access_token").to_owned();

    let (master, replica) = cluster.master_and_replica_of(&format!("{prefix}:{{{t}}}:sst:x"));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http");
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = sessions
        .into_iter()
        .map(|tokens| {
            tokio::spawn(client(
                http.clone(),
                app.base.clone(),
                t.clone(),
                tokens,
                stop.clone(),
            ))
        })
        .collect();
    let watcher = {
        let (http, base, t, stop) = (http.clone(), app.base.clone(), t.clone(), stop.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                if let Ok(res) = http
                    .get(format!("{base}/tenants/{t}/oauth/userinfo"))
                    .bearer_auth(&revoked)
                    .send()
                    .await
                {
                    seen.push((Instant::now(), res.status().as_u16()));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            seen
        })
    };

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let killed = Instant::now();
    cluster.kill(master);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        cli(replica, &["cluster", "failover", "takeover"]).contains("OK"),
        "the replica takes over"
    );
    cluster
        .until(
            || cli(replica, &["role"]).starts_with("master"),
            "the replica is a master",
        )
        .await;
    let promoted = Instant::now();
    tokio::time::sleep(Duration::from_secs(6)).await;
    stop.store(true, Ordering::SeqCst);

    // By when a request was sent: those sent in the first 100 ms after the
    // kill may have been answered before it and count as before.
    let outage_from = killed + Duration::from_millis(100);
    let phase = |at: Instant| {
        if at < outage_from {
            Phase::Before
        } else if at < promoted {
            Phase::Outage
        } else {
            Phase::After
        }
    };
    let mut finals = Vec::new();
    let mut all: Vec<Vec<Answer>> = Vec::new();
    for c in clients {
        let (answers, tokens) = c.await.expect("client");
        all.push(answers);
        finals.push(tokens);
    }
    let seen = watcher.await.expect("watcher");

    // Counts per phase: (userinfo 200/401/503/other, refresh 200/400/503/other).
    let mut table = String::new();
    for p in [Phase::Before, Phase::Outage, Phase::After] {
        let count = |refresh: bool, status: u16| {
            all.iter()
                .flatten()
                .filter(|a| phase(a.at) == p && a.refresh == refresh && a.status == status)
                .count()
        };
        let other = |refresh: bool| {
            all.iter()
                .flatten()
                .filter(|a| {
                    phase(a.at) == p
                        && a.refresh == refresh
                        && ![200, 400, 401, 503].contains(&a.status)
                })
                .count()
        };
        let revoked_in = |status: u16| {
            seen.iter()
                .filter(|(at, s)| phase(*at) == p && *s == status)
                .count()
        };
        table.push_str(&format!(
            "{p:?}: userinfo 200={} 401={} 503={} other={}; refresh 200={} 400={} 503={} other={}; revoked token 200={} 401={} 503={}\n",
            count(false, 200),
            count(false, 401),
            count(false, 503),
            other(false),
            count(true, 200),
            count(true, 400),
            count(true, 503),
            other(true),
            revoked_in(200),
            revoked_in(401),
            revoked_in(503),
        ));
    }
    let served_again = all
        .iter()
        .filter_map(|answers| {
            answers
                .iter()
                .find(|a| a.at >= promoted && a.status == 200)
                .map(|a| a.at.duration_since(promoted))
        })
        .max();
    table.push_str(&format!(
        "every client served again {served_again:?} after the promotion\n"
    ));
    if let Some(body) = all
        .iter()
        .flatten()
        .filter(|a| a.status != 503)
        .find_map(|a| a.body.clone())
    {
        table.push_str(&format!("first refusal other than 503: {body}\n"));
    }
    eprintln!(
        "failover (outage {:?}):\n{table}",
        promoted.duration_since(killed)
    );

    // Nothing revoked passes, ever.
    assert!(seen.iter().all(|(_, s)| *s != 200), "{table}");
    // Every refusal of a request sent during the outage is 503
    // store_unavailable with Retry-After (a live token may still be served
    // where a store call got through; the table counts those).
    for a in all
        .iter()
        .flatten()
        .filter(|a| phase(a.at) == Phase::Outage)
    {
        let code_ok = a
            .body
            .as_deref()
            .is_some_and(|b| b.contains("\"store_unavailable\""));
        assert!(
            a.status == 200 || (a.status == 503 && a.retry_after && code_ok),
            "an answer of {} ({:?}) during the outage\n{table}",
            a.status,
            a.body
        );
    }
    assert!(
        all.iter()
            .flatten()
            .any(|a| phase(a.at) == Phase::Outage && a.status == 503),
        "the outage was seen\n{table}"
    );
    // Within 5 s of the promotion every client is served again, and stays so.
    for answers in &all {
        let back = answers
            .iter()
            .find(|a| a.at >= promoted && a.status == 200 && !a.refresh)
            .map(|a| a.at.duration_since(promoted));
        assert!(
            back.is_some_and(|d| d <= Duration::from_secs(5)),
            "a client served again {back:?} after the promotion\n{table}"
        );
        let last_failure = answers
            .iter()
            .filter(|a| a.at >= promoted && a.status != 200)
            .map(|a| a.at.duration_since(promoted))
            .max();
        assert!(
            last_failure.is_none_or(|d| d <= Duration::from_secs(5)),
            "failures {last_failure:?} after the promotion\n{table}"
        );
    }
    // No family lost or rotated twice: no refresh was refused (invalid_grant
    // is reuse or a lost family), and each client's last pair rotates once.
    assert!(
        all.iter()
            .flatten()
            .all(|a| !(a.refresh && a.status == 400)),
        "a refresh was refused\n{table}"
    );
    for tokens in finals {
        let res = app
            .refresh_grant(&t, str_of(&tokens, "refresh_token"))
            .await;
        assert_eq!(res.status(), StatusCode::OK, "{}", json(res).await);
    }
}

/// How many `WAIT` commands a node has run (`INFO commandstats`).
fn wait_calls(port: u16) -> u64 {
    cli(port, &["info", "commandstats"])
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_wait:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Nodes with a subscriber of `channel` (`PUBSUB NUMSUB` counts a node's own).
fn subscribed_nodes(cluster: &Cluster, channel: &str, alive: &[u16]) -> Vec<u16> {
    cluster
        .ports
        .iter()
        .copied()
        .filter(|p| alive.contains(p))
        .filter(|p| {
            let out = cli(*p, &["pubsub", "numsub", channel]);
            out.lines()
                .nth(1)
                .and_then(|n| n.trim().parse::<u32>().ok())
                > Some(0)
        })
        .collect()
}

#[tokio::test]
#[ignore = "needs PostgreSQL and redis-server: run with --include-ignored and LATCHKEY_TEST_DATABASE_URL"]
async fn the_change_bus_moves_to_another_node_when_its_node_fails() {
    let (cluster, prefix, _app) = cluster_and_app(300).await;
    let channel = format!("{prefix}:changes");
    let all = cluster.ports.clone();
    // The test runs on one thread: waits must let the listener run.
    async fn wait_for_one(cluster: &Cluster, channel: &str, alive: &[u16]) -> (u16, Duration) {
        let started = Instant::now();
        loop {
            let nodes = subscribed_nodes(cluster, channel, alive);
            if nodes.len() == 1 {
                return (nodes[0], started.elapsed());
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "subscribed on {nodes:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let (node, _) = wait_for_one(&cluster, &channel, &all).await;
    eprintln!("change bus: subscribed on {node}");
    // Its node fails; a master's replica takes its slots over.
    let replica = cluster.ports.iter().copied().find(|p| {
        *p != node && cli(*p, &["info", "replication"]).contains(&format!("master_port:{node}"))
    });
    cluster.kill(node);
    if let Some(replica) = replica {
        assert!(cli(replica, &["cluster", "failover", "takeover"]).contains("OK"));
    }
    let alive: Vec<u16> = all.iter().copied().filter(|p| *p != node).collect();
    let (moved_to, after) = wait_for_one(&cluster, &channel, &alive).await;
    eprintln!("change bus: node {node} failed; subscribed again on {moved_to} after {after:?}");
    assert_ne!(moved_to, node);
}

#[tokio::test]
#[ignore = "needs PostgreSQL and redis-server: run with --include-ignored and LATCHKEY_TEST_DATABASE_URL"]
async fn a_revocation_is_answered_once_a_replica_holds_it_and_survives_the_failover() {
    let (cluster, prefix, app) = cluster_and_app(1000).await;
    let admin = app.admin_token().await;
    let t = crate::helpers::slug("rv");
    app.create_tenant(&admin, &t, json!({})).await;
    let email = format!("user@{t}.test");
    app.create_user(&admin, &t, &email).await;
    let first = app.login(&t, &email, USER_PASSWORD).await;
    let second = app.login(&t, &email, USER_PASSWORD).await;
    let (master, replica) = cluster.master_and_replica_of(&format!("{prefix}:{{{t}}}:sst:x"));

    // Nodes that lost their scripts (restarted, or promoted) while another
    // master is down (with `cluster-require-full-coverage no`, as the README
    // advises, its slots alone are refused): the scripts still run, sent by
    // their body to the node that needs them.
    for port in &cluster.ports {
        assert!(
            cli(
                *port,
                &["config", "set", "cluster-require-full-coverage", "no"]
            )
            .contains("OK")
        );
    }
    let other_master = cluster
        .ports
        .iter()
        .copied()
        .find(|p| *p != master && cli(*p, &["role"]).starts_with("master"))
        .expect("another master");
    // Its replica stays a replica: the cluster runs on without those slots.
    let other_replica = cluster
        .ports
        .iter()
        .copied()
        .find(|p| {
            cli(*p, &["info", "replication"]).contains(&format!("master_port:{other_master}"))
        })
        .expect("its replica");
    assert!(
        cli(
            other_replica,
            &["config", "set", "cluster-replica-no-failover", "yes"]
        )
        .contains("OK")
    );
    cluster.kill(other_master);
    for port in cluster.ports.iter().filter(|p| **p != other_master) {
        assert!(cli(*port, &["script", "flush"]).contains("OK"));
    }
    let third = app.login(&t, &email, USER_PASSWORD).await;
    assert!(!str_of(&third, "access_token").is_empty());

    // Once the cluster marks that master failed, the instance is still
    // ready: the tenants in the other slots are served (`cluster_state:ok`).
    cluster
        .until(
            || {
                cli(master, &["cluster", "nodes"])
                    .lines()
                    .any(|l| l.contains(&format!(":{other_master}@")) && l.contains("master,fail "))
            },
            "the master is marked failed",
        )
        .await;
    let readyz = || async {
        app.http
            .get(app.url("/readyz"))
            .send()
            .await
            .expect("readyz")
            .status()
    };
    assert_eq!(readyz().await, StatusCode::OK);

    let userinfo = |tokens: &Value| {
        app.http
            .get(app.url(&format!("/tenants/{t}/oauth/userinfo")))
            .bearer_auth(str_of(tokens, "access_token"))
            .send()
    };
    let logout = |tokens: &Value| {
        app.http
            .post(app.url(&format!("/tenants/{t}/logout")))
            .bearer_auth(str_of(tokens, "access_token"))
            .send()
    };

    // The replica stalls for 150 ms: the logout is answered only once the
    // replica has it, and the master fails right after the answer.
    cluster.signal(replica, "STOP");
    let resumed = {
        let dir = cluster.dir.path().join(format!("{replica}.pid"));
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            let pid = std::fs::read_to_string(dir).expect("pid file");
            Command::new("kill")
                .args(["-CONT", pid.trim()])
                .status()
                .expect("kill")
        })
    };
    let started = Instant::now();
    let res = logout(&first).await.expect("logout");
    let took = started.elapsed();
    let waits = wait_calls(master);
    cluster.kill(master);
    assert!(waits > 0, "the revocation sent no WAIT");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(resumed.await.expect("resumed").success());
    assert!(
        took >= Duration::from_millis(120),
        "the logout was answered before the replica had it ({took:?})"
    );
    assert!(
        cli(replica, &["cluster", "failover", "takeover"]).contains("OK"),
        "the replica takes over"
    );
    cluster
        .until(
            || cli(replica, &["role"]).starts_with("master"),
            "the replica is a master",
        )
        .await;

    // On the promoted replica the live session passes and the ended one
    // does not.
    let promoted = Instant::now();
    loop {
        let status = userinfo(&second).await.expect("userinfo").status();
        if status == StatusCode::OK {
            break;
        }
        assert!(
            promoted.elapsed() < Duration::from_secs(5),
            "not served after the promotion: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let res = userinfo(&first).await.expect("userinfo");
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "{}",
        json(res).await
    );

    // The new master has no replica: a revocation has nothing to wait for.
    let res = logout(&third).await.expect("logout");
    assert_eq!(res.status(), StatusCode::NO_CONTENT, "{}", json(res).await);
    let res = logout(&second).await.expect("logout");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        wait_calls(replica),
        0,
        "a revocation waited without replicas"
    );
    let res = userinfo(&second).await.expect("userinfo");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
#[ignore = "needs PostgreSQL and redis-server: run with --include-ignored and LATCHKEY_TEST_DATABASE_URL"]
async fn a_change_published_anywhere_reaches_the_listener_at_once_and_a_stalled_node_is_left() {
    crate::helpers::required_env("LATCHKEY_TEST_DATABASE_URL");
    let cluster = tokio::task::spawn_blocking(Cluster::start)
        .await
        .expect("cluster");
    let prefix = format!("lk-test-{}", uuid::Uuid::new_v4().simple());
    let channel = format!("{prefix}:changes");
    let (first, rest) = (cluster.ports[0], cluster.ports[1..].to_vec());
    // Seeds in this order: the listener subscribes on the first.
    let url = format!(
        "redis+cluster://{}",
        cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let heard: Arc<parking_lot::Mutex<Vec<(Instant, String)>>> = Arc::default();
    let listener = {
        let heard = heard.clone();
        latchkey::store::session::spawn_change_listener(
            url.clone(),
            prefix.clone(),
            Arc::new(move |msg: &str| heard.lock().push((Instant::now(), msg.to_owned()))),
        )
    };
    let resubscriptions = |heard: &parking_lot::Mutex<Vec<(Instant, String)>>| {
        heard.lock().iter().filter(|(_, m)| m == "*").count()
    };
    cluster
        .until(|| resubscriptions(&heard) == 1, "the listener subscribes")
        .await;
    assert_eq!(
        subscribed_nodes(&cluster, &channel, &cluster.ports),
        [first]
    );

    // A message published on any other node (the cluster bus relays it)
    // arrives well within the 400 ms of the change log's poll.
    let arrival = |heard: &parking_lot::Mutex<Vec<(Instant, String)>>, msg: &str| {
        heard
            .lock()
            .iter()
            .find(|(_, m)| m == msg)
            .map(|(at, _)| *at)
    };
    let mut slowest = Duration::ZERO;
    for port in &rest {
        let msg = format!("via-{port}");
        let sent = Instant::now();
        cli(*port, &["publish", &channel, &msg]);
        cluster
            .until(|| arrival(&heard, &msg).is_some(), "a message arrives")
            .await;
        slowest = slowest.max(arrival(&heard, &msg).expect("arrived") - sent);
    }
    eprintln!("change bus: slowest message from another node took {slowest:?}");
    assert!(slowest < Duration::from_millis(400), "{slowest:?}");

    // Its node stalls without closing the connection (a paused process):
    // the listener leaves it for another node and hears messages again.
    let stalled = Instant::now();
    cluster.signal(first, "STOP");
    let started = Instant::now();
    while resubscriptions(&heard) < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the listener stays on a stalled node"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "change bus: left the stalled node after {:?}",
        stalled.elapsed()
    );
    let moved_to = subscribed_nodes(&cluster, &channel, &rest);
    assert_eq!(moved_to.len(), 1, "{moved_to:?}");
    let other = *rest.iter().find(|p| **p != moved_to[0]).expect("a node");
    cli(other, &["publish", &channel, "after"]);
    cluster
        .until(|| arrival(&heard, "after").is_some(), "a message arrives")
        .await;
    listener.abort();
    cluster.signal(first, "CONT");
}

#[tokio::test]
#[ignore = "needs PostgreSQL and redis-server: run with --include-ignored and LATCHKEY_TEST_DATABASE_URL"]
async fn a_cluster_over_tls_serves_sign_in_revocation_and_the_change_bus() {
    crate::helpers::required_env("LATCHKEY_TEST_DATABASE_URL");
    let cluster = tokio::task::spawn_blocking(Cluster::start_tls)
        .await
        .expect("cluster");
    // The nodes' certificates come from the cluster's own CA: trusted the
    // way any private CA is, through SSL_CERT_FILE.
    // SAFETY: set before the app starts, while this test's only other
    // thread (the idle blocking pool) reads no environment.
    unsafe { std::env::set_var("SSL_CERT_FILE", cluster.ca()) };
    let prefix = format!("lk-test-{}", uuid::Uuid::new_v4().simple());
    let url = cluster.url();
    assert!(url.starts_with("rediss+cluster://"), "{url}");
    let app = spawn_app_with(|c| {
        c.redis_url = Some(url.clone());
        c.redis_key_prefix = prefix.clone();
    })
    .await;
    let admin = app.admin_token().await;
    let t = crate::helpers::slug("tls");
    app.create_tenant(&admin, &t, json!({})).await;
    let email = format!("user@{t}.test");
    app.create_user(&admin, &t, &email).await;
    let tokens = app.login(&t, &email, USER_PASSWORD).await;
    let userinfo = || {
        app.http
            .get(app.url(&format!("/tenants/{t}/oauth/userinfo")))
            .bearer_auth(str_of(&tokens, "access_token"))
            .send()
    };
    assert_eq!(userinfo().await.expect("userinfo").status(), StatusCode::OK);
    let res = app
        .refresh_grant(&t, str_of(&tokens, "refresh_token"))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .http
        .post(app.url(&format!("/tenants/{t}/logout")))
        .bearer_auth(str_of(&tokens, "access_token"))
        .send()
        .await
        .expect("logout");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        userinfo().await.expect("userinfo").status(),
        StatusCode::UNAUTHORIZED
    );
    let ready = app
        .http
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), StatusCode::OK);
    // The change listener subscribed over TLS too.
    let channel = format!("{prefix}:changes");
    cluster
        .until(
            || {
                cluster.ports.iter().any(|p| {
                    cli_with(&cluster.tls, *p, &["pubsub", "numsub", &channel])
                        .lines()
                        .nth(1)
                        .is_some_and(|n| n.trim() == "1")
                })
            },
            "the change listener subscribes",
        )
        .await;
}
