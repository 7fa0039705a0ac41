//! `stigmer top`: a full-screen live table of executions, fed by the
//! client's resuming watch (every execution, or one session's) and drawn
//! with ratatui on crossterm, which redraws only what changed between
//! frames. This file holds the state, the keys and the event loop (redraw
//! on events, at most one frame per [`FRAME`]); top_view.rs draws.
//!
//! The terminal is restored on every way out: quitting, an error (the guard
//! is dropped before the error is printed) and a panic (ratatui's panic
//! hook restores before the message is shown).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crossterm::event::{
    Event as TermEvent, EventStream, KeyCode, KeyEvent, KeyEventKind, KeyModifiers,
};
use futures::StreamExt;
use stigmer_client::proto::agentexecution::ExecutionPhase;
use stigmer_client::{Cache, Notice, Selector, WatchEvent, WatchOptions};

use super::executions::connect;
use super::exit::CliError;
use super::{top_view, Ctx};

/// The shortest time between two frames: events that arrive faster are
/// drawn together.
const FRAME: Duration = Duration::from_millis(50);

/// What the table is sorted by (`s` cycles).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SortBy {
    /// The latest change, newest first.
    Updated,
    /// Creation time, newest first.
    Age,
    /// Phase, then newest change.
    Phase,
    /// Agent id.
    Agent,
    /// Session id.
    Session,
    /// Execution id (creation order, as ids are ULIDs).
    Id,
}

impl SortBy {
    pub(super) fn name(self) -> &'static str {
        match self {
            SortBy::Updated => "updated",
            SortBy::Age => "age",
            SortBy::Phase => "phase",
            SortBy::Agent => "agent",
            SortBy::Session => "session",
            SortBy::Id => "id",
        }
    }

    fn next(self) -> SortBy {
        match self {
            SortBy::Updated => SortBy::Age,
            SortBy::Age => SortBy::Phase,
            SortBy::Phase => SortBy::Agent,
            SortBy::Agent => SortBy::Session,
            SortBy::Session => SortBy::Id,
            SortBy::Id => SortBy::Updated,
        }
    }
}

/// The phase filter (`f` cycles): everything, the executions still
/// running, or one phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PhaseFilter {
    /// Every execution.
    All,
    /// Not in a terminal phase.
    Active,
    /// In this phase.
    Is(ExecutionPhase),
}

impl PhaseFilter {
    const CYCLE: [PhaseFilter; 10] = [
        PhaseFilter::All,
        PhaseFilter::Active,
        PhaseFilter::Is(ExecutionPhase::ExecutionPending),
        PhaseFilter::Is(ExecutionPhase::ExecutionInProgress),
        PhaseFilter::Is(ExecutionPhase::ExecutionWaitingForApproval),
        PhaseFilter::Is(ExecutionPhase::ExecutionPaused),
        PhaseFilter::Is(ExecutionPhase::ExecutionCompleted),
        PhaseFilter::Is(ExecutionPhase::ExecutionFailed),
        PhaseFilter::Is(ExecutionPhase::ExecutionCancelled),
        PhaseFilter::Is(ExecutionPhase::ExecutionTerminated),
    ];

    fn next(self) -> PhaseFilter {
        let i = Self::CYCLE.iter().position(|f| *f == self).unwrap_or(0);
        Self::CYCLE[(i + 1) % Self::CYCLE.len()]
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            PhaseFilter::All => "all",
            PhaseFilter::Active => "active",
            PhaseFilter::Is(p) => super::render::phase_name(p),
        }
    }

    pub(super) fn matches(self, phase: ExecutionPhase) -> bool {
        match self {
            PhaseFilter::All => true,
            PhaseFilter::Active => !matches!(
                phase,
                ExecutionPhase::ExecutionCompleted
                    | ExecutionPhase::ExecutionFailed
                    | ExecutionPhase::ExecutionCancelled
                    | ExecutionPhase::ExecutionTerminated
            ),
            PhaseFilter::Is(p) => phase == p,
        }
    }
}

/// The connection, as the status line tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Link {
    /// Receiving the initial list.
    Listing,
    /// Following changes.
    Live,
    /// The daemon went away; the watch is reconnecting.
    Reconnecting(String),
}

/// Which screen is shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum View {
    /// The table.
    Table,
    /// One execution's live transcript, scrolled `back` lines up from its
    /// end (0: following the end).
    Transcript { id: String, back: usize },
}

/// Everything the screen shows besides the cache.
#[derive(Debug)]
pub(super) struct App {
    /// `--session`, fixed for the run.
    pub session: Option<String>,
    /// Colour (NO_COLOR, --color).
    pub color: bool,
    pub sort: SortBy,
    /// Sort the other way round (`r`).
    pub reverse: bool,
    pub phase_filter: PhaseFilter,
    /// Only sessions containing this text (`/`).
    pub session_filter: String,
    /// The filter being typed after `/`, until Enter or Esc.
    pub typing: Option<String>,
    /// The selected execution (kept across re-sorting).
    pub selected: Option<String>,
    /// The ids in the order last drawn, for moving the selection.
    pub visible: Vec<String>,
    /// Rows of the table last drawn, for paging.
    pub page: usize,
    pub view: View,
    pub link: Link,
    /// The watch's last revision.
    pub revision: Option<u64>,
}

