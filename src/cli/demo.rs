//! `stigmer demo`: shows what stigmer is for in ten seconds. A simulated
//! agent streams model tokens and a tool call into an execution while the
//! same live transcript `subscribe` prints follows along. Uses the daemon on
//! the socket when one answers; otherwise starts a private one (this very
//! executable, in a temporary directory) and stops it afterwards.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime};

use stigmer_client::proto::agentexecution::{
    AgentExecutionStatus, AgentMessage, ExecutionPhase, MessageType, ToolCall, ToolCallStatus,
};
use stigmer_client::proto::wkt::{value::Kind, Struct, Value};
use stigmer_client::{Client, NewExecution};

use super::executions;
use super::style::Painter;
use super::watch::{self, WatchOptions};
use super::{CliError, Ctx, Output};

const PROMPT: &str = "What's the weather in Paris today, and do I need an umbrella?";
const THINKING: &str = "Let me check the current forecast for Paris.";
const ANSWER: &str = "It's 14°C and cloudy in Paris, with light rain expected from 4 pm. \
                      Yes: take an umbrella if you'll be out this afternoon.";
const TOOL_RESULT: &str = "14°C, cloudy; light rain from 16:00 (80%)";
/// Time between two model tokens.
const TOKEN_INTERVAL: Duration = Duration::from_millis(180);
/// How long a private daemon gets to answer its first ping.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs the demo; the exit status is `subscribe`'s.
pub(super) async fn run(ctx: Ctx) -> Result<ExitCode, CliError> {
    demo(&ctx).await
}

async fn demo(ctx: &Ctx) -> Result<ExitCode, CliError> {
    let socket = ctx.socket.as_path();
    let (client, daemon) = match existing_daemon(ctx).await {
        Some(client) => {
            eprintln!("(using the daemon at {})", socket.display());
            (client, None)
        }
        None => {
            // Starts a private daemon; fails if it does not answer in time.
            let daemon = PrivateDaemon::start().await?;
            eprintln!(
                "(no daemon at {}: started a temporary one at {})",
                socket.display(),
                daemon.socket.display()
            );
            // Connects to the daemon just started (it answered a ping).
            let private = Ctx {
                socket: daemon.socket.clone(),
                ..ctx.clone()
            };
            let client = executions::connect(&private).await?;
            (client, Some(daemon))
        }
    };
    let result = run_agent_and_watch(&client, Painter { on: ctx.color }).await;
    drop(client);
    if let Some(daemon) = daemon {
        // Waits for the private daemon to shut down cleanly.
        daemon.stop().await;
    }
    result
}

/// A client for the daemon on the socket, if one answers a ping (an
/// untrusted daemon is not used).
async fn existing_daemon(ctx: &Ctx) -> Option<Client> {
    // Fails at once when nothing listens, or when the listener is untrusted.
    let client = Client::connect_with(&ctx.socket, ctx.client_config())
        .await
        .ok()?;
    // A live daemon answers within milliseconds; a wedged one is ignored.
    match tokio::time::timeout(Duration::from_secs(2), client.ping()).await {
        Ok(Ok(_)) => Some(client),
        _ => None,
    }
}

async fn run_agent_and_watch(client: &Client, painter: Painter) -> Result<ExitCode, CliError> {
    let new = NewExecution::new("demo-agent", PROMPT).session_id("demo");
    // Waits until the execution is created.
    let (execution, _) = client.create(new).await?;
    let id = super::render::execution_id(&execution).to_string();

    let options = WatchOptions {
        output: Output::Text,
        timestamps: false,
        painter,
        notices: false,
    };
    let watcher = watch::watch(client, &id, None, options);
    tokio::pin!(watcher);
    // Runs the agent while the watcher prints; the watcher only ends early
    // on an error (the agent is what ends the execution).
    tokio::select! {
        // The watcher is polled first so its subscribe is sent before the
        // agent's first update: the transcript starts at the pending state.
        biased;
        early = &mut watcher => return early,
        agent = simulate_agent(client, &id) => {
            if let Err(e) = agent {
                return Err(e.into());
            }
        }
    }
    // Waits for the watcher to print the final events.
    watcher.await
}

fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

fn message(kind: MessageType, content: &str) -> AgentMessage {
    AgentMessage {
        r#type: kind as i32,
        content: content.to_string(),
        timestamp: now(),
        ..Default::default()
    }
}

fn weather_call(status: ToolCallStatus, started_at: &str) -> ToolCall {
    let mut fields = HashMap::new();
    fields.insert(
        "city".to_string(),
        Value {
            kind: Some(Kind::StringValue("Paris".into())),
        },
    );
    let done = status == ToolCallStatus::ToolCallCompleted;
    ToolCall {
        id: "call-weather-1".into(),
        name: "get_weather".into(),
        args: Some(Struct { fields }),
        result: if done {
            TOOL_RESULT.into()
        } else {
            String::new()
        },
        status: status as i32,
        started_at: started_at.to_string(),
        completed_at: if done { now() } else { String::new() },
        ..Default::default()
    }
}

