//! How a run's progress is shown: JSON lines, plain lines, or (on a
//! terminal) a live view; and, on a terminal, approving a gate in place.

use std::collections::{HashMap, VecDeque};
use std::io::{IsTerminal, Write as _};
use std::path::PathBuf;

use stackpipe_runtime::control::{ControlClient, Request, ServerClient};
use stackpipe_runtime::run::{GateSelector, RunEvent};
use stackpipe_runtime::state::{Decision, GateKind, LogLevel, Status};
use tokio::sync::mpsc;

/// Where the run whose events are shown is steered from: its control
/// socket (this process runs it), or the team server that runs it.
pub enum Steer {
    Local(SocketSlot),
    Server(ServerClient),
}

/// The control socket of the run this process runs, set once it is bound.
pub type SocketSlot = std::sync::Arc<std::sync::OnceLock<PathBuf>>;

/// Renders events until the run ends: JSON lines, a live view on a
/// terminal, or one plain line per event. `ask`: at a gate, ask on the
/// terminal (stdin) whether to approve. `yes`: the run was started with
/// `--yes`, which a policy's approval does not take: when one waits, say so
/// on stderr, and how to give it.
pub async fn print_events(mut rx: mpsc::UnboundedReceiver<RunEvent>, json: bool, ask: bool, yes: bool, steer: Steer) {
    let mut prompter = Prompter::new(ask && !json && std::io::stdin().is_terminal(), steer);
    prompter.yes = yes;
    if !json && std::io::stdout().is_terminal() {
        return live_view(rx, prompter).await;
    }
    let mut out = std::io::stdout();
    let mut lines = Lines::default();
    loop {
        tokio::select! {
            e = rx.recv() => {
                let Some(e) = e else { break };
                let shown = if json { serde_json::to_string(&e).ok().into_iter().collect() } else { lines.of(&e) };
                for line in shown {
                    let _ = writeln!(out, "{line}");
                }
                // JSON consumers have the `waiting` event; the hint is for people.
                if let Some(ask) = prompter.see(&e).filter(|_| !json) {
                    let _ = writeln!(out, "{ask}");
                }
                let _ = out.flush();
                if let Some(note) = prompter.not_by_yes(&e) {
                    eprintln!("{note}");
                }
            }
            Some(answer) = prompter.answer() => {
                let said = prompter.decide(answer).await;
                if !said.is_empty() {
                    let _ = writeln!(out, "{said}");
                }
            }
        }
    }
    let _ = out.flush();
}

