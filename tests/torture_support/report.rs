//! What the checker reports: each broken guarantee with the smallest trace
//! that shows it, and counts of what it looked at (the figures line).

/// A broken guarantee, with the smallest trace that shows it.
#[derive(Debug)]
pub struct Violation {
    pub what: String,
    pub trace: Vec<String>,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "VIOLATION: {}", self.what)?;
        for line in &self.trace {
            writeln!(f, "    {line}")?;
        }
        Ok(())
    }
}

/// Counts of what the checker looked at.
#[derive(Debug, Default)]
pub struct Checked {
    pub segments: u64,
    pub events: u64,
    pub resyncs: u64,
    pub resumed: u64,
    pub ends: u64,
    /// Delta streams: subscribe requests, DELTA events, resumes that
    /// skipped the initial state, and resumes that started with it.
    pub delta_segments: u64,
    pub deltas: u64,
    pub skipped: u64,
    pub initial_states: u64,
    /// Many-execution streams: subscribe requests (lists, resumes), events,
    /// DELTA events and progress bookmarks.
    pub watch_segments: u64,
    pub watch_lists: u64,
    pub watch_resumes: u64,
    pub watch_events: u64,
    pub watch_deltas: u64,
    pub watch_bookmarks: u64,
}
