//! A blocking client for programs without an async runtime (scripts, simple
//! runners, tests), in the style of mini-redis's `blocking_client`: it wraps
//! the async [`crate::Client`] in a private current-thread tokio runtime and
//! runs each call to completion with `block_on`.
//!
//! The connection's reader and writer tasks only make progress while some
//! call (or subscription iterator) is blocked on the runtime; between calls
//! the daemon's frames wait in the socket buffer, which is harmless.
//!
//! Do not use it from inside an async runtime: `block_on` would panic there.
//! Use [`crate::Client`] instead.

use std::path::Path;
use std::sync::Arc;

use futures::StreamExt;
use tokio::runtime::Runtime;

use crate::proto::agentexecution::{AgentExecution, AgentExecutionStatus};
use crate::proto::daemon::PingResponse;
use crate::{Config, Event, ListFilter, Page, Result};

/// The blocking counterpart of [`crate::Client`]: same methods, same
/// multiplexed connection, each call blocking the calling thread. Clones
/// share the connection and the runtime.
#[derive(Clone, Debug)]
pub struct Client {
    // Field order matters: the async client (and its connection) must be
    // dropped before the runtime that runs its tasks.
    inner: crate::Client,
    rt: Arc<Runtime>,
}

/// A blocking iterator over a [`crate::Subscription`]: each `next()` blocks
/// until the next event (resuming across reconnects as the async one does).
#[derive(Debug)]
pub struct Subscription {
    inner: crate::Subscription,
    rt: Arc<Runtime>,
}

/// A blocking iterator over a [`crate::Watch`]: each `next()` blocks until
/// the next event; the cache is readable between calls.
#[derive(Debug)]
pub struct Watch {
    inner: crate::Watch,
    rt: Arc<Runtime>,
}

fn runtime() -> Result<Arc<Runtime>> {
    Ok(Arc::new(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
    ))
}

impl Client {
    /// Connects to the daemon at `path`.
    pub fn connect(path: impl AsRef<Path>) -> Result<Client> {
        Client::connect_with(path, Config::default())
    }

    /// Connects to the daemon at the default socket path.
    pub fn connect_default() -> Result<Client> {
        Client::connect(crate::paths::default_socket_path())
    }

    /// Connects to the daemon at `path` with `config`.
    pub fn connect_with(path: impl AsRef<Path>, config: Config) -> Result<Client> {
        let rt = runtime()?;
        // Blocks until the socket is open (or refused).
        let inner = rt.block_on(crate::Client::connect_with(path, config))?;
        Ok(Client { inner, rt })
    }

    /// See [`crate::Client::ping`].
    pub fn ping(&self) -> Result<PingResponse> {
        self.rt.block_on(self.inner.ping())
    }

    /// See [`crate::Client::status`].
    pub fn status(&self, prometheus: bool) -> Result<crate::proto::daemon::DaemonStatus> {
        self.rt.block_on(self.inner.status(prometheus))
    }

    /// See [`crate::Client::create`].
    pub fn create(&self, execution: impl Into<AgentExecution>) -> Result<(AgentExecution, u64)> {
        self.rt.block_on(self.inner.create(execution))
    }

    /// See [`crate::Client::update_status`].
    pub fn update_status(
        &self,
        execution_id: impl Into<String>,
        status: AgentExecutionStatus,
    ) -> Result<(AgentExecution, u64)> {
        self.rt
            .block_on(self.inner.update_status(execution_id, status))
    }

    /// See [`crate::Client::update_status_ack`].
    pub fn update_status_ack(
        &self,
        execution_id: impl Into<String>,
        status: AgentExecutionStatus,
    ) -> Result<u64> {
        self.rt
            .block_on(self.inner.update_status_ack(execution_id, status))
    }

    /// [`crate::Client::append`], blocking.
    pub fn append(
        &self,
        execution_id: impl Into<String>,
        ops: Vec<crate::proto::daemon::Op>,
        expected_revision: Option<u64>,
    ) -> Result<u64> {
        self.rt
            .block_on(self.inner.append(execution_id, ops, expected_revision))
    }