/// What a key asks for.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    Quit,
    Redraw,
    Nothing,
}

impl App {
    pub(super) fn new(session: Option<String>, color: bool) -> Self {
        App {
            session,
            color,
            sort: SortBy::Updated,
            reverse: false,
            phase_filter: PhaseFilter::All,
            session_filter: String::new(),
            typing: None,
            selected: None,
            visible: Vec::new(),
            page: 10,
            view: View::Table,
            link: Link::Listing,
            revision: None,
        }
    }

    fn on_watch(&mut self, event: &WatchEvent, cache: &Cache) {
        match event {
            WatchEvent::Resync { .. } => self.link = Link::Listing,
            WatchEvent::Bookmark {
                initial_events_end: true,
                ..
            } => self.link = Link::Live,
            _ if self.link != Link::Listing || cache.is_complete() => self.link = Link::Live,
            _ => {}
        }
        self.revision = Some(event.revision());
    }

    fn on_notice(&mut self, notice: &Notice) {
        self.link = match notice {
            Notice::Reconnecting { reason, .. } => Link::Reconnecting(reason.clone()),
            Notice::Resumed { .. } => Link::Live,
        };
    }

    fn on_key(&mut self, key: KeyEvent) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::Nothing;
        }
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Action::Quit;
        }
        if let Some(text) = self.typing.as_mut() {
            match key.code {
                KeyCode::Enter => {
                    self.session_filter = self.typing.take().unwrap_or_default();
                }
                KeyCode::Esc => self.typing = None,
                KeyCode::Backspace => {
                    text.pop();
                }
                KeyCode::Char(c) => text.push(c),
                _ => return Action::Nothing,
            }
            return Action::Redraw;
        }
        if let View::Transcript { back, .. } = &mut self.view {
            match key.code {
                KeyCode::Esc | KeyCode::Char('q') | KeyCode::Backspace | KeyCode::Left => {
                    self.view = View::Table
                }
                KeyCode::Up | KeyCode::Char('k') => *back += 1,
                KeyCode::Down | KeyCode::Char('j') => *back = back.saturating_sub(1),
                KeyCode::PageUp => *back += self.page,
                KeyCode::PageDown => *back = back.saturating_sub(self.page),
                KeyCode::Home | KeyCode::Char('g') => *back = usize::MAX / 2,
                KeyCode::End | KeyCode::Char('G') => *back = 0,
                _ => return Action::Nothing,
            }
            return Action::Redraw;
        }
        match key.code {
            KeyCode::Char('q') => return Action::Quit,
            KeyCode::Esc if !self.session_filter.is_empty() => self.session_filter.clear(),
            KeyCode::Up | KeyCode::Char('k') => self.move_by(-1),
            KeyCode::Down | KeyCode::Char('j') => self.move_by(1),
            KeyCode::PageUp => self.move_by(-(self.page as isize)),
            KeyCode::PageDown => self.move_by(self.page as isize),
            KeyCode::Home | KeyCode::Char('g') => self.move_by(isize::MIN / 2),
            KeyCode::End | KeyCode::Char('G') => self.move_by(isize::MAX / 2),
            KeyCode::Enter => match self.selected.clone() {
                Some(id) => self.view = View::Transcript { id, back: 0 },
                None => return Action::Nothing,
            },
            KeyCode::Char('s') => self.sort = self.sort.next(),
            KeyCode::Char('r') => self.reverse = !self.reverse,
            KeyCode::Char('f') => self.phase_filter = self.phase_filter.next(),
            KeyCode::Char('/') => self.typing = Some(self.session_filter.clone()),
            _ => return Action::Nothing,
        }
        Action::Redraw
    }

    /// Moves the selection `by` rows in the order last drawn.
    fn move_by(&mut self, by: isize) {
        if self.visible.is_empty() {
            return;
        }
        let at = self
            .selected
            .as_ref()
            .and_then(|id| self.visible.iter().position(|v| v == id))
            .unwrap_or(0);
        let last = self.visible.len() - 1;
        let to = (at as isize).saturating_add(by).clamp(0, last as isize) as usize;
        self.selected = self.visible.get(to).cloned();
    }
}

/// The terminal in full-screen mode; restored when dropped.
struct Screen {
    terminal: ratatui::DefaultTerminal,
}

