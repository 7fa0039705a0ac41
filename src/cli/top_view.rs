//! How `stigmer top` looks: the status line, the table of executions (its
//! columns shrink, then hide, to fit the width, down to 80 columns and
//! below), the live transcript of one execution, and the help footer.
//! Colour only when the CLI would colour (`--color`, NO_COLOR); the
//! selection is shown in reverse video, which is not colour.

use std::sync::Arc;
use std::time::SystemTime;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState};
use ratatui::Frame;
use stigmer_client::proto::agentexecution::{
    AgentExecution, AgentExecutionSpec, AgentExecutionStatus, ExecutionPhase,
};
use stigmer_client::Cache;
use unicode_width::UnicodeWidthChar;

use super::render;
use super::top::{App, Link, SortBy, View};

/// A column of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Column {
    Id,
    Agent,
    Session,
    Phase,
    Age,
    Updated,
    Messages,
    Text,
}

impl Column {
    fn title(self) -> &'static str {
        match self {
            Column::Id => "ID",
            Column::Agent => "AGENT",
            Column::Session => "SESSION",
            Column::Phase => "PHASE",
            Column::Age => "AGE",
            Column::Updated => "UPDATED",
            Column::Messages => "MSGS",
            Column::Text => "LATEST",
        }
    }

    /// The width it needs (Text takes what is left, at least this).
    fn width(self) -> u16 {
        match self {
            Column::Id => 30,
            Column::Agent => 10,
            Column::Session => 12,
            Column::Phase => 11,
            Column::Age => 5,
            Column::Updated => 7,
            Column::Messages => 4,
            Column::Text => 12,
        }
    }
}

/// Columns in the order they are dropped last to first when the width is
/// short.
const PRIORITY: [Column; 8] = [
    Column::Id,
    Column::Phase,
    Column::Text,
    Column::Agent,
    Column::Age,
    Column::Updated,
    Column::Session,
    Column::Messages,
];

/// Columns in the order they are shown.
const ORDER: [Column; 8] = [
    Column::Id,
    Column::Agent,
    Column::Session,
    Column::Phase,
    Column::Age,
    Column::Updated,
    Column::Messages,
    Column::Text,
];

/// The columns that fit in `width` (one space between columns); the
/// session column is left out for a one-session view, where it is in the
/// title.
fn columns(width: u16, one_session: bool) -> Vec<Column> {
    let mut used = 0u16;
    let mut chosen = Vec::new();
    for c in PRIORITY {
        if c == Column::Session && one_session {
            continue;
        }
        let need = c.width() + u16::from(!chosen.is_empty());
        if chosen.is_empty() || used + need <= width {
            used += need;
            chosen.push(c);
        }
    }
    ORDER.into_iter().filter(|c| chosen.contains(c)).collect()
}

/// The CLI's phase name, shortened to fit the phase column.
fn phase_label(phase: ExecutionPhase) -> &'static str {
    match phase {
        ExecutionPhase::ExecutionWaitingForApproval => "waiting",
        ExecutionPhase::Unspecified => "-",
        p => render::phase_name(p),
    }
}

fn phase_color(phase: ExecutionPhase) -> Color {
    match phase {
        ExecutionPhase::ExecutionCompleted => Color::Green,
        ExecutionPhase::ExecutionFailed => Color::Red,
        ExecutionPhase::ExecutionCancelled | ExecutionPhase::ExecutionTerminated => Color::Magenta,
        ExecutionPhase::ExecutionInProgress => Color::Yellow,
        _ => Color::Cyan,
    }
}

/// `style` with colour `c`, when colour is on.
fn tint(app: &App, style: Style, c: Color) -> Style {
    if app.color {
        style.fg(c)
    } else {
        style
    }
}

