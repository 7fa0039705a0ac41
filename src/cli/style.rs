//! Colour for people at a terminal: whether to use it (`--color`, the
//! NO_COLOR convention, whether stdout is a terminal) and the few ANSI
//! styles the transcript and tables use. Programs reading `-o json` or a
//! pipe never see an escape sequence unless they ask with `--color always`.

use std::io::IsTerminal;

use stigmer_client::proto::agentexecution::ExecutionPhase;

use super::ColorChoice;

/// Whether standard output gets colour: `always`, `never`, or for `auto`
/// when stdout is a terminal and NO_COLOR is unset or empty
/// (<https://no-color.org>).
pub(super) fn enabled(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
            !no_color && std::io::stdout().is_terminal()
        }
    }
}

/// An ANSI style.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Style {
    /// Bold.
    Bold,
    /// Dim (timestamps, notices).
    Dim,
    /// Green (completed, ai).
    Green,
    /// Red (failed, errors).
    Red,
    /// Yellow (in progress, tools).
    Yellow,
    /// Blue (human).
    Blue,
    /// Magenta (cancelled, terminated).
    Magenta,
    /// Cyan (pending, waiting).
    Cyan,
}

impl Style {
    fn code(self) -> &'static str {
        match self {
            Style::Bold => "1",
            Style::Dim => "2",
            Style::Red => "31",
            Style::Green => "32",
            Style::Yellow => "33",
            Style::Blue => "34",
            Style::Magenta => "35",
            Style::Cyan => "36",
        }
    }
}

/// Paints text in a style when colour is on.
#[derive(Clone, Copy, Debug)]
pub(super) struct Painter {
    /// Whether to emit escape sequences.
    pub on: bool,
}

impl Painter {
    /// `text` in `style` (unchanged when colour is off).
    pub(super) fn paint(&self, style: Style, text: &str) -> String {
        if self.on && !text.is_empty() {
            format!("\x1b[{}m{text}\x1b[0m", style.code())
        } else {
            text.to_string()
        }
    }

    /// `text` padded to `width` columns, then painted (so the escape
    /// sequences do not upset the table's alignment).
    pub(super) fn paint_padded(&self, style: Style, text: &str, width: usize) -> String {
        let padded = format!("{text:<width$}");
        if self.on {
            let trimmed = padded.trim_end_matches(' ');
            let pad = padded.len() - trimmed.len();
            format!("{}{}", self.paint(style, trimmed), " ".repeat(pad))
        } else {
            padded
        }
    }
}

/// The colour of a phase.
pub(super) fn phase_style(phase: ExecutionPhase) -> Style {
    match phase {
        ExecutionPhase::ExecutionCompleted => Style::Green,
        ExecutionPhase::ExecutionFailed => Style::Red,
        ExecutionPhase::ExecutionCancelled | ExecutionPhase::ExecutionTerminated => Style::Magenta,
        ExecutionPhase::ExecutionInProgress => Style::Yellow,
        _ => Style::Cyan,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn painting_is_off_without_colour_and_keeps_alignment_with_it() {
        let off = Painter { on: false };
        assert_eq!(off.paint(Style::Red, "x"), "x");
        assert_eq!(off.paint_padded(Style::Red, "x", 3), "x  ");
        let on = Painter { on: true };
        assert_eq!(on.paint(Style::Red, "x"), "\x1b[31mx\x1b[0m");
        assert_eq!(on.paint_padded(Style::Red, "x", 3), "\x1b[31mx\x1b[0m  ");
    }
}
