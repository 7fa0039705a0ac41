//! `list`: executions filtered by phase and session, in id (= creation)
//! order, with keyset pagination: the page token names the last id returned
//! and the filters it was made for, so pages never shift or repeat when
//! executions are created or deleted in between.

use std::sync::Arc;

use super::Context;
use crate::pipeline::validate;
use crate::protocol::ApiError;
use crate::store::reader::{self, ListQuery};
use crate::wire::Reply;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use stigmer_proto::agentexecution::ExecutionPhase;
use stigmer_proto::daemon::{response, ListExecutionsRequest, ListExecutionsResponse};

/// Page size when the request says 0.
pub(crate) const DEFAULT_PAGE_SIZE: u32 = 100;
/// Largest page: bounds one reply's size and one read's duration.
pub(crate) const MAX_PAGE_SIZE: u32 = 1000;

/// Bytes of a list reply kept for everything but the states: the response
/// envelope, the field headers and the page token, which carries the
/// session filter (at most [`MAX_SESSION_FILTER`] bytes, 4/3 of that in
/// base64).
const REPLY_ALLOWANCE: usize = 64 * 1024;

/// The longest `session_id` filter: far beyond any real session id, and
/// small enough that the page token quoting it stays within the reply's
/// allowance.
pub(super) const MAX_SESSION_FILTER: usize = 4 * 1024;

/// Separates the fields inside a page token (a byte no id or filter holds).
const SEP: char = '\u{1f}';
/// Version tag of the page token format.
const TOKEN_VERSION: &str = "1";

pub(super) fn apply(ctx: &Arc<Context>, reply: Reply, req: ListExecutionsRequest) {
    let query = match parse(&req) {
        Ok(query) => query,
        Err(err) => return reply.error(err),
    };
    let ctx = ctx.clone();
    tokio::spawn(async move {
        // The page's states leave room in the reply frame for its envelope
        // and the page token.
        let q = ListQuery {
            max_bytes: ctx.max_frame_length.saturating_sub(REPLY_ALLOWANCE),
            ..query.clone()
        };
        // Waits for a read connection and the query.
        let result = ctx
            .reader
            .run(move |c| reader::list(c, &q))
            .await
            .map(|page| {
                let last = page
                    .entries
                    .last()
                    .and_then(|e| e.metadata.as_ref())
                    .map(|m| m.id.as_str());
                let next_page_token = match last {
                    Some(last) if page.more => make_token(&query, last),
                    _ => String::new(),
                };
                response::Result::List(ListExecutionsResponse {
                    entries: page.entries,
                    next_page_token,
                })
            });
        reply.result(result);
    });
}

fn parse(req: &ListExecutionsRequest) -> Result<ListQuery, ApiError> {
    let page_size = match req.page_size {
        0 => DEFAULT_PAGE_SIZE,
        n if n > MAX_PAGE_SIZE => {
            return Err(ApiError::invalid_argument(format!(
                "page_size {n} is over the maximum of {MAX_PAGE_SIZE}"
            )))
        }
        n => n,
    };
    let phase = match req.phase {
        0 => None,
        p => {
            ExecutionPhase::try_from(p).map_err(|_| {
                ApiError::invalid_argument(format!("phase: unknown enum value {p}"))
            })?;
            Some(p)
        }
    };
    if req.session_id.len() > MAX_SESSION_FILTER {
        return Err(ApiError::invalid_argument(format!(
            "session_id is {} bytes, over the {MAX_SESSION_FILTER}-byte limit",
            req.session_id.len()
        )));
    }
    let session_id = (!req.session_id.is_empty()).then(|| req.session_id.clone());
    let mut query = ListQuery {
        phase,
        session_id,
        after_id: None,
        limit: page_size as usize,
        max_bytes: usize::MAX,
    };
    if !req.page_token.is_empty() {
        query.after_id = Some(read_token(&req.page_token, &query)?);
    }
    Ok(query)
}

fn filters(q: &ListQuery) -> String {
    format!(
        "{}{SEP}{}",
        q.phase.unwrap_or(0),
        q.session_id.as_deref().unwrap_or("")
    )
}

fn make_token(q: &ListQuery, last_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{TOKEN_VERSION}{SEP}{}{SEP}{last_id}", filters(q)))
}

fn read_token(token: &str, q: &ListQuery) -> Result<String, ApiError> {
    let bad = || ApiError::invalid_argument("page_token was not made by this daemon");
    let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let mut parts = text.rsplitn(2, SEP);
    let last_id = parts.next().ok_or_else(bad)?;
    let head = parts.next().ok_or_else(bad)?;
    let expected = format!("{TOKEN_VERSION}{SEP}{}", filters(q));
    if head != expected {
        return Err(ApiError::invalid_argument(
            "page_token was made for other filters; repeat the request's phase and session_id",
        ));
    }
    validate::execution_id_form(last_id).map_err(|_| bad())?;
    Ok(last_id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trip_and_filter_binding() {
        let req = ListExecutionsRequest {
            session_id: "s1".into(),
            ..Default::default()
        };
        let q = parse(&req).unwrap();
        let token = make_token(&q, "aex-01jdx3k5m8q9r2s3t4v5w6x7y8");
        let next = ListExecutionsRequest {
            page_token: token.clone(),
            ..req.clone()
        };
        assert_eq!(
            parse(&next).unwrap().after_id.as_deref(),
            Some("aex-01jdx3k5m8q9r2s3t4v5w6x7y8")
        );
        let other = ListExecutionsRequest {
            session_id: "s2".into(),
            page_token: token,
            ..req
        };
        assert!(parse(&other).is_err());
        let junk = ListExecutionsRequest {
            page_token: "!!".into(),
            ..Default::default()
        };
        assert!(parse(&junk).is_err());
        let big = ListExecutionsRequest {
            page_size: 1001,
            ..Default::default()
        };
        assert!(parse(&big).is_err());
    }
}