/// Draws the whole screen.
pub(super) fn draw(frame: &mut Frame<'_>, app: &mut App, cache: &Cache) {
    let [status, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let rows = visible(app, cache);
    app.visible = rows.iter().map(|(id, _)| id.clone()).collect();
    if app
        .selected
        .as_ref()
        .is_none_or(|s| !app.visible.contains(s))
    {
        app.selected = app.visible.first().cloned();
    }
    frame.render_widget(
        Paragraph::new(status_line(app, rows.len(), cache.len())),
        status,
    );
    match app.view.clone() {
        View::Table => draw_table(frame, app, &rows, body),
        View::Transcript { id, back } => {
            let clamped = draw_transcript(frame, app, cache.get(&id), &id, back, body);
            if let View::Transcript { back, .. } = &mut app.view {
                *back = clamped;
            }
        }
    }
    frame.render_widget(Paragraph::new(help_line(app)), footer);
}

fn agent_of(e: &AgentExecution) -> &str {
    e.spec.as_ref().map_or("", |s| s.agent_id.as_str())
}

fn session_of(e: &AgentExecution) -> &str {
    e.spec.as_ref().map_or("", |s| s.session_id.as_str())
}

/// The executions that pass the filters, sorted.
fn visible(app: &App, cache: &Cache) -> Vec<(String, Arc<AgentExecution>)> {
    let mut rows: Vec<(String, Arc<AgentExecution>)> = cache
        .iter()
        .filter(|(_, c)| {
            app.phase_filter
                .matches(render::execution_phase(&c.execution))
        })
        .filter(|(_, c)| {
            app.session_filter.is_empty()
                || c.execution
                    .spec
                    .as_ref()
                    .is_some_and(|s| s.session_id.contains(&app.session_filter))
        })
        .map(|(id, c)| (id.to_string(), c.execution.clone()))
        .collect();
    rows.sort_by(|(a_id, a), (b_id, b)| {
        let newest = |x: Option<SystemTime>, y: Option<SystemTime>| y.cmp(&x);
        let order = match app.sort {
            SortBy::Updated => newest(render::updated_at(a), render::updated_at(b)),
            SortBy::Age => newest(render::created_at(a), render::created_at(b)),
            SortBy::Phase => (render::execution_phase(a) as i32)
                .cmp(&(render::execution_phase(b) as i32))
                .then_with(|| newest(render::updated_at(a), render::updated_at(b))),
            SortBy::Agent => agent_of(a).cmp(agent_of(b)),
            SortBy::Session => session_of(a).cmp(session_of(b)),
            SortBy::Id => a_id.cmp(b_id),
        };
        let order = order.then_with(|| b_id.cmp(a_id));
        if app.reverse {
            order.reverse()
        } else {
            order
        }
    });
    rows
}

fn status_line(app: &App, shown: usize, held: usize) -> Line<'static> {
    let scope = match &app.session {
        Some(s) => format!("session {s}"),
        None => "all executions".to_string(),
    };
    let revision = app
        .revision
        .map_or(String::new(), |r| format!(" · rev {r}"));
    let head = format!("stigmer top · {scope} · {shown}/{held}{revision} · ");
    let (state, color) = match &app.link {
        Link::Listing => ("listing…".to_string(), Color::Cyan),
        Link::Live => ("live".to_string(), Color::Green),
        Link::Reconnecting(why) => (format!("reconnecting… ({why})"), Color::Yellow),
    };
    Line::from(vec![
        Span::styled(head, Style::default().add_modifier(Modifier::BOLD)),
        Span::styled(state, tint(app, Style::default(), color)),
    ])
}

fn help_line(app: &App) -> Line<'static> {
    let text = if let Some(typing) = &app.typing {
        format!("session filter: {typing}▏ (Enter apply, Esc cancel)")
    } else {
        match app.view {
            View::Table => format!(
                "q quit ↑↓ move ⏎ transcript s sort:{}{} r reverse f phase:{} / session{}",
                app.sort.name(),
                if app.reverse { "↑" } else { "" },
                app.phase_filter.name(),
                if app.session_filter.is_empty() {
                    String::new()
                } else {
                    format!(":{}", app.session_filter)
                }
            ),
            View::Transcript { .. } => "Esc/q back ↑↓ PgUp PgDn scroll End follow".to_string(),
        }
    };
    Line::from(Span::styled(
        text,
        Style::default().add_modifier(Modifier::DIM),
    ))
}

