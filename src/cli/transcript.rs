//! The live transcript of `subscribe` (and `demo`): each change printed as
//! what it added to the previous state (new messages, the next tokens of the
//! open message, tool calls, todos, the phase), so tokens appear as they
//! arrive and nothing is reprinted.

use std::io::{self, Write};

use stigmer_client::proto::agentexecution::{
    AgentExecution, AgentExecutionStatus, AgentMessage, ToolCall,
};
use stigmer_client::{end_reason_name, Event};

use super::render::{
    all_tool_calls, args_text, execution_id, message_label, message_style, one_line, phase_name,
    todo_status_name, tool_status_name, updated_at_text,
};
use super::style::{phase_style, Painter, Style};

/// The live transcript of `subscribe -o text` (and `demo`): prints, for each
/// event, only what changed since the previous one: phase changes, new
/// messages, the new suffix of a growing message (streamed tokens, on the
/// same line), tool calls as they appear or change status, errors, todos.
pub(super) struct Transcript<W: Write> {
    out: W,
    prev: AgentExecutionStatus,
    /// The index of the message whose text is on the open (unterminated)
    /// line, so its next tokens continue it.
    open_message: Option<usize>,
    started: bool,
    painter: Painter,
    /// `--timestamps`: prefix each line with its change's commit time.
    timestamps: bool,
    /// The prefix of lines printed for the current event.
    prefix: String,
}

impl<W: Write> Transcript<W> {
    /// A transcript written to `out`.
    pub(super) fn new(out: W) -> Self {
        Transcript {
            out,
            prev: AgentExecutionStatus::default(),
            open_message: None,
            started: false,
            painter: Painter { on: false },
            timestamps: false,
            prefix: String::new(),
        }
    }

    /// Colours the transcript (for a terminal).
    pub(super) fn painted(mut self, painter: Painter) -> Self {
        self.painter = painter;
        self
    }

    /// Prefixes each line with the commit time of the change it shows.
    pub(super) fn with_timestamps(mut self, on: bool) -> Self {
        self.timestamps = on;
        self
    }

    /// Starts a new line: its timestamp, if asked for.
    fn begin(&mut self) -> io::Result<()> {
        self.close_line()?;
        if !self.prefix.is_empty() {
            let prefix = self.painter.paint(Style::Dim, &self.prefix);
            write!(self.out, "{prefix} ")?;
        }
        Ok(())
    }

    /// Ends the open line, if any, so the next output starts on its own.
    fn close_line(&mut self) -> io::Result<()> {
        if self.open_message.take().is_some() {
            writeln!(self.out)?;
        }
        Ok(())
    }

    fn line(&mut self, text: &str) -> io::Result<()> {
        self.begin()?;
        writeln!(self.out, "{text}")
    }

    fn label(&self, message_type: i32) -> String {
        self.painter
            .paint(message_style(message_type), message_label(message_type))
    }

    /// Prints what `ev` changes and flushes.
    pub(super) fn event(&mut self, ev: &Event) -> io::Result<()> {
        if self.timestamps {
            self.prefix = match ev.execution() {
                Some(e) => updated_at_text(e).unwrap_or_else(|| "-".into()),
                // END is not a change: its line has no commit time.
                None => String::new(),
            };
        }
        match ev {
            Event::Snapshot {
                revision,
                execution,
            }
            | Event::Update {
                revision,
                execution,
            } => {
                if !self.started {
                    self.header(execution, *revision)?;
                }
                self.diff(execution)?;
            }
            Event::Delta {
                revision,
                execution,
                ..
            } => {
                if !self.started {
                    self.header(execution, *revision)?;
                }
                self.diff(execution)?;
            }
            Event::Resync {
                revision,
                execution,
            } => {
                if !self.started {
                    self.header(execution, *revision)?;
                } else {
                    let text =
                        format!("-- resync at revision {revision}: some changes were skipped");
                    let text = self.painter.paint(Style::Yellow, &text);
                    self.line(&text)?;
                }
                self.diff(execution)?;
            }
            Event::End {
                revision,
                reason,
                message,
            } => {
                let detail = if message.is_empty() {
                    String::new()
                } else {
                    format!(" ({message})")
                };
                let text = format!(
                    "-- end: {} at revision {revision}{detail}",
                    end_reason_name(*reason)
                );
                let text = self.painter.paint(Style::Bold, &text);
                self.line(&text)?;
            }
        }
        self.out.flush()
    }

