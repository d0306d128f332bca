//! `log` check: follow a file or a command's output; the latest line that
//! matches a step's regex says the current step (a line that matches none is
//! `unknown`), heartbeat lines say the process is alive. This is how Pix's
//! dashboard read its migration script's progress.

use super::Reading;
use regex::Regex;
use serde_json::{Value, json};
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub enum Source {
    File(PathBuf),
    /// A shell command, run in a directory; its stdout is followed.
    Command(String, PathBuf),
}

pub struct Follower {
    source: Source,
    offset: u64,
    partial: String,
    lines: Arc<Mutex<Vec<String>>>,
    started: bool,
    steps: Vec<(String, Regex)>,
    heartbeat: Option<Regex>,
    liveness: Duration,
    step: Option<String>,
    since: Option<i64>,
    last_beat: Option<i64>,
    last_line: Option<String>,
}

impl Follower {
    pub fn new(
        source: Source,
        steps: &[(String, String)],
        heartbeat: Option<&str>,
        liveness: Duration,
    ) -> Result<Follower, String> {
        let steps = steps
            .iter()
            .map(|(n, r)| {
                Regex::new(r).map(|re| (n.clone(), re)).map_err(|e| format!("invalid regex for step {n}: {e}"))
            })
            .collect::<Result<_, _>>()?;
        let heartbeat = heartbeat.map(Regex::new).transpose().map_err(|e| format!("invalid heartbeat regex: {e}"))?;
        Ok(Follower {
            source,
            offset: 0,
            partial: String::new(),
            lines: Arc::default(),
            started: false,
            steps,
            heartbeat,
            liveness,
            step: None,
            since: None,
            last_beat: None,
            last_line: None,
        })
    }

    fn new_lines(&mut self) -> Result<Vec<String>, String> {
        match &self.source {
            Source::File(path) => {
                let mut f = match std::fs::File::open(path) {
                    Ok(f) => f,
                    // Not written yet: no lines.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
                    Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
                };
                let len = f.metadata().map(|m| m.len()).unwrap_or(0);
                if len < self.offset {
                    // Truncated or rotated: start over.
                    self.offset = 0;
                    self.partial.clear();
                }
                f.seek(SeekFrom::Start(self.offset)).map_err(|e| e.to_string())?;
                let mut buf = String::new();
                let n = f.read_to_string(&mut buf).map_err(|e| e.to_string())?;
                self.offset += n as u64;
                self.partial.push_str(&buf);
                let mut out = vec![];
                while let Some(i) = self.partial.find('\n') {
                    out.push(self.partial[..i].trim_end_matches('\r').to_string());
                    self.partial.drain(..=i);
                }
                Ok(out)
            }
            Source::Command(cmd, dir) => {
                if !self.started {
                    self.started = true;
                    let mut child = tokio::process::Command::new("sh")
                        .arg("-c")
                        .arg(cmd)
                        .current_dir(dir)
                        .stdin(std::process::Stdio::null())
                        .stdout(std::process::Stdio::piped())
                        .stderr(std::process::Stdio::null())
                        .kill_on_drop(true)
                        .spawn()
                        .map_err(|e| format!("cannot start the log command: {e}"))?;
                    let stdout = child.stdout.take().ok_or("the log command has no stdout")?;
                    let lines = self.lines.clone();
                    tokio::spawn(async move {
                        use tokio::io::AsyncBufReadExt;
                        let _child = child;
                        let mut r = tokio::io::BufReader::new(stdout).lines();
                        while let Ok(Some(l)) = r.next_line().await {
                            lines.lock().unwrap_or_else(|p| p.into_inner()).push(l);
                        }
                    });
                }
                Ok(std::mem::take(&mut *self.lines.lock().unwrap_or_else(|p| p.into_inner())))
            }
        }
    }

    pub async fn poll(&mut self, now: i64) -> Result<Reading, String> {
        for line in self.new_lines()? {
            if self.heartbeat.as_ref().is_some_and(|h| h.is_match(&line)) {
                self.last_beat = Some(now);
                continue;
            }
            let step = self
                .steps
                .iter()
                .find(|(_, re)| re.is_match(&line))
                .map(|(n, _)| n.clone())
                .unwrap_or_else(|| "unknown".into());
            if self.step.as_deref() != Some(&step) {
                self.step = Some(step);
                self.since = Some(now);
            }
            self.last_line = Some(line);
        }
        let alive = match &self.heartbeat {
            Some(_) => self.last_beat.is_some_and(|b| now - b <= self.liveness.as_millis() as i64),
            None => true,
        };
        let since = self.since.and_then(|s| jiff::Timestamp::from_millisecond(s).ok()).map(|t| t.to_string());
        let mut extras = serde_json::Map::new();
        extras.insert("step".into(), json!(self.step));
        extras.insert("since".into(), json!(since));
        extras.insert("alive".into(), json!(alive));
        extras.insert("line".into(), json!(self.last_line));
        Ok(Reading { value: self.step.clone().map(Value::String).unwrap_or(Value::Null), extras, default_ok: alive })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn follows_steps_heartbeats_and_unknown_lines() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("m.log");
        let steps = [("1/2".to_string(), "^copy - ".to_string()), ("2/2".to_string(), "^index - ".to_string())];
        let mut f =
            Follower::new(Source::File(path.clone()), &steps, Some("alive"), Duration::from_secs(60)).expect("ok");
        let r = f.poll(0).await.expect("no file yet is no data");
        assert_eq!((r.value, r.default_ok), (Value::Null, false));
        std::fs::write(&path, "copy - In progress\nalive\n").expect("write");
        let r = f.poll(1000).await.expect("read");
        assert_eq!(r.value, json!("1/2"));
        assert_eq!(r.extras["alive"], json!(true));
        std::fs::write(&path, "copy - In progress\nalive\nindex - In progress\nsomething else\npart").expect("write");
        let r = f.poll(2000).await.expect("read");
        assert_eq!(r.value, json!("unknown"), "an unmatched line is unknown");
        // Liveness runs out without heartbeats.
        let r = f.poll(120_000).await.expect("read");
        assert_eq!((r.extras["alive"].clone(), r.default_ok), (json!(false), false));
    }
}