/// The simulated runner: what an agent framework would send, compressed
/// into a few seconds.
async fn simulate_agent(client: &Client, id: &str) -> Result<(), stigmer_client::Error> {
    let mut messages = vec![message(MessageType::MessageHuman, PROMPT)];
    let update = |messages: &Vec<AgentMessage>, tools: Vec<ToolCall>, phase: ExecutionPhase| {
        AgentExecutionStatus {
            phase: phase as i32,
            messages: messages.clone(),
            tool_calls: tools,
            ..Default::default()
        }
    };
    let in_progress = ExecutionPhase::ExecutionInProgress;

    // The runner "starts up" first, so the transcript opens on the pending
    // snapshot.
    tokio::time::sleep(Duration::from_millis(800)).await;
    // Waits for each update to be committed, as a real runner would.
    client
        .update_status_ack(id, update(&messages, vec![], in_progress))
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;

    stream_tokens(client, id, &mut messages, THINKING).await?;

    let started = now();
    let running = weather_call(ToolCallStatus::ToolCallRunning, &started);
    if let Some(last) = messages.last_mut() {
        last.tool_calls = vec![running.clone()];
    }
    // Waits for the commit of the tool call's start.
    client
        .update_status_ack(id, update(&messages, vec![running], in_progress))
        .await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let done = weather_call(ToolCallStatus::ToolCallCompleted, &started);
    if let Some(last) = messages.last_mut() {
        last.tool_calls = vec![done.clone()];
    }
    messages.push(message(MessageType::MessageTool, TOOL_RESULT));
    // Waits for the commit of the tool call's result.
    client
        .update_status_ack(id, update(&messages, vec![done.clone()], in_progress))
        .await?;
    tokio::time::sleep(Duration::from_millis(400)).await;

    stream_tokens(client, id, &mut messages, ANSWER).await?;

    // Waits for the final, terminal commit; the watcher's stream ends on it.
    client
        .update_status_ack(
            id,
            update(&messages, vec![done], ExecutionPhase::ExecutionCompleted),
        )
        .await?;
    Ok(())
}

/// Streams `text` word by word into a new AI message, one `append` per
/// token at the message's length so far (safe to retry: the daemon never
/// applies a token twice).
async fn stream_tokens(
    client: &Client,
    id: &str,
    messages: &mut Vec<AgentMessage>,
    text: &str,
) -> Result<(), stigmer_client::Error> {
    let index = messages.len() as u32;
    messages.push(message(MessageType::MessageAi, ""));
    for token in text.split_inclusive(' ') {
        let Some(last) = messages.last_mut() else {
            break;
        };
        let offset = last.content.len() as u64;
        // Waits for the commit of this token.
        client.append_text(id, index, offset, token).await?;
        last.content.push_str(token);
        // Paces the tokens like a model would.
        tokio::time::sleep(TOKEN_INTERVAL).await;
    }
    Ok(())
}

/// A daemon this demo started: this executable's `daemon` command, with its
/// socket, database and log in a temporary directory removed afterwards.
struct PrivateDaemon {
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
}

impl PrivateDaemon {
    async fn start() -> Result<PrivateDaemon, CliError> {
        let exe = std::env::current_exe()
            .map_err(|e| CliError::Other(format!("cannot find the stigmer executable: {e}")))?;
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("stigmer-demo-{}-{nanos:x}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let socket = dir.join("s.sock");
        let log = std::fs::File::create(dir.join("daemon.log"))?;
        let log2 = log.try_clone()?;
        let child = std::process::Command::new(exe)
            .arg("--socket")
            .arg(&socket)
            .arg("daemon")
            .arg("--db")
            .arg(dir.join("db.sqlite"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(CliError::Other(format!("cannot start a daemon: {e}")));
            }
        };
        let mut daemon = PrivateDaemon { child, dir, socket };
        daemon.wait_ready().await?;
        Ok(daemon)
    }

    /// Polls until the daemon answers a ping, it exits, or time runs out.
    async fn wait_ready(&mut self) -> Result<(), CliError> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(client) = Client::connect(&self.socket).await {
                // Answers once the daemon is serving.
                if client.ping().await.is_ok() {
                    return Ok(());
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default();
                return Err(CliError::Other(format!(
                    "the temporary daemon exited ({status}):\n{log}"
                )));
            }
            if Instant::now() >= deadline {
                return Err(CliError::Other(format!(
                    "the temporary daemon did not answer within {START_TIMEOUT:?}"
                )));
            }
            // Polls again shortly: the daemon is still starting.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then wait (up to 5 s) for a clean exit; SIGKILL after that.
    async fn stop(mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            // Polls for the exit while the daemon drains.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for PrivateDaemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
