//! Delete: removes an execution; its streams end with END_REASON_DELETED.
//!
//! | step        | runs on                               | does |
//! |-------------|---------------------------------------|------|
//! | `validate`  | the connection's task                 | id present |
//! | `load`      | the writer thread, in the transaction | NOT_FOUND when there is no such execution |
//! | `persist`   | the writer thread                     | revision; the execution's row and latest state go, a tombstone records the delete |
//! | `broadcast` | the writer thread, after COMMIT       | [`super::broadcast`] |

use std::sync::Arc;

use super::validate as check;
use crate::model::Change;
use crate::protocol::ApiError;
use crate::store::Txn;

/// Step 1, on the connection's task before the write is queued.
pub(crate) fn validate(id: &str) -> Result<(), ApiError> {
    check::execution_id("value (the execution id)", id)
}

/// Steps 2-3, on the writer thread inside its transaction, in this order.
pub(crate) fn in_transaction(txn: &mut Txn<'_>, id: &str) -> Result<Change, ApiError> {
    load(txn, id)?;
    persist(txn, id)
}

/// Step "load": the execution must exist.
fn load(txn: &mut Txn<'_>, id: &str) -> Result<(), ApiError> {
    if txn.exists(id)? {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("execution {id} not found")))
    }
}

/// Step "persist": takes a revision and removes the execution.
pub(crate) fn persist(txn: &mut Txn<'_>, id: &str) -> Result<Change, ApiError> {
    let revision = txn.allocate_revision();
    let Some(session) = txn.remove(id, revision)? else {
        return Err(ApiError::internal(format!(
            "execution {id} vanished inside its transaction"
        )));
    };
    Ok(Change::deleted(revision, Arc::from(id), Arc::from(session)))
}
