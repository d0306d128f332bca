//! The records of a run: states of runs, targets and steps, events, leases.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

macro_rules! state_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!("unknown {} {other:?}", stringify!($name))),
                }
            }
        }
    };
}

state_enum!(
    /// The state of a run as a whole.
    RunState {
        Running => "running",
        Paused => "paused",
        Aborted => "aborted",
        Succeeded => "succeeded",
        Failed => "failed",
        NeedsAttention => "needs_attention",
    }
);

state_enum!(
    /// pending → running → succeeded / failed / rolled_back / needs_attention / skipped.
    TargetState {
        Pending => "pending",
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
        RolledBack => "rolled_back",
        NeedsAttention => "needs_attention",
        Skipped => "skipped",
    }
);

state_enum!(
    /// pending → running → succeeded / failed / skipped.
    StepState {
        Pending => "pending",
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
        Skipped => "skipped",
    }
);

state_enum!(
    /// What an operator asked for.
    Action {
        Pause => "pause",
        Resume => "resume",
        Abort => "abort",
        Retry => "retry",
        Skip => "skip",
        StartNow => "start_now",
    }
);

impl TargetState {
    /// States a target does not leave by itself.
    pub fn is_terminal(self) -> bool {
        !matches!(self, TargetState::Pending | TargetState::Running)
    }
}

impl RunState {
    /// The documented exit code for a run that ended in this state.
    pub fn exit_code(self) -> i32 {
        match self {
            RunState::Succeeded => 0,
            RunState::Failed | RunState::NeedsAttention => 1,
            RunState::Paused | RunState::Aborted | RunState::Running => 3,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunRecord {
    pub id: String,
    pub plan_name: String,
    pub plan_path: String,
    pub plan_dir: String,
    /// The plan as it was when the run started (a resume does not re-read the file).
    #[serde(skip_serializing)]
    pub plan_text: String,
    /// The targets as resolved when the run started (JSON array).
    #[serde(skip_serializing)]
    pub targets_json: String,
    pub state: RunState,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TargetRecord {
    pub name: String,
    pub position: i64,
    pub state: TargetState,
    pub phase: Option<String>,
    pub step: Option<String>,
    pub message: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// Set by `cutover skip` on a target with an open block: the next driver
    /// runs the block's `finally` steps, then marks the target skipped.
    pub skip_requested: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StepRecord {
    pub target: String,
    pub step: String,
    pub state: StepState,
    pub attempt: i64,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub outputs: serde_json::Value,
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Event {
    pub id: i64,
    pub run_id: String,
    pub ts: String,
    pub target: Option<String>,
    pub step: Option<String>,
    pub kind: String,
    pub message: String,
    pub data: serde_json::Value,
}

/// An event before the store gives it an id and a time.
#[derive(Clone, Debug, Default)]
pub struct NewEvent {
    pub target: Option<String>,
    pub step: Option<String>,
    pub kind: &'static str,
    pub message: String,
    pub data: serde_json::Value,
}

impl NewEvent {
    pub fn run(kind: &'static str, message: impl Into<String>) -> Self {
        NewEvent { kind, message: message.into(), ..Default::default() }
    }
    pub fn target(target: &str, kind: &'static str, message: impl Into<String>) -> Self {
        NewEvent { target: Some(target.to_string()), kind, message: message.into(), ..Default::default() }
    }
    pub fn step(target: &str, step: &str, kind: &'static str, message: impl Into<String>) -> Self {
        NewEvent {
            target: Some(target.to_string()),
            step: Some(step.to_string()),
            kind,
            message: message.into(),
            ..Default::default()
        }
    }
    pub fn with_data(mut self, data: serde_json::Value) -> Self {
        self.data = data;
        self
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Lease {
    pub holder: String,
    pub pid: i64,
    pub host: String,
    /// Milliseconds since the Unix epoch.
    pub expires_at: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Request {
    pub id: i64,
    pub action: Action,
    pub target: Option<String>,
    pub actor: String,
    pub note: Option<String>,
}

/// A human's go for an approve step.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Approval {
    pub step: String,
    /// None: every target waiting at that step.
    pub target: Option<String>,
    pub actor: String,
    pub note: Option<String>,
    pub at: String,
}

/// An operator's tick of a manual check.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Tick {
    pub id: i64,
    pub check: String,
    pub target: Option<String>,
    pub ok: bool,
    pub actor: String,
    pub note: Option<String>,
    pub at: String,
}

/// The time now, as stored: RFC 3339 in UTC with microseconds.
pub fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}