    /// [`crate::Client::append_text`], blocking.
    pub fn append_text(
        &self,
        execution_id: impl Into<String>,
        message_index: u32,
        offset: u64,
        text: impl Into<String>,
    ) -> Result<u64> {
        self.rt.block_on(
            self.inner
                .append_text(execution_id, message_index, offset, text),
        )
    }

    /// See [`crate::Client::get`].
    pub fn get(&self, execution_id: impl Into<String>) -> Result<(AgentExecution, u64)> {
        self.rt.block_on(self.inner.get(execution_id))
    }

    /// See [`crate::Client::list`].
    pub fn list(&self, filter: &ListFilter) -> Result<Page> {
        self.rt.block_on(self.inner.list(filter))
    }

    /// See [`crate::Client::list_all`].
    pub fn list_all(&self, filter: &ListFilter) -> Result<Vec<AgentExecution>> {
        self.rt.block_on(self.inner.list_all(filter))
    }

    /// See [`crate::Client::delete`].
    pub fn delete(&self, execution_id: impl Into<String>) -> Result<u64> {
        self.rt.block_on(self.inner.delete(execution_id))
    }

    /// See [`crate::Client::cancel`].
    pub fn cancel(&self, subscription_id: u64) -> Result<()> {
        self.rt.block_on(self.inner.cancel(subscription_id))
    }

    /// See [`crate::Client::subscribe`]; iterate the result for events.
    pub fn subscribe(
        &self,
        execution_id: impl Into<String>,
        from_revision: Option<u64>,
    ) -> Result<Subscription> {
        let inner = self
            .rt
            .block_on(self.inner.subscribe(execution_id, from_revision))?;
        Ok(Subscription {
            inner,
            rt: self.rt.clone(),
        })
    }
}

impl Client {
    /// See [`crate::Client::watch`]; iterate the result for events.
    pub fn watch(&self, selector: crate::Selector, options: crate::WatchOptions) -> Result<Watch> {
        let inner = self.rt.block_on(self.inner.watch(selector, options))?;
        Ok(Watch {
            inner,
            rt: self.rt.clone(),
        })
    }
}

impl Watch {
    /// See [`crate::Watch::on_notice`].
    pub fn on_notice(self, f: impl Fn(&crate::Notice) + Send + Sync + 'static) -> Self {
        let Watch { inner, rt } = self;
        Watch {
            inner: inner.on_notice(f),
            rt,
        }
    }

    /// See [`crate::Watch::cache`].
    pub fn cache(&self) -> &crate::Cache {
        self.inner.cache()
    }

    /// See [`crate::Watch::last_revision`].
    pub fn last_revision(&self) -> Option<u64> {
        self.inner.last_revision()
    }

    /// See [`crate::Watch::cancel`].
    pub fn cancel(self) -> Result<()> {
        let Watch { inner, rt } = self;
        rt.block_on(inner.cancel())
    }
}

impl Iterator for Watch {
    type Item = Result<crate::WatchEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        self.rt.block_on(self.inner.next())
    }
}

impl Subscription {
    /// See [`crate::Subscription::on_notice`]: `f` hears when the stream
    /// breaks and when it resumes.
    pub fn on_notice(self, f: impl Fn(&crate::Notice) + Send + Sync + 'static) -> Self {
        let Subscription { inner, rt } = self;
        Subscription {
            inner: inner.on_notice(f),
            rt,
        }
    }

    /// See [`crate::Subscription::last_revision`].
    pub fn last_revision(&self) -> Option<u64> {
        self.inner.last_revision()
    }

    /// See [`crate::Subscription::cancel`].
    pub fn cancel(self) -> Result<()> {
        let Subscription { inner, rt } = self;
        rt.block_on(inner.cancel())
    }
}

impl Iterator for Subscription {
    type Item = Result<Event>;

    fn next(&mut self) -> Option<Self::Item> {
        self.rt.block_on(self.inner.next())
    }
}