impl Screen {
    fn enter() -> Result<Screen, CliError> {
        // Raw mode, the alternate screen, and a panic hook that restores
        // the terminal before the panic message is printed.
        let terminal = ratatui::try_init()
            .map_err(|e| CliError::Other(format!("cannot set up the terminal: {e}")))?;
        Ok(Screen { terminal })
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Runs `stigmer top` until `q` (status 0), or until the watch fails
/// (its error's status, printed once the terminal is restored).
pub(super) async fn run(ctx: Ctx, session: Option<String>) -> Result<ExitCode, CliError> {
    if !std::io::stdout().is_terminal() {
        return Err(CliError::Usage(
            "`stigmer top` draws on a terminal; for a stream of changes use \
             `stigmer executions watch`"
                .into(),
        ));
    }
    // Connects before taking the screen, so a missing daemon is reported
    // as for any command; after that the watch reconnects forever and the
    // status line says so.
    let client = connect(&ctx).await?;
    let selector = match &session {
        Some(s) => Selector::session(s.clone()),
        None => Selector::All,
    };
    let (tx, mut notices) = tokio::sync::mpsc::unbounded_channel::<Notice>();
    // Sends the subscribe; INVALID_ARGUMENT arrives as the first item.
    let mut watch = client
        .watch(selector, WatchOptions::default())
        .await?
        .on_notice(move |n| {
            let _ = tx.send(n.clone());
        });
    let mut app = App::new(session, ctx.color);
    let mut screen = Screen::enter()?;
    let mut keys = EventStream::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut dirty = true;
    let mut last_draw: Option<Instant> = None;
    loop {
        if dirty && last_draw.is_none_or(|t| t.elapsed() >= FRAME) {
            screen
                .terminal
                .draw(|frame| top_view::draw(frame, &mut app, watch.cache()))?;
            last_draw = Some(Instant::now());
            dirty = false;
        }
        let next_frame =
            tokio::time::Instant::from_std(last_draw.map_or_else(Instant::now, |t| t + FRAME));
        tokio::select! {
            // Waits for the watch's next event (it reconnects by itself).
            event = watch.next() => match event {
                Some(Ok(event)) => {
                    app.on_watch(&event, watch.cache());
                    dirty = true;
                }
                Some(Err(e)) => return Err(e.into()),
                None => return Err(CliError::Other("the daemon ended the watch".into())),
            },
            // Waits for a key or a resize.
            input = keys.next() => match input {
                Some(Ok(TermEvent::Key(key))) => match app.on_key(key) {
                    Action::Quit => return Ok(ExitCode::SUCCESS),
                    Action::Redraw => dirty = true,
                    Action::Nothing => {}
                },
                Some(Ok(TermEvent::Resize(..))) => dirty = true,
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => return Ok(ExitCode::SUCCESS),
            },
            Some(notice) = notices.recv() => {
                app.on_notice(&notice);
                dirty = true;
            }
            // Ages move on: one redraw a second.
            _ = tick.tick() => dirty = true,
            // Events came faster than frames: draw what they left.
            () = tokio::time::sleep_until(next_frame), if dirty => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    #[test]
    fn keys_move_sort_filter_open_and_quit() {
        let mut app = App::new(None, false);
        app.visible = vec!["a".into(), "b".into(), "c".into()];
        assert_eq!(app.on_key(key(KeyCode::Down)), Action::Redraw);
        assert_eq!(app.selected.as_deref(), Some("b"));
        app.on_key(key(KeyCode::End));
        assert_eq!(app.selected.as_deref(), Some("c"));
        app.on_key(key(KeyCode::Char('k')));
        assert_eq!(app.selected.as_deref(), Some("b"));
        app.on_key(key(KeyCode::Char('s')));
        assert_eq!(app.sort, SortBy::Age);
        app.on_key(key(KeyCode::Char('f')));
        assert_eq!(app.phase_filter, PhaseFilter::Active);
        for c in ['/', 's', '1', '\n'] {
            let code = if c == '\n' {
                KeyCode::Enter
            } else {
                KeyCode::Char(c)
            };
            app.on_key(key(code));
        }
        assert_eq!(app.session_filter, "s1");
        assert!(app.typing.is_none());
        app.on_key(key(KeyCode::Enter));
        assert_eq!(
            app.view,
            View::Transcript {
                id: "b".into(),
                back: 0
            }
        );
        // q in the transcript goes back; q in the table quits.
        assert_eq!(app.on_key(key(KeyCode::Char('q'))), Action::Redraw);
        assert_eq!(app.view, View::Table);
        assert_eq!(app.on_key(key(KeyCode::Char('q'))), Action::Quit);
    }

    #[test]
    fn phase_filters_cycle_back_to_all() {
        let mut f = PhaseFilter::All;
        for _ in 0..PhaseFilter::CYCLE.len() {
            f = f.next();
        }
        assert_eq!(f, PhaseFilter::All);
        assert!(PhaseFilter::Active.matches(ExecutionPhase::ExecutionPaused));
        assert!(!PhaseFilter::Active.matches(ExecutionPhase::ExecutionFailed));
    }
}
