//! `-op=backup` and `-op=backup-verify`: a backup file of every stored record, read by the
//! leader at one etcd revision (the Backup call), in the format of `migrate::backup`.

use std::fs::File;
use std::io::{BufWriter, IsTerminal};
use std::path::{Path, PathBuf};

use serde_json::json;

use super::output::Output;
use super::{Ctx, Failure};
use crate::etcd::KeyLayout;
use crate::migrate::backup::{BackupWriter, read_backup};
use crate::migrate::restore::{StateSummary, build_state, decode_entries};
use crate::proto::monitor as api;

/// Streams the backup into `<out>.partial`, checks it is complete, then renames it to `out`:
/// an interrupted backup never replaces a good one.
pub async fn backup(c: &Ctx) -> Result<Output, Failure> {
    let out = c.args.out.clone().expect("required flag");
    let partial = partial_path(&out);
    let (mut stream, monitor) = c
        .client
        .call_leader_at(|mut raw| async move {
            raw.backup(api::BackupRequest {})
                .await
                .map(tonic::Response::into_inner)
        })
        .await?;
    let first = stream
        .message()
        .await
        .map_err(|s| Failure::Failed(format!("backup: {}", s.message())))?
        .ok_or_else(|| Failure::Failed("backup: the monitor sent nothing".to_string()))?;
    let header = first
        .header
        .clone()
        .ok_or_else(|| Failure::Failed("backup: the first message has no header".to_string()))?;
    let file = File::create(&partial)
        .map_err(|e| Failure::Failed(format!("cannot create {}: {e}", partial.display())))?;
    let result = async {
        let mut w = BackupWriter::new(BufWriter::new(file), &header)?;
        let bar = progress(header.entry_count);
        let mut chunk = Some(first);
        while let Some(ch) = chunk {
            for e in &ch.entries {
                w.entry(e)?;
            }
            bar.set_position(w.count());
            chunk = stream
                .message()
                .await
                .map_err(|s| Failure::Failed(format!("backup interrupted: {}", s.message())))?;
        }
        bar.finish_and_clear();
        if w.count() != header.entry_count {
            return Err(Failure::Failed(format!(
                "backup incomplete: the monitor announced {} records and sent {}",
                header.entry_count,
                w.count()
            )));
        }
        let bytes = w.bytes() + 32;
        let (buf, digest, count) = w.finish()?;
        let file = buf
            .into_inner()
            .map_err(|e| Failure::Failed(format!("writing {}: {e}", partial.display())))?;
        file.sync_all()?;
        Ok((digest, count, bytes))
    }
    .await;
    let (digest, count, bytes) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    std::fs::rename(&partial, &out).map_err(|e| {
        Failure::Failed(format!(
            "cannot move {} to {}: {e}",
            partial.display(),
            out.display()
        ))
    })?;
    let digest = hex(&digest);
    Ok(c.output(
        || {
            json!({
                "file": out.display().to_string(),
                "entries": count,
                "bytes": bytes,
                "revision": header.revision,
                "osdmap_epoch": header.osdmap_epoch,
                "monitor": monitor,
                "sha256": digest,
            })
        },
        || {
            format!(
                "backup written to {}: {count} records ({:.1} MiB) read at etcd revision {}, osdmap epoch {}, sha256 {digest}",
                out.display(),
                bytes as f64 / (1 << 20) as f64,
                header.revision,
                header.osdmap_epoch
            ) + "\n"
        },
    ))
}

/// Reads a backup file whole: format, checksum, every record decoded and the state built as a
/// leader's load would.
pub async fn verify(c: &Ctx) -> Result<Output, Failure> {
    let path = c.args.input.clone().expect("required flag");
    let data = std::fs::read(&path)
        .map_err(|e| Failure::Failed(format!("cannot read {}: {e}", path.display())))?;
    let refused = |e: &dyn std::fmt::Display| Failure::Failed(format!("{}: {e}", path.display()));
    let backup = read_backup(&data).map_err(|e| refused(&e))?;
    // Keys are relative to the prefix: any layout decodes them.
    let keys = KeyLayout::new("/fastblock", "fastblock_master");
    let decoded = decode_entries(&backup.entries, &keys).map_err(|e| refused(&e))?;
    let blobs = decoded.blobs.len();
    let (state, garbage) = build_state(decoded.records).map_err(|e| refused(&e))?;
    let summary = StateSummary::of(&state);
    let h = &backup.header;
    Ok(c.output(
        || {
            json!({
                "file": path.display().to_string(),
                "ok": true,
                "format_version": h.format_version,
                "revision": h.revision,
                "created_at_ms": h.created_at_ms,
                "monitor": h.monitor,
                "monitor_version": h.monitor_version,
                "entries": backup.entries.len(),
                "osd_configs": blobs,
                "unreferenced_records": garbage.len(),
                "sha256": backup.digest_hex(),
                "state": summary,
            })
        },
        || {
            format!(
                "{}: OK, format {}, {} records read at etcd revision {} by {} (fastblock-mon {}), sha256 {}\n{summary}",
                path.display(),
                h.format_version,
                backup.entries.len(),
                h.revision,
                crate::text::shown(&h.monitor),
                crate::text::shown(&h.monitor_version),
                backup.digest_hex()
            ) + "\n"
        },
    ))
}

fn partial_path(out: &Path) -> PathBuf {
    let mut name = out
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".partial");
    out.with_file_name(name)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A progress bar on a terminal for large backups.
fn progress(total: u64) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() || total < 10_000 {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "backup {bar:40} {pos}/{len} records ({per_sec}, {eta} left)",
    ) {
        bar.set_style(style);
    }
    bar
}
