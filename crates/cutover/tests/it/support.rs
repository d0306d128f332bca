//! Helpers: a temporary work directory with its own state file, the binary,
//! JSON output, waiting for files.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Work {
    pub dir: tempfile::TempDir,
}

impl Work {
    pub fn new() -> Work {
        Work { dir: tempfile::Builder::new().prefix("cutover-it-").tempdir().expect("tempdir") }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.file(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.file(name)).unwrap_or_default()
    }

    pub fn lines(&self, name: &str) -> Vec<String> {
        self.read(name).lines().map(str::to_string).collect()
    }

    pub fn state(&self) -> PathBuf {
        self.file("state.db")
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cutover"));
        c.args(args)
            .current_dir(self.path())
            .env("CUTOVER_STATE", self.state())
            .env("CUTOVER_ACTOR", "tester")
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run cutover")
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        self.cmd(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn cutover")
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["--output", "json"]);
        let o = self.run(&a);
        serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {}\n{}", text(&o.stdout), text(&o.stderr)))
    }

    /// The id of the only (or latest) run.
    pub fn run_id(&self) -> String {
        let runs = self.json(&["runs"]);
        runs.as_array().and_then(|a| a.last()).and_then(|r| r["id"].as_str()).expect("a run").to_string()
    }

    pub fn events(&self, run: &str) -> Vec<Value> {
        let o = self.run(&["events", run, "--output", "json"]);
        text(&o.stdout).lines().map(|l| serde_json::from_str(l).expect("event JSON")).collect()
    }

    pub fn status(&self, run: &str) -> Value {
        self.json(&["status", run])
    }

    pub fn target_state(&self, run: &str, target: &str) -> String {
        let s = self.status(run);
        s["targets"]
            .as_array()
            .and_then(|a| a.iter().find(|t| t["name"] == target))
            .and_then(|t| t["state"].as_str())
            .unwrap_or("?")
            .to_string()
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// Waits until `f` holds, failing the test after `secs`.
pub fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {secs}s waiting for {what}");
}

pub fn wait_exit(child: &mut Child, secs: u64) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("cutover did not exit within {secs}s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kinds of a run's events, in order.
pub fn kinds(events: &[Value]) -> Vec<String> {
    events.iter().filter_map(|e| e["kind"].as_str().map(str::to_string)).collect()
}