fn draw_table(
    frame: &mut Frame<'_>,
    app: &mut App,
    rows: &[(String, Arc<AgentExecution>)],
    area: Rect,
) {
    app.page = usize::from(area.height.saturating_sub(2)).max(1);
    let app = &*app;
    let cols = columns(area.width, app.session.is_some());
    let now = SystemTime::now();
    let header = Row::new(cols.iter().map(|c| Cell::from(c.title())))
        .style(Style::default().add_modifier(Modifier::BOLD));
    let body = rows
        .iter()
        .map(|(id, e)| Row::new(cols.iter().map(|c| cell(app, *c, id, e, now))));
    let widths = cols.iter().map(|c| match c {
        Column::Text => Constraint::Min(c.width()),
        c => Constraint::Length(c.width()),
    });
    let mut state = TableState::default().with_selected(
        app.selected
            .as_ref()
            .and_then(|s| rows.iter().position(|(id, _)| id == s)),
    );
    let table = Table::new(body, widths)
        .header(header)
        .column_spacing(1)
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED));
    frame.render_stateful_widget(table, area, &mut state);
    if rows.is_empty() {
        let [_, note] =
            Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(area);
        let text = match app.link {
            Link::Listing => "waiting for the daemon's list…",
            _ => "no executions match",
        };
        frame.render_widget(Paragraph::new(text), note);
    }
}

fn cell(app: &App, c: Column, id: &str, e: &AgentExecution, now: SystemTime) -> Cell<'static> {
    let spec = e.spec.as_ref();
    let ago = |t: Option<SystemTime>| {
        t.map_or("-".to_string(), |t| {
            render::age(now.duration_since(t).unwrap_or_default())
        })
    };
    let text = match c {
        Column::Id => id.to_string(),
        Column::Agent => spec.map_or(String::new(), |s| s.agent_id.clone()),
        Column::Session => spec.map_or(String::new(), |s| s.session_id.clone()),
        Column::Phase => {
            let phase = render::execution_phase(e);
            return Cell::from(Span::styled(
                phase_label(phase),
                tint(app, Style::default(), phase_color(phase)),
            ));
        }
        Column::Age => ago(render::created_at(e)),
        Column::Updated => ago(render::updated_at(e)),
        Column::Messages => e
            .status
            .as_ref()
            .map_or(0, |s| s.messages.len())
            .to_string(),
        Column::Text => render::one_line(render::latest_text(e), 200),
    };
    Cell::from(text)
}

/// Draws the transcript of `id`, `back` lines up from its end; returns
/// `back` clamped to what there is to scroll.
fn draw_transcript(
    frame: &mut Frame<'_>,
    app: &App,
    execution: Option<&Arc<AgentExecution>>,
    id: &str,
    back: usize,
    area: Rect,
) -> usize {
    let Some(e) = execution else {
        let text = format!("{id} is no longer there (deleted, or filtered out by the watch)");
        frame.render_widget(Paragraph::new(text), area);
        return 0;
    };
    let lines = wrap(transcript_lines(app, e), usize::from(area.width).max(1));
    let height = usize::from(area.height);
    let most = lines.len().saturating_sub(height);
    let back = back.min(most);
    let start = most - back;
    let shown: Vec<Line<'static>> = lines.into_iter().skip(start).take(height).collect();
    frame.render_widget(Paragraph::new(shown), area);
    back
}

