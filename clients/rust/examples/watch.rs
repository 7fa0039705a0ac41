//! Watches one execution and prints each event as it arrives — the smallest
//! useful stigmer watcher, and a live check that subscriptions resume when
//! the daemon restarts (restart it while this runs: the revisions continue
//! without a gap or a repeat).
//!
//! Run: `cargo run -p stigmer-client --example watch -- <execution-id> [from-revision]`
//! (the socket is `$STIGMER_SOCKET`, else the default path).

use std::process::ExitCode;

use futures::StreamExt;
use stigmer_client::{end_reason_name, Client, Event};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(id) = args.next() else {
        eprintln!("usage: watch <execution-id> [from-revision]");
        return ExitCode::from(2);
    };
    let from = match args.next().map(|s| s.parse::<u64>()) {
        None => None,
        Some(Ok(r)) => Some(r),
        Some(Err(e)) => {
            eprintln!("bad revision: {e}");
            return ExitCode::from(2);
        }
    };
    match watch(&id, from).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn watch(id: &str, from: Option<u64>) -> stigmer_client::Result<()> {
    // Fails when no daemon listens on the socket.
    let client = Client::connect_default().await?;
    // Sends the subscribe; errors such as NOT_FOUND arrive as the first item.
    let mut events = client.subscribe(id, from).await?;
    // Waits for each event; reconnects by itself if the daemon restarts.
    while let Some(event) = events.next().await {
        match event? {
            Event::End {
                revision, reason, ..
            } => {
                println!("#{revision} end ({})", end_reason_name(reason));
            }
            event => {
                let status = event
                    .execution()
                    .and_then(|e| e.status.as_ref())
                    .cloned()
                    .unwrap_or_default();
                let phase = status.phase().as_str_name();
                let last = status
                    .messages
                    .last()
                    .map(|m| m.content.as_str())
                    .unwrap_or("");
                println!(
                    "#{} {} {} messages={} tool_calls={} last={:?}",
                    event.revision(),
                    event.kind(),
                    phase,
                    status.messages.len(),
                    status.tool_calls.len(),
                    last
                );
            }
        }
    }
    Ok(())
}
