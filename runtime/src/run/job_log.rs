//! A stack job's log: stackpipe's own lines about the job, and the lines
//! its plugins log while it runs (its provisioner's, and those of the
//! credentials resolver and the policies it calls), each tagged with the
//! operation in flight and its level, with the run's secrets redacted. Every
//! line is an event; in a run that records, it is also kept in the state
//! (through the journal), for `stackpipe logs`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::env_run::EnvRun;
use super::events::RunEvent;
use crate::plugin::{CallContext, PluginLine, PluginLog, PluginLogSink};
use crate::state::{now_ms, LogLevel, LogLine, Write};

/// The most lines a job keeps from its plugins: a plugin that logs in a loop
/// must not fill the state. The rest go to tracing only (`STACKPIPE_LOG=debug`).
pub const MAX_PLUGIN_LINES: usize = 1000;

pub struct JobLog {
    env: Arc<EnvRun>,
    node: String,
    /// The operation in flight, which plugin lines are tagged with.
    op: Mutex<&'static str>,
    /// Plugin lines so far.
    plugin_lines: AtomicUsize,
}

impl JobLog {
    pub fn new(env: Arc<EnvRun>, node: String) -> Arc<JobLog> {
        Arc::new(JobLog { env, node, op: Mutex::new("preflight"), plugin_lines: AtomicUsize::new(0) })
    }

    /// `op` has started: what plugins log from now on is about it.
    pub fn begin(&self, op: &'static str) {
        *self.op.lock().unwrap_or_else(|p| p.into_inner()) = op;
    }

    fn op(&self) -> &'static str {
        *self.op.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The context of the job's plugin calls: their lines come here.
    pub fn context(self: &Arc<Self>) -> CallContext {
        CallContext { log: self.plugin_log(), ..self.env.context(&self.node) }
    }

    pub fn plugin_log(self: &Arc<Self>) -> PluginLog {
        PluginLog::to(self.clone())
    }

    /// A line of stackpipe's own about `op`.
    pub fn host(&self, op: &'static str, text: String) {
        self.write(op, LogLevel::Info, None, text);
    }

    fn write(&self, op: &'static str, level: LogLevel, plugin: Option<&str>, text: String) {
        let env = &self.env;
        let text = env.secrets.redact(&text);
        env.run.events.send_with(|| RunEvent::Log {
            environment: env.plan.name.clone(),
            node: self.node.clone(),
            op: op.into(),
            text: text.clone(),
            level,
            plugin: plugin.map(str::to_string),
        });
        if env.run.mode.records() {
            let line = LogLine {
                ms: now_ms(),
                environment: env.plan.name.clone(),
                node: self.node.clone(),
                op: op.into(),
                text,
                level,
                plugin: plugin.map(str::to_string),
            };
            env.run.journal.record(Write::Log(line, env.run.id.clone()));
        }
    }
}

impl PluginLogSink for JobLog {
    fn line(&self, line: PluginLine) {
        let op = self.op();
        let n = self.plugin_lines.fetch_add(1, Ordering::Relaxed);
        if n < MAX_PLUGIN_LINES {
            self.write(op, line.level, Some(&line.plugin), line.message);
        } else if n == MAX_PLUGIN_LINES {
            let text = format!(
                "plugin `{}` logged more than {MAX_PLUGIN_LINES} lines in this job: the rest are not kept \
                 (STACKPIPE_LOG=debug shows every line on stderr)",
                line.plugin
            );
            self.write(op, LogLevel::Warn, None, text);
        }
    }
}