/// The execution as a transcript: header, prompt, messages, tool calls,
/// todos, error; one styled line per line of text.
fn transcript_lines(app: &App, e: &AgentExecution) -> Vec<Line<'static>> {
    let (no_spec, no_status) = (Default::default(), Default::default());
    let spec: &AgentExecutionSpec = e.spec.as_ref().unwrap_or(&no_spec);
    let status: &AgentExecutionStatus = e.status.as_ref().unwrap_or(&no_status);
    let phase = status.phase();
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let mut out = vec![Line::from(vec![
        Span::styled(format!("{} ", render::execution_id(e)), bold),
        Span::raw(format!("agent {} ", spec.agent_id)),
        Span::raw(if spec.session_id.is_empty() {
            String::new()
        } else {
            format!("session {} ", spec.session_id)
        }),
        Span::styled(
            render::phase_name(phase),
            tint(app, bold, phase_color(phase)),
        ),
    ])];
    let mut block = |label: String, color: Color, text: &str| {
        let mut first = true;
        for line in text.split('\n') {
            let mut spans = Vec::new();
            if first {
                spans.push(Span::styled(format!("{label}: "), tint(app, bold, color)));
                first = false;
            } else {
                spans.push(Span::raw("  "));
            }
            spans.push(Span::raw(line.to_string()));
            out.push(Line::from(spans));
        }
    };
    block("prompt".into(), Color::Reset, &spec.message);
    for m in &status.messages {
        let color = match render::message_style(m.r#type) {
            super::style::Style::Blue => Color::Blue,
            super::style::Style::Green => Color::Green,
            super::style::Style::Yellow => Color::Yellow,
            _ => Color::Reset,
        };
        block(render::message_label(m.r#type).into(), color, &m.content);
    }
    for tc in render::all_tool_calls(status) {
        let mut text = format!(
            "{} {} [{}]",
            tc.name,
            render::args_text(tc),
            render::tool_status_name(tc.status)
        );
        if !tc.result.is_empty() {
            text.push_str(&format!(" -> {}", render::one_line(&tc.result, 200)));
        }
        block("tool".into(), Color::Yellow, &text);
    }
    for todo in status.todos.values() {
        let text = format!(
            "[{}] {}",
            render::todo_status_name(todo.status),
            todo.content
        );
        block("todo".into(), Color::Reset, &text);
    }
    if !status.error.is_empty() {
        block("error".into(), Color::Red, &status.error);
    }
    out
}

/// Splits lines wider than `width` columns into several, so that scrolling
/// counts screen lines.
fn wrap(lines: Vec<Line<'static>>, width: usize) -> Vec<Line<'static>> {
    let mut out = Vec::new();
    for line in lines {
        if line.width() <= width {
            out.push(line);
            continue;
        }
        let mut current: Vec<Span<'static>> = Vec::new();
        let mut used = 0;
        for span in line.spans {
            let mut piece = String::new();
            for ch in span.content.chars() {
                let w = ch.width().unwrap_or(0);
                if used + w > width {
                    current.push(Span::styled(std::mem::take(&mut piece), span.style));
                    out.push(Line::from(std::mem::take(&mut current)));
                    used = 0;
                }
                piece.push(ch);
                used += w;
            }
            if !piece.is_empty() {
                current.push(Span::styled(piece, span.style));
            }
        }
        out.push(Line::from(current));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_fit_80_and_shrink_below() {
        let wide = columns(200, false);
        assert_eq!(wide.len(), ORDER.len());
        let eighty = columns(80, false);
        let used: u16 = eighty.iter().map(|c| c.width()).sum::<u16>() + eighty.len() as u16 - 1;
        assert!(used <= 80, "{eighty:?}");
        for c in [Column::Id, Column::Phase, Column::Text, Column::Agent] {
            assert!(eighty.contains(&c), "{eighty:?}");
        }
        assert_eq!(columns(20, false), vec![Column::Id]);
        assert!(!columns(200, true).contains(&Column::Session));
    }

    #[test]
    fn long_lines_wrap_at_the_width() {
        let lines = wrap(vec![Line::from("abcdefghij")], 4);
        let text: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        assert_eq!(text, ["abcd", "efgh", "ij"]);
    }
}
