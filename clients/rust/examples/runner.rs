//! A runner that streams a model's tokens into an execution with appends,
//! then completes it (the README's example). Run a daemon first, then:
//! `cargo run -p stigmer-client --example runner`.

use stigmer_client::proto::agentexecution::{AgentExecutionStatus, ExecutionPhase};
use stigmer_client::{Client, NewExecution};

#[tokio::main]
async fn main() -> stigmer_client::Result<()> {
    let client = Client::connect_default().await?;
    let (execution, _) = client
        .create(NewExecution::new("coder", "fix the build"))
        .await?;
    let id = execution.metadata.map(|m| m.id).unwrap_or_default();
    let mut said = 0u64;
    for token in ["Looking ", "at ", "the ", "logs"] {
        // Message 0 is created by the first append; each token goes at the
        // end of what it holds (a retry of the same append is harmless).
        client.append_text(&id, 0, said, token).await?;
        said += token.len() as u64;
    }
    let done = AgentExecutionStatus {
        phase: ExecutionPhase::ExecutionCompleted as i32,
        ..Default::default()
    };
    let revision = client.update_status_ack(&id, done).await?;
    println!("{id} completed at revision {revision}");
    Ok(())
}
