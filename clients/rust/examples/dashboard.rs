//! A tiny dashboard on `Client::watch`: follows every execution of a
//! session (or of the machine) and, after each change, prints how many
//! executions are in each phase, read from the watch's cache.
//!
//! `cargo run -p stigmer-client --example dashboard -- [SESSION]`

use std::collections::BTreeMap;

use futures::StreamExt;
use stigmer_client::{Client, Selector, WatchEvent, WatchOptions};

#[tokio::main]
async fn main() -> stigmer_client::Result<()> {
    let selector = match std::env::args().nth(1) {
        Some(session) => Selector::session(session),
        None => Selector::All,
    };
    let client = Client::connect_default().await?;
    let mut watch = client
        .watch(selector, WatchOptions::default())
        .await?
        .on_notice(|n| eprintln!("{n:?}"));
    while let Some(event) = watch.next().await {
        let event = event?;
        // Redraw once the list is whole, then on every change.
        if matches!(event, WatchEvent::Snapshot { .. }) {
            continue;
        }
        let mut phases: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, cached) in watch.cache().iter() {
            let phase = cached.execution.status.as_ref().map(|s| s.phase());
            let name = phase.map_or("UNSPECIFIED", |p| p.as_str_name());
            *phases.entry(name).or_default() += 1;
        }
        println!(
            "revision {:>6} ({}): {} executions {phases:?}",
            event.revision(),
            event.kind(),
            watch.cache().len()
        );
    }
    Ok(())
}
