//! Deltas: applying, diffing and stamping the operations (`Op`, in
//! `stigmer/daemon/v1/delta.proto`) that change an execution's status.
//!
//! This module exists so that the daemon (which applies a runner's `append`,
//! turns a whole `update_status` into ops with [`diff`](fn@diff), and stamps
//! every commit) and the Rust client (which rebuilds the state from a delta
//! stream) run the same code. The Python client mirrors it
//! (`clients/python/src/stigmer_client/_delta.py`); `tests/vectors/deltas.json`
//! proves both give the same bytes.
//!
//! # How each operation applies
//!
//! [`apply`](fn@apply) answers [`Outcome::Applied`] (the status changed),
//! [`Outcome::AlreadyApplied`] (the status already holds what the operation
//! would make: a retry after a lost reply is acknowledged without a second
//! copy), [`ApplyError::Conflict`] (the operation does not fit the status: a
//! stale offset or index, an unknown tool call id; the daemon answers
//! `ABORTED` and the message names what the status holds, so the client can
//! retry) or [`ApplyError::Invalid`] (the operation itself is malformed; the
//! daemon answers `INVALID_ARGUMENT`). Checks of the operation alone run
//! before checks against the status.
//!
//! Offsets and lengths are in bytes of UTF-8.
//!
//! - **`append_text {message_index: i, offset, text, type}`**: `type` must
//!   be a known `MessageType` (else Invalid). When `i` equals the number of
//!   messages, a message of `type` (UNSPECIFIED: `MESSAGE_AI`) with empty
//!   content is created first, only when `offset` is 0 (else Conflict); the
//!   operation is then Applied, even with empty text. `i` greater than the
//!   count: Conflict. Then, with `c` the message's content: `offset` greater
//!   than `len(c)`: Conflict; `offset` not on a character boundary of `c`:
//!   Conflict (a stale offset); `offset == len(c)`: `text` is appended, Applied (AlreadyApplied
//!   when `text` is empty); `c[offset..offset + len(text)] == text`:
//!   AlreadyApplied; anything else: Conflict naming `len(c)`. `type` is
//!   ignored for an existing message.
//! - **`add_message {index, message}`**: `index` equal to the count: the
//!   message is pushed, Applied; `index` below the count and the message
//!   there equal to `message`: AlreadyApplied; else Conflict naming the count.
//! - **`put_tool_call`**: an empty id is Invalid. Replaces, in place, the
//!   first entry of `tool_calls` with the same id (AlreadyApplied when equal),
//!   else appends it.
//! - **`put_message_tool_call {message_index: i, tool_call}`**: as
//!   `put_tool_call` (an unknown status or an empty id is Invalid, a
//!   missing `tool_call` being the default one, whose id is empty), on
//!   message `i`'s own `tool_calls`: replaces, in place, the first entry with
//!   the same id (AlreadyApplied when equal), else appends it. `i` not below
//!   the count: Conflict (it never creates a message). Nothing else of the
//!   message changes.
//! - **`append_tool_result {tool_call_id, offset, text}`**: an empty id is
//!   Invalid; no tool call with that id: Conflict; else as `append_text` on
//!   the first such tool call's `result`.
//! - **`put_todo {key, item}`**: inserts or replaces `todos[key]`
//!   (AlreadyApplied when equal). **`remove_todo key`**: removes it
//!   (AlreadyApplied when absent). The empty key is a key like any other
//!   (protobuf maps allow it, and [`diff`](fn@diff) needs it).
//! - **`put_sub_agent`**: as `put_tool_call`, on `sub_agent_executions`.
//! - **`set_phase`**: UNSPECIFIED or an unknown value is Invalid;
//!   AlreadyApplied when equal. **`set_error`**, **`set_started_at`**,
//!   **`set_completed_at`**: set the string (AlreadyApplied when equal).
//! - **`replace_message {index, message}`**: `index` below the count:
//!   replaces that message (AlreadyApplied when equal); else Conflict.
//!   **`replace_messages`**, **`replace_tool_calls`**,
//!   **`replace_sub_agents`**: replace the whole list (AlreadyApplied when
//!   equal).
//! - **`stamp(t)`**: [`stamp`](fn@stamp); always Applied. `t` must be between
//!   1970-01-01T00:00:00Z and 9999-12-31T23:59:59.999999999Z (else Invalid).
//! - An `Op` with no operation set is Invalid.
//! - Every enum value an operation carries (a message's type, a tool call's,
//!   sub-agent's or todo's status, in any operation) must be known, as
//!   `update_status` requires of a whole status: else Invalid.
//! - A missing message field (`add_message.message`, `put_todo.item`, ...)
//!   is its default value, as in protobuf.
//!
//! [`apply_all`] applies a list in order and stops at the first error,
//! prefixing its message with the operation's position (`ops[2]: ...`).
//!
//! # Files
//!
//! One job each: `apply.rs` ([`apply`](fn@apply), [`apply_all`],
//! [`Outcome`], [`ApplyError`]: the rules above), `diff.rs`
//! ([`diff`](fn@diff): the ops between two statuses), `replay.rs`
//! ([`replay`](fn@replay), [`ReplayError`]: a stored state rebuilt from its
//! base and the deltas after it), `stamp.rs`
//! ([`stamp`](fn@stamp), [`rfc3339`], [`is_terminal_phase`]: the commit
//! stamp); `tests.rs` holds the unit tests and `proptests.rs` the property
//! tests. Data flows one way: `apply` uses `stamp`, `replay` uses `apply`;
//! `diff` uses none of them.

#![warn(clippy::all)]

mod apply;
mod diff;
mod replay;
mod stamp;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use apply::{apply, apply_all, apply_to, ApplyError, Outcome};
pub use diff::diff;
pub use replay::{replay, ReplayError};
pub use stamp::{is_terminal_phase, rfc3339, stamp};
