//! Create: upstream's `create(AgentExecution)`.
//!
//! | step        | runs on                               | does |
//! |-------------|---------------------------------------|------|
//! | `validate`  | the connection's task                 | spec.agent_id and spec.message present; id form; enum values |
//! | `build`     | the writer thread, in the transaction | id (monotonic ULID), api_version, kind, PENDING, audit stamps |
//! | `persist`   | the writer thread                     | ALREADY_EXISTS check; revision; the state (a history row) and the execution's row |
//! | `broadcast` | the writer thread, after COMMIT       | [`super::broadcast`] |

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use stigmer_proto::agentexecution::{AgentExecution, ExecutionPhase};
use stigmer_proto::apiresource::{ApiResourceAudit, ApiResourceAuditInfo, ApiResourceMetadata};

use super::{timestamp, update_status, validate as check};
use crate::model::{Change, State};
use crate::protocol::ApiError;
use crate::store::Txn;

/// `api_version` of every AgentExecution (upstream's constant).
pub(crate) const API_VERSION: &str = "agentic.stigmer.ai/v1";
/// `kind` of every AgentExecution.
pub(crate) const KIND: &str = "AgentExecution";

/// Step 1, on the connection's task before the write is queued: checks the
/// input.
pub(crate) fn validate(execution: &AgentExecution) -> Result<(), ApiError> {
    let spec = execution
        .spec
        .as_ref()
        .ok_or_else(|| ApiError::invalid_argument("spec is required"))?;
    check::required("spec.agent_id", &spec.agent_id)?;
    check::required("spec.message", &spec.message)?;
    if let Some(id) = execution.metadata.as_ref().map(|m| m.id.as_str()) {
        if !id.is_empty() {
            check::execution_id_form(id)?;
        }
    }
    if let Some(status) = &execution.status {
        check::status(status)?;
    }
    Ok(())
}

/// Steps 2-3, on the writer thread inside its transaction, in this order.
pub(crate) fn in_transaction(
    txn: &mut Txn<'_>,
    execution: AgentExecution,
    now: SystemTime,
) -> Result<Change, ApiError> {
    let built = build(execution, now)?;
    persist(txn, built)
}

/// Monotonic ULIDs: ids made within one millisecond still sort in creation
/// order, which `list` relies on.
static ULIDS: Mutex<Option<ulid::Generator>> = Mutex::new(None);

fn new_execution_id() -> Result<String, ApiError> {
    let mut guard = ULIDS.lock().unwrap_or_else(|p| p.into_inner());
    let ulid = guard
        .get_or_insert_with(ulid::Generator::new)
        .generate()
        .map_err(|e| ApiError::unavailable(format!("cannot generate an id right now: {e}")))?;
    Ok(format!("aex-{}", ulid.to_string().to_ascii_lowercase()))
}

/// Step "build": fills in what the daemon owns (id, api_version, kind, the
/// PENDING phase and the audit stamps).
fn build(mut e: AgentExecution, now: SystemTime) -> Result<AgentExecution, ApiError> {
    let metadata = e.metadata.get_or_insert_with(ApiResourceMetadata::default);
    if metadata.id.is_empty() {
        metadata.id = new_execution_id()?;
    }
    e.api_version = API_VERSION.to_string();
    e.kind = KIND.to_string();
    let status = e.status.get_or_insert_with(Default::default);
    if status.phase == ExecutionPhase::Unspecified as i32 {
        status.phase = ExecutionPhase::ExecutionPending as i32;
    }
    update_status::stamp(status, now);
    let audit = status.audit.get_or_insert_with(ApiResourceAudit::default);
    if let Some(info) = audit.status_audit.as_mut() {
        info.event = "created".to_string();
    }
    audit.spec_audit = Some(ApiResourceAuditInfo {
        created_at: Some(timestamp(now)),
        updated_at: Some(timestamp(now)),
        event: "created".to_string(),
        ..Default::default()
    });
    Ok(e)
}

/// Step "persist": refuses an id in use, takes a revision, and writes the
/// state (a history row) and the execution's row.
pub(crate) fn persist(txn: &mut Txn<'_>, execution: AgentExecution) -> Result<Change, ApiError> {
    let id = execution
        .metadata
        .as_ref()
        .map(|m| m.id.clone())
        .unwrap_or_default();
    if txn.exists(&id)? {
        return Err(ApiError::already_exists(format!(
            "execution {id} already exists"
        )));
    }
    let encoded = txn.encode(&execution)?;
    let execution = Arc::new(execution);
    let revision = txn.allocate_revision();
    txn.insert(&id, &execution, revision, &encoded)?;
    Ok(Change::new(
        revision,
        Arc::from(id),
        State::new(execution, Some(encoded)),
    ))
}