/// On a terminal: one spinner per node in flight, showing its operation and
/// time; finished nodes scroll above as plain lines; a summary line counts
/// done, running, waiting and failed nodes.
async fn live_view(mut rx: mpsc::UnboundedReceiver<RunEvent>, mut prompter: Prompter) {
    use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
    use std::time::Duration;

    let multi = MultiProgress::new();
    let summary = multi.add(ProgressBar::new_spinner());
    summary.set_style(ProgressStyle::with_template("{spinner} {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()));
    summary.enable_steady_tick(Duration::from_millis(120));
    let node_style = ProgressStyle::with_template("    {spinner} {prefix:<24} {msg} {elapsed:>4}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let mut bars: HashMap<(String, String), ProgressBar> = HashMap::new();
    let mut lines = Lines::default();
    let (mut total, mut done, mut failed) = (0usize, 0usize, 0usize);
    let mut env_name = String::new();
    loop {
        let e = tokio::select! {
            e = rx.recv() => match e { Some(e) => e, None => break },
            Some(answer) = prompter.answer() => {
                let said = prompter.decide(answer).await;
                if !said.is_empty() {
                    let _ = multi.println(said);
                }
                continue;
            }
        };
        match &e {
            RunEvent::RunStarted { nodes, .. } => total = *nodes,
            RunEvent::EnvironmentStarted { environment, nodes, .. } => {
                env_name = environment.clone();
                (total, done, failed) = (nodes.len(), 0, 0);
            }
            RunEvent::OpStarted { environment, node, op } => {
                let bar = bars.entry((environment.clone(), node.clone())).or_insert_with(|| {
                    let b = multi.add(ProgressBar::new_spinner());
                    b.set_style(node_style.clone());
                    b.set_prefix(node.clone());
                    b.enable_steady_tick(Duration::from_millis(120));
                    b
                });
                bar.set_message(op.to_string());
            }
            RunEvent::Waiting { environment, node: Some(node), gate, .. } => {
                if let Some(b) = bars.get(&(environment.clone(), node.clone())) {
                    b.set_message(format!("waiting for approval ({})", gate.name()));
                }
            }
            RunEvent::NodeFinished { environment, node, status, .. } => {
                if let Some(b) = bars.remove(&(environment.clone(), node.clone())) {
                    b.finish_and_clear();
                    multi.remove(&b);
                }
                done += 1;
                if *status == Status::Failed {
                    failed += 1;
                }
            }
            _ => {}
        }
        for line in lines.of(&e) {
            let _ = multi.println(line);
        }
        if let Some(ask) = prompter.see(&e) {
            let _ = multi.println(ask);
        }
        if let Some(note) = prompter.not_by_yes(&e) {
            multi.suspend(|| eprintln!("{note}"));
        }
        let running = bars.len();
        let waiting = prompter.waiting.len();
        summary.set_message(format!(
            "{env_name}: {done}/{total} done, {running} running{}{}",
            if waiting > 0 { format!(", {waiting} waiting for approval") } else { String::new() },
            if failed > 0 { format!(", {failed} failed") } else { String::new() }
        ));
    }
    summary.finish_and_clear();
}

/// The gates the run waits at, oldest first, and (on a terminal) the
/// answers typed to approve or reject the oldest in place.
struct Prompter {
    run: String,
    steer: Steer,
    waiting: VecDeque<(String, Option<String>)>,
    answers: Option<mpsc::UnboundedReceiver<String>>,
    /// The run was started with `--yes`.
    yes: bool,
}

impl Prompter {
    fn new(interactive: bool, steer: Steer) -> Prompter {
        let answers = interactive.then(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            // A plain thread: a blocked read of stdin must not hold up the
            // runtime's shutdown when the run ends.
            let spawned = std::thread::Builder::new().name("stackpipe-stdin".into()).spawn(move || {
                let mut line = String::new();
                while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
                    if tx.send(std::mem::take(&mut line)).is_err() {
                        break;
                    }
                }
            });
            (spawned.is_ok(), rx)
        });
        let answers = answers.and_then(|(ok, rx)| ok.then_some(rx));
        Prompter { run: String::new(), steer, waiting: VecDeque::new(), answers, yes: false }
    }

    /// What the commands that steer the run need besides its id: ` --server URL` for a server's.
    fn via(&self) -> String {
        match &self.steer {
            Steer::Local(_) => String::new(),
            Steer::Server(client) => format!(" --server {}", client.url()),
        }
    }

    /// Keeps track of the gates; the question to ask, if any.
    fn see(&mut self, e: &RunEvent) -> Option<String> {
        match e {
            RunEvent::RunStarted { run, .. } => self.run = run.clone(),
            RunEvent::Waiting { environment, node, .. } => {
                self.waiting.push_back((environment.clone(), node.clone()));
                if self.waiting.len() == 1 {
                    return self.question();
                }
            }
            RunEvent::GateDecided { environment, node, .. } => {
                let was_first = self.waiting.front() == Some(&(environment.clone(), node.clone()));
                self.waiting.retain(|w| !(w.0 == *environment && w.1 == *node));
                if was_first {
                    return self.question();
                }
            }
            _ => {}
        }
        None
    }

    /// For a run started with `--yes`, at a gate a policy asked for: that
    /// `--yes` did not approve it, and how a person does.
    fn not_by_yes(&self, e: &RunEvent) -> Option<String> {
        let RunEvent::Waiting { environment, node, gate: GateKind::Policy, .. } = e else { return None };
        if !self.yes {
            return None;
        }
        let mut how = format!("stackpipe approve {} --env {environment}", self.run);
        if let Some(n) = node {
            how.push_str(&format!(" --node {n}"));
        }
        how.push_str(&self.via());
        let place = node.as_ref().map(|n| format!("{environment}/{n}")).unwrap_or_else(|| environment.clone());
        let here = if self.answers.is_some() { "answer here (y or n), or run" } else { "run" };
        Some(format!(
            "note: {place} waits for the approval a policy requires, which --yes does not give: a person decides. \
             To approve, {here} `{how}` (or `stackpipe reject ...`) from another terminal; the run waits until then."
        ))
    }

    fn question(&self) -> Option<String> {
        let (env, node) = self.waiting.front()?;
        let mut how = format!("stackpipe approve {} --env {env}", self.run);
        if let Some(n) = node {
            how.push_str(&format!(" --node {n}"));
        }
        how.push_str(&self.via());
        let place = node.as_ref().map(|n| format!("{env}/{n}")).unwrap_or_else(|| env.clone());
        Some(if self.answers.is_some() {
            format!("  ? approve {place}? type y (approve) or n (reject) and Enter; or from another terminal: {how}")
        } else {
            format!("  ? waiting for approval of {place}: {how}  (or: stackpipe reject ...)")
        })
    }

    async fn answer(&mut self) -> Option<String> {
        match &mut self.answers {
            Some(rx) => rx.recv().await,
            None => std::future::pending().await,
        }
    }

    /// Acts on a typed answer: y / n for the oldest waiting gate.
    async fn decide(&mut self, answer: String) -> String {
        let decision = match answer.trim().to_ascii_lowercase().as_str() {
            "y" | "yes" => Decision::Approved,
            "n" | "no" => Decision::Rejected,
            "" => return String::new(),
            other => return format!("  ? `{other}`: type y or n"),
        };
        let Some((env, node)) = self.waiting.front().cloned() else { return "  nothing is waiting for approval".into() };
        let request = Request::Decide {
            run: Some(self.run.clone()),
            selector: GateSelector { environment: Some(env), node, all: false },
            decision,
            comment: Some("answered at the running terminal".into()),
        };
        // Through our own control socket (or the server), like any other
        // terminal: the decision is recorded the same way, with the same user.
        let answer = match &self.steer {
            Steer::Local(slot) => {
                let Some(socket) = slot.get().cloned() else {
                    return "  cannot find this run's control socket".into();
                };
                tokio::task::spawn_blocking(move || ControlClient::new(socket).request(&request)).await
            }
            Steer::Server(client) => {
                let client = client.clone();
                tokio::task::spawn_blocking(move || client.request(&request)).await
            }
        };
        match answer {
            Ok(Ok(Ok(_))) => String::new(),
            Ok(Ok(Err(e))) => format!("  {e}"),
            Ok(Err(e)) => format!("  cannot reach the control socket: {e}"),
            Err(e) => format!("  {e}"),
        }
    }
}

/// The plain lines of events, with what plugins warned of about a node
/// (its log lines at `warn` and `error`) shown under the node's next line:
/// its result, the failure of an operation, or a gate it waits at.
#[derive(Default)]
struct Lines {
    warnings: HashMap<(String, String), Vec<String>>,
}

impl Lines {
    fn of(&mut self, e: &RunEvent) -> Vec<String> {
        if let RunEvent::Log { environment, node, text, level, plugin, .. } = e {
            if *level >= LogLevel::Warn {
                let what = if *level == LogLevel::Error { "error" } else { "warning" };
                let from = plugin.as_ref().map(|p| format!("{p}: ")).unwrap_or_default();
                self.warnings.entry((environment.clone(), node.clone())).or_default().push(format!("    {what}: {from}{text}"));
            }
            return Vec::new();
        }
        let mut shown: Vec<String> = plain_line(e).into_iter().collect();
        let about = match e {
            RunEvent::NodeFinished { environment, node, .. }
            | RunEvent::OpFinished { environment, node, status: Status::Failed, .. }
            | RunEvent::Waiting { environment, node: Some(node), .. } => Some((environment.clone(), node.clone())),
            _ => None,
        };
        if let Some(warned) = about.and_then(|k| self.warnings.remove(&k)) {
            shown.extend(warned);
        }
        if let RunEvent::RunFinished { .. } = e {
            // Any left (a node that never said how it ended): under its name.
            let mut left: Vec<_> = self.warnings.drain().collect();
            left.sort();
            for ((environment, node), warned) in left {
                shown.push(format!("  {environment}/{node}:"));
                shown.extend(warned);
            }
        }
        shown
    }
}

/// One event as a plain line; None for events shown only in JSON (and for
/// log lines: see [`Lines`]).
pub fn plain_line(e: &RunEvent) -> Option<String> {
    Some(match e {
        RunEvent::RunStarted { run, pipeline, operation, environments, nodes, targets, orphans } => {
            let mut aimed: String = targets.iter().map(|t| format!(" --target {t}")).collect();
            if *orphans {
                aimed.push_str(" --orphans");
            }
            // An aimed run takes a number of resources per environment, not one for the run.
            let count = if aimed.is_empty() { format!("{nodes} resources; ") } else { String::new() };
            format!("run {run}: {operation} {pipeline}{aimed} ({count}environments: {})", environments.join(" -> "))
        }
        RunEvent::EnvironmentStarted { environment, .. } => format!("\n[{environment}]"),
        RunEvent::OpStarted { .. } => return None,
        RunEvent::OpFinished { environment, node, op, status: Status::Failed, message, .. } => {
            format!("  {environment}/{node}: {op} failed: {}", message.clone().unwrap_or_default())
        }
        RunEvent::OpFinished { .. } => return None,
        RunEvent::NodeFinished { environment, node, status, change, ms, error } => match status {
            Status::Succeeded => format!(
                "  {environment}/{node}: {} ({})",
                change.clone().unwrap_or_else(|| "done".into()),
                duration(*ms)
            ),
            Status::Cancelled | Status::Skipped => {
                format!("  {environment}/{node}: {} ({})", status.name(), error.clone().unwrap_or_default())
            }
            _ => format!("  {environment}/{node}: {}", status.name()),
        },
        RunEvent::Log { .. } => return None,
        RunEvent::Waiting { environment, node, gate, reason, detail } => {
            let place = node.as_ref().map(|n| format!("{environment}/{n}")).unwrap_or_else(|| format!("[{environment}]"));
            let mut s = format!("  {place}: waiting for approval ({} gate): {reason}", gate.name());
            if let Some(d) = detail.as_ref().filter(|d| !d.is_empty()) {
                s.push('\n');
                s.push_str(d.trim_end());
            }
            s
        }
        RunEvent::GateDecided { environment, node, decision, by, comment, .. } => {
            let place = node.as_ref().map(|n| format!("{environment}/{n}")).unwrap_or_else(|| format!("[{environment}]"));
            format!("  {place}: {} by {by}{}", decision.name(), comment.as_ref().map(|c| format!(" ({c})")).unwrap_or_default())
        }
        RunEvent::EnvironmentFinished { environment, status, reason } => {
            format!("[{environment}] {}{}", status.name(), reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default())
        }
        RunEvent::RunFinished { .. } => return None,
    })
}

/// How long something took that started and finished; `-` if it did not.
pub fn took(started_ms: Option<u64>, finished_ms: Option<u64>) -> String {
    match (started_ms, finished_ms) {
        (Some(a), Some(b)) => duration(b.saturating_sub(a)),
        _ => "-".into(),
    }
}

pub fn duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(node: &str, level: LogLevel, plugin: Option<&str>, text: &str) -> RunEvent {
        RunEvent::Log {
            environment: "dev".into(),
            node: node.into(),
            op: "apply".into(),
            text: text.into(),
            level,
            plugin: plugin.map(str::to_string),
        }
    }

    fn finished(node: &str) -> RunEvent {
        RunEvent::NodeFinished {
            environment: "dev".into(),
            node: node.into(),
            status: Status::Succeeded,
            change: Some("create".into()),
            ms: 12,
            error: None,
        }
    }

    #[test]
    fn plugin_warnings_show_under_their_node_and_other_lines_not_at_all() {
        let mut lines = Lines::default();
        assert!(lines.of(&log("a", LogLevel::Warn, Some("local"), "careful")).is_empty());
        assert!(lines.of(&log("a", LogLevel::Info, Some("local"), "wrote it")).is_empty());
        assert!(lines.of(&log("b", LogLevel::Error, None, "broken")).is_empty());
        assert_eq!(lines.of(&finished("a")), ["  dev/a: create (12 ms)", "    warning: local: careful"]);
        assert_eq!(lines.of(&finished("a")), ["  dev/a: create (12 ms)"], "shown once");
        let failed = RunEvent::OpFinished {
            environment: "dev".into(),
            node: "b".into(),
            op: "apply".into(),
            status: Status::Failed,
            ms: 3,
            message: Some("no".into()),
        };
        assert_eq!(lines.of(&failed), ["  dev/b: apply failed: no", "    error: broken"]);
        assert!(lines.of(&log("c", LogLevel::Warn, Some("t"), "late")).is_empty());
        let end = RunEvent::RunFinished { run: "r1".into(), status: stackpipe_runtime::state::RunStatus::Succeeded, ms: 1 };
        assert_eq!(lines.of(&end), ["  dev/c:", "    warning: t: late"]);
    }
}