    fn header(&mut self, e: &AgentExecution, revision: u64) -> io::Result<()> {
        self.started = true;
        let spec = e.spec.clone().unwrap_or_default();
        let session = if spec.session_id.is_empty() {
            String::new()
        } else {
            format!(", session {}", spec.session_id)
        };
        let text = format!(
            "-- {} (agent {}{session}) at revision {revision}",
            execution_id(e),
            spec.agent_id
        );
        let text = self.painter.paint(Style::Bold, &text);
        self.line(&text)?;
        let label = self.painter.paint(Style::Bold, "prompt:");
        self.line(&format!("{label} {}", spec.message))
    }

    fn diff(&mut self, e: &AgentExecution) -> io::Result<()> {
        let new = e.status.clone().unwrap_or_default();
        let old = std::mem::take(&mut self.prev);

        if new.phase != old.phase {
            let phase = new.phase();
            let name = self.painter.paint(phase_style(phase), phase_name(phase));
            self.line(&format!("[phase] {name}"))?;
        }

        for (i, msg) in new.messages.iter().enumerate() {
            match old.messages.get(i) {
                None => self.new_message(i, msg)?,
                Some(before) if before == msg => {}
                Some(before)
                    if before.r#type == msg.r#type && msg.content.starts_with(&before.content) =>
                {
                    let suffix = &msg.content[before.content.len()..];
                    if !suffix.is_empty() {
                        if self.open_message == Some(i) {
                            write!(self.out, "{suffix}")?;
                        } else {
                            self.begin()?;
                            let label = self.label(msg.r#type);
                            write!(self.out, "{label} (cont.): {suffix}")?;
                            self.open_message = Some(i);
                        }
                    }
                }
                Some(before) if before.content != msg.content || before.r#type != msg.r#type => {
                    self.begin()?;
                    let label = self.label(msg.r#type);
                    write!(self.out, "{label} (edited): {}", msg.content)?;
                    self.open_message = Some(i);
                }
                Some(_) => {}
            }
        }

        let old_tools: std::collections::HashMap<&str, &ToolCall> = all_tool_calls(&old)
            .into_iter()
            .map(|t| {
                (
                    if t.id.is_empty() {
                        t.name.as_str()
                    } else {
                        t.id.as_str()
                    },
                    t,
                )
            })
            .collect();
        for tc in all_tool_calls(&new) {
            let key = if tc.id.is_empty() {
                tc.name.as_str()
            } else {
                tc.id.as_str()
            };
            let changed = match old_tools.get(key) {
                None => true,
                Some(before) => before.status != tc.status || before.error != tc.error,
            };
            if changed {
                let mut text = format!(
                    "[tool] {}{} {}",
                    tc.name,
                    match args_text(tc) {
                        a if a.is_empty() => String::new(),
                        a => format!(" {a}"),
                    },
                    tool_status_name(tc.status)
                );
                if !tc.result.is_empty() {
                    text.push_str(&format!(": {}", one_line(&tc.result, 100)));
                }
                if !tc.error.is_empty() {
                    text.push_str(&format!(" (error: {})", tc.error));
                }
                let text = text.replacen("[tool]", &self.painter.paint(Style::Yellow, "[tool]"), 1);
                self.line(&text)?;
            }
        }

        for (key, todo) in &new.todos {
            let changed = match old.todos.get(key) {
                None => true,
                Some(before) => before.status != todo.status || before.content != todo.content,
            };
            if changed {
                self.line(&format!(
                    "[todo] {}: {}",
                    todo.content,
                    todo_status_name(todo.status)
                ))?;
            }
        }

        if !new.error.is_empty() && new.error != old.error {
            let text = self
                .painter
                .paint(Style::Red, &format!("[error] {}", new.error));
            self.line(&text)?;
        }

        self.prev = new;
        Ok(())
    }

    fn new_message(&mut self, i: usize, msg: &AgentMessage) -> io::Result<()> {
        self.begin()?;
        let label = self.label(msg.r#type);
        write!(self.out, "{label}: {}", msg.content)?;
        self.open_message = Some(i);
        Ok(())
    }

    /// Terminates the open line (at the end of the stream).
    pub(super) fn finish(&mut self) -> io::Result<()> {
        self.close_line()?;
        self.out.flush()
    }
}
