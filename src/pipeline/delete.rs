//! Delete: upstream's `delete(ApiResourceId)`. The deletion is a committed
//! change with its own revision, so open streams end with END_REASON_DELETED
//! and a resuming stream learns of it from the history.
//!
//! | step        | runs on                               | does |
//! |-------------|---------------------------------------|------|
//! | `validate`  | the connection's task                 | id present |
//! | `load`      | the writer thread, in the transaction | NOT_FOUND when absent |
//! | `persist`   | the writer thread                     | revision; removes the latest state; history row |
//! | `broadcast` | the writer thread, after COMMIT       | [`super::Broadcast`] |

use std::sync::Arc;

use super::{validate, Pipeline, Step};
use crate::protocol::Status;
use crate::store::{Change, Txn};

/// The steps that run before the request is queued.
pub static BEFORE_QUEUE: Pipeline<dyn Step<String>> = Pipeline {
    name: "delete",
    steps: &[&Validate],
};

/// The steps that run inside the writer's transaction.
pub static IN_TRANSACTION: Pipeline<dyn for<'t, 'c> Step<DeleteCtx<'t, 'c>>> = Pipeline {
    name: "delete",
    steps: &[&Load, &Persist],
};

/// What the in-transaction steps share.
pub struct DeleteCtx<'t, 'c> {
    /// The writer's open transaction.
    pub txn: &'t mut Txn<'c>,
    /// The execution to delete.
    pub id: String,
    /// Set by `persist`.
    pub change: Option<Change>,
}

/// The writer-thread half as one job.
pub fn job(id: String) -> crate::store::writer::Job {
    Box::new(move |txn| {
        let mut ctx = DeleteCtx {
            txn,
            id,
            change: None,
        };
        IN_TRANSACTION.run(&mut ctx)?;
        ctx.change
            .ok_or_else(|| Status::internal("delete pipeline made no change"))
    })
}

/// Checks the id is present.
pub struct Validate;

impl Step<String> for Validate {
    fn name(&self) -> &'static str {
        "validate"
    }
    fn run(&self, id: &mut String) -> Result<(), Status> {
        validate::required("value (the execution id)", id)
    }
}

/// Refuses an unknown id.
pub struct Load;

impl Step<DeleteCtx<'_, '_>> for Load {
    fn name(&self) -> &'static str {
        "load"
    }
    fn run(&self, ctx: &mut DeleteCtx<'_, '_>) -> Result<(), Status> {
        if ctx.txn.exists(&ctx.id)? {
            Ok(())
        } else {
            Err(Status::not_found(format!("execution {} not found", ctx.id)))
        }
    }
}

/// Removes the execution and records the deletion.
pub struct Persist;

impl Step<DeleteCtx<'_, '_>> for Persist {
    fn name(&self) -> &'static str {
        "persist"
    }
    fn run(&self, ctx: &mut DeleteCtx<'_, '_>) -> Result<(), Status> {
        let revision = ctx.txn.allocate_revision();
        if !ctx.txn.remove(&ctx.id, revision)? {
            // `load` found the row in this same transaction.
            return Err(Status::internal(format!(
                "execution {} vanished inside its transaction",
                ctx.id
            )));
        }
        ctx.change = Some(Change::deleted(revision, Arc::from(ctx.id.as_str())));
        Ok(())
    }
}
