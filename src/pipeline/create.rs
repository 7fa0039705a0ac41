//! Create: upstream's `create(AgentExecution)`.
//!
//! | step        | runs on                               | does |
//! |-------------|---------------------------------------|------|
//! | `validate`  | the connection's task                 | spec.agent_id and spec.message present; id form; enum values |
//! | `build`     | the writer thread, in the transaction | id (monotonic ULID), api_version, kind, PENDING, audit stamps |
//! | `persist`   | the writer thread                     | ALREADY_EXISTS check; revision; the state (a history row) and the execution's row |
//! | `broadcast` | the writer thread, after COMMIT       | [`super::Broadcast`] |

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use stigmer_proto::agentexecution::{AgentExecution, ExecutionPhase};
use stigmer_proto::apiresource::{ApiResourceAudit, ApiResourceAuditInfo, ApiResourceMetadata};

use super::{timestamp, update_status, validate, Pipeline, Step};
use crate::protocol::Status;
use crate::store::{Change, State, Txn};

/// `api_version` of every AgentExecution (upstream's constant).
pub const API_VERSION: &str = "agentic.stigmer.ai/v1";
/// `kind` of every AgentExecution (upstream's constant).
pub const KIND: &str = "AgentExecution";

/// The steps that run before the request is queued.
pub static BEFORE_QUEUE: Pipeline<dyn Step<AgentExecution>> = Pipeline {
    name: "create",
    steps: &[&Validate],
};

/// The steps that run inside the writer's transaction.
pub static IN_TRANSACTION: Pipeline<dyn for<'t, 'c> Step<CreateCtx<'t, 'c>>> = Pipeline {
    name: "create",
    steps: &[&Build, &Persist],
};

/// What the in-transaction steps share.
pub struct CreateCtx<'t, 'c> {
    /// The writer's open transaction.
    pub txn: &'t mut Txn<'c>,
    /// The execution being created (completed by `build`).
    pub execution: AgentExecution,
    /// The commit batch's clock reading.
    pub now: SystemTime,
    /// Set by `persist`.
    pub change: Option<Change>,
}

/// The writer-thread half as one job.
pub fn job(execution: AgentExecution) -> crate::store::writer::Job {
    Box::new(move |txn| {
        let mut ctx = CreateCtx {
            txn,
            execution,
            now: SystemTime::now(),
            change: None,
        };
        IN_TRANSACTION.run(&mut ctx)?;
        ctx.change
            .ok_or_else(|| Status::internal("create pipeline made no change"))
    })
}

/// Checks the request before it is queued.
pub struct Validate;

impl Step<AgentExecution> for Validate {
    fn name(&self) -> &'static str {
        "validate"
    }
    fn run(&self, execution: &mut AgentExecution) -> Result<(), Status> {
        let spec = execution
            .spec
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("spec is required"))?;
        validate::required("spec.agent_id", &spec.agent_id)?;
        validate::required("spec.message", &spec.message)?;
        if let Some(id) = execution.metadata.as_ref().map(|m| m.id.as_str()) {
            if !id.is_empty() {
                validate::execution_id_form(id)?;
            }
        }
        if let Some(status) = &execution.status {
            validate::status(status)?;
        }
        Ok(())
    }
}

/// Generates ids in strictly increasing order even within one millisecond,
/// so that listing by id is listing by creation.
static ULIDS: Mutex<Option<ulid::Generator>> = Mutex::new(None);

fn new_execution_id() -> Result<String, Status> {
    let mut guard = ULIDS.lock().unwrap_or_else(|p| p.into_inner());
    let ulid = guard
        .get_or_insert_with(ulid::Generator::new)
        .generate()
        .map_err(|e| Status::unavailable(format!("cannot generate an id right now: {e}")))?;
    Ok(format!("aex-{}", ulid.to_string().to_ascii_lowercase()))
}

/// Completes the execution with the daemon's defaults.
pub struct Build;

impl Step<CreateCtx<'_, '_>> for Build {
    fn name(&self) -> &'static str {
        "build"
    }
    fn run(&self, ctx: &mut CreateCtx<'_, '_>) -> Result<(), Status> {
        let e = &mut ctx.execution;
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
        update_status::stamp(status, ctx.now);
        let audit = status.audit.get_or_insert_with(ApiResourceAudit::default);
        if let Some(info) = audit.status_audit.as_mut() {
            info.event = "created".to_string();
        }
        audit.spec_audit = Some(ApiResourceAuditInfo {
            created_at: Some(timestamp(ctx.now)),
            updated_at: Some(timestamp(ctx.now)),
            event: "created".to_string(),
            ..Default::default()
        });
        Ok(())
    }
}

/// Refuses a duplicate id, then writes the execution and its history row.
pub struct Persist;

impl Step<CreateCtx<'_, '_>> for Persist {
    fn name(&self) -> &'static str {
        "persist"
    }
    fn run(&self, ctx: &mut CreateCtx<'_, '_>) -> Result<(), Status> {
        let id = ctx
            .execution
            .metadata
            .as_ref()
            .map(|m| m.id.clone())
            .unwrap_or_default();
        if ctx.txn.exists(&id)? {
            return Err(Status::already_exists(format!(
                "execution {id} already exists"
            )));
        }
        // Encoded once for the history row and the broadcast.
        let encoded = ctx.txn.encode(&ctx.execution)?;
        let execution = Arc::new(std::mem::take(&mut ctx.execution));
        let revision = ctx.txn.allocate_revision();
        // The state as a history row, and the execution pointing at it.
        ctx.txn.insert(&id, &execution, revision, &encoded)?;
        ctx.change = Some(Change::new(
            revision,
            Arc::from(id),
            State { execution, encoded },
        ));
        Ok(())
    }
}
