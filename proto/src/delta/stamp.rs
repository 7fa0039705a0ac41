//! The daemon's commit stamp ([`stamp`]): started_at, completed_at and the
//! status audit set at commit time, with the time format ([`rfc3339`]) and
//! the terminal phases ([`is_terminal_phase`]) it rests on. Its own file
//! because the daemon, the `stamp` op ([`apply`](fn@super::apply)) and the
//! clients all stamp the same way.

use std::time::{Duration, UNIX_EPOCH};

use crate::agentexecution::{AgentExecutionStatus, ExecutionPhase};
use crate::apiresource::{ApiResourceAudit, ApiResourceAuditInfo};
use crate::wkt::Timestamp;

/// The last second humantime formats (9999-12-31T23:59:59Z).
pub(super) const MAX_SECONDS: i64 = 253_402_300_799;

/// True for the four terminal phases (COMPLETED, FAILED, CANCELLED,
/// TERMINATED).
pub fn is_terminal_phase(phase: i32) -> bool {
    matches!(
        ExecutionPhase::try_from(phase),
        Ok(ExecutionPhase::ExecutionCompleted
            | ExecutionPhase::ExecutionFailed
            | ExecutionPhase::ExecutionCancelled
            | ExecutionPhase::ExecutionTerminated)
    )
}

/// `t` in RFC 3339 with microseconds, as the daemon has always written
/// started_at / completed_at (`humantime::format_rfc3339_micros`, e.g.
/// "2023-11-14T22:13:20.000000Z"). A time outside 1970..=9999 (which the
/// `stamp` op refuses) is clamped into it.
pub fn rfc3339(t: &Timestamp) -> String {
    let seconds = u64::try_from(t.seconds.clamp(0, MAX_SECONDS)).unwrap_or(0);
    let nanos = u32::try_from(t.nanos.clamp(0, 999_999_999)).unwrap_or(0);
    let time = UNIX_EPOCH
        .checked_add(Duration::new(seconds, nanos))
        .unwrap_or(UNIX_EPOCH);
    humantime::format_rfc3339_micros(time).to_string()
}

/// The daemon's commit stamp (the same rule and strings the daemon used
/// before deltas): started_at = rfc3339 micros of `now` when the phase is not
/// UNSPECIFIED/PENDING and started_at is empty; completed_at likewise at a
/// terminal phase; audit.status_audit: created_at = now when missing,
/// updated_at = now, event = "status_updated".
pub fn stamp(status: &mut AgentExecutionStatus, now: &Timestamp) {
    let phase = status.phase;
    let started = phase != ExecutionPhase::Unspecified as i32
        && phase != ExecutionPhase::ExecutionPending as i32;
    if started && status.started_at.is_empty() {
        status.started_at = rfc3339(now);
    }
    if is_terminal_phase(phase) && status.completed_at.is_empty() {
        status.completed_at = rfc3339(now);
    }
    let audit = status.audit.get_or_insert_with(ApiResourceAudit::default);
    let info = audit
        .status_audit
        .get_or_insert_with(ApiResourceAuditInfo::default);
    if info.created_at.is_none() {
        info.created_at = Some(*now);
    }
    info.updated_at = Some(*now);
    info.event = "status_updated".to_string();
}
