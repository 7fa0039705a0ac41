//! `stigmer admin ...`: operating on the daemon's data as a whole.
//!
//! - `backup PATH`: an online, consistent copy of the database. It uses
//!   SQLite's backup API from a separate read-only connection, copying every
//!   page in one step, i.e. inside one read transaction: in WAL mode that is
//!   a snapshot at one commit, taken while the daemon keeps writing (readers
//!   never block the writer, nor the writer them). The copy is written to a
//!   temporary file beside PATH, checked, switched out of WAL mode so it is
//!   one self-contained file, synced, and only then renamed to PATH.
//! - `export`: every execution as JSON Lines, read through the daemon's
//!   `list` command page by page (no database access needed).
//! - `prune --older-than D`: deletes, through the daemon, the executions
//!   that finished longer ago than D (what `--keep-finished` does
//!   continuously; `crate::model::finished_at` is the rule for both).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use rusqlite::{backup::StepResult, Connection, OpenFlags};
use stigmer_client::ListFilter;

use super::executions::connect;
use super::{AdminCommand, CliError, Ctx};

/// How long the backup's read connection waits for a lock (the daemon only
/// holds an exclusive one while checkpointing with TRUNCATE, briefly).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs one `admin` subcommand.
pub(super) async fn run(ctx: Ctx, cmd: AdminCommand) -> Result<ExitCode, CliError> {
    match cmd {
        AdminCommand::Backup { path, db, force } => {
            let source = match db {
                Some(db) => db,
                None => {
                    let client = connect(&ctx).await?;
                    // Waits for the daemon's status: it names its database.
                    let status = client.status(false).await?;
                    PathBuf::from(status.database)
                }
            };
            let report = backup(&source, &path, force)?;
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "backed up {} to {} ({} bytes{})",
                source.display(),
                path.display(),
                report.bytes,
                report
                    .revision
                    .map_or(String::new(), |r| format!(", revision {r}"))
            )?;
            out.flush()?;
        }
        AdminCommand::Export { phase, session } => {
            let client = connect(&ctx).await?;
            let mut filter = ListFilter {
                phase: phase.map(Into::into),
                session_id: session,
                page_size: 1000,
                ..Default::default()
            };
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            loop {
                // Waits for one page.
                let page = client.list(&filter).await?;
                for execution in &page.executions {
                    serde_json::to_writer(&mut out, execution)?;
                    out.write_all(b"\n")?;
                }
                match page.next_page_token {
                    None => break,
                    Some(token) if Some(&token) == filter.page_token.as_ref() => {
                        return Err(CliError::Other(
                            "the daemon returned the same page token twice".into(),
                        ))
                    }
                    Some(token) => filter.page_token = Some(token),
                }
            }
            out.flush()?;
        }
        AdminCommand::Prune {
            older_than,
            dry_run,
        } => prune(&ctx, older_than, dry_run).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `admin prune`: lists the finished executions, phase by phase, and
/// deletes those that finished before the cutoff.
async fn prune(ctx: &Ctx, older_than: Duration, dry_run: bool) -> Result<(), CliError> {
    use stigmer_proto::agentexecution::ExecutionPhase;
    let cutoff = std::time::SystemTime::now()
        .checked_sub(older_than)
        .unwrap_or(std::time::UNIX_EPOCH);
    let client = connect(ctx).await?;
    let mut old = Vec::new();
    for phase in [
        ExecutionPhase::ExecutionCompleted,
        ExecutionPhase::ExecutionFailed,
        ExecutionPhase::ExecutionCancelled,
        ExecutionPhase::ExecutionTerminated,
    ] {
        let filter = ListFilter {
            phase: Some(phase),
            page_size: 1000,
            ..Default::default()
        };
        // Waits for every page of this phase.
        for e in client.list_all(&filter).await? {
            if crate::model::finished_at(&e).is_some_and(|t| t < cutoff) {
                old.extend(e.metadata.map(|m| m.id));
            }
        }
    }
    let mut out = std::io::stdout().lock();
    let mut deleted = 0;
    for id in old {
        if dry_run {
            writeln!(out, "{id}")?;
            continue;
        }
        // Waits for the delete's commit; an execution deleted meanwhile is
        // not an error here.
        match client.delete(id.as_str()).await {
            Ok(_) => deleted += 1,
            Err(e) if e.is(stigmer_client::Code::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if !dry_run {
        writeln!(out, "deleted {deleted} executions")?;
    }
    out.flush()?;
    Ok(())
}

/// What a backup copied.
struct BackupReport {
    bytes: u64,
    /// The last committed revision in the copy, when the schema has one.
    revision: Option<i64>,
}

fn sqlite(what: &str, path: &Path) -> impl Fn(rusqlite::Error) -> CliError {
    let what = what.to_string();
    let path = path.display().to_string();
    move |e| CliError::Other(format!("{what} {path}: {e}"))
}

/// Copies the database at `source` to `dest` (see the module docs).
fn backup(source: &Path, dest: &Path, force: bool) -> Result<BackupReport, CliError> {
    if !source.exists() {
        return Err(CliError::Other(format!(
            "no database at {} (pass --db, or run as the daemon's user)",
            source.display()
        )));
    }
    if dest.exists() && !force {
        return Err(CliError::Usage(format!(
            "{} exists; pass --force to replace it",
            dest.display()
        )));
    }
    let name = dest
        .file_name()
        .ok_or_else(|| CliError::Usage(format!("{} is not a file path", dest.display())))?;
    let tmp = dest.with_file_name(format!(
        ".{}.partial-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = copy_to(source, &tmp);
    match result {
        Ok(report) => {
            std::fs::rename(&tmp, dest).map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                CliError::Other(format!("cannot move the copy to {}: {e}", dest.display()))
            })?;
            if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
                // Makes the rename durable; best effort (not every file
                // system lets a directory be opened for sync).
                if let Ok(d) = std::fs::File::open(dir) {
                    let _ = d.sync_all();
                }
            }
            Ok(report)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn copy_to(source: &Path, tmp: &Path) -> Result<BackupReport, CliError> {
    // The copy holds every execution: readable by its owner only, from the
    // moment it exists.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)
        .map_err(|e| CliError::Other(format!("cannot create {}: {e}", tmp.display())))?;
    let src = Connection::open_with_flags(
        source,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite("cannot open", source))?;
    src.busy_timeout(BUSY_TIMEOUT)
        .map_err(sqlite("cannot configure", source))?;
    let mut dst = Connection::open(tmp).map_err(sqlite("cannot open", tmp))?;
    {
        let backup = rusqlite::backup::Backup::new(&src, &mut dst)
            .map_err(sqlite("cannot start the backup of", source))?;
        loop {
            // -1: every page in one step, under one read transaction, so the
            // copy is one consistent snapshot however busy the writer is.
            match backup
                .step(-1)
                .map_err(sqlite("the backup failed reading", source))?
            {
                StepResult::Done => break,
                StepResult::More => {}
                // A lock held for a moment (a checkpoint): try again.
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
    drop(src);
    // One self-contained file, usable without its -wal.
    dst.pragma_update(None, "journal_mode", "DELETE")
        .map_err(sqlite("cannot finish", tmp))?;
    let check: String = dst
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(sqlite("cannot check", tmp))?;
    if check != "ok" {
        return Err(CliError::Other(format!(
            "the copy failed SQLite's quick_check: {check}"
        )));
    }
    // The newest revision the copy holds (its history's last row).
    let revision = dst
        .query_row("SELECT MAX(revision) FROM history", [], |r| {
            r.get::<_, Option<i64>>(0)
        })
        .ok()
        .flatten();
    drop(dst);
    let file = std::fs::File::open(tmp)
        .map_err(|e| CliError::Other(format!("cannot reopen {}: {e}", tmp.display())))?;
    file.sync_all()
        .map_err(|e| CliError::Other(format!("cannot sync {}: {e}", tmp.display())))?;
    let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    Ok(BackupReport { bytes, revision })
}
