//! Logging: `tracing` to stderr and, when `log_path` is set, to a file that is reopened on
//! SIGHUP so logrotate can move it away.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogLevel;

/// A log file that can be reopened in place.
pub struct LogFile {
    path: PathBuf,
    file: Mutex<File>,
}

impl LogFile {
    /// Opens (creating it and its directory) `path` for appending.
    pub fn open(path: &Path) -> io::Result<LogFile> {
        Ok(LogFile {
            path: path.to_path_buf(),
            file: Mutex::new(open_append(path)?),
        })
    }

    /// Reopens the file by path: after a rotation this starts a fresh file.
    pub fn reopen(&self) -> io::Result<()> {
        let fresh = open_append(&self.path)?;
        *self.file.lock() = fresh;
        Ok(())
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

/// One event's write into the log file (tracing formats an event, then writes it once).
pub struct LogFileWriter<'a>(&'a LogFile);

impl Write for LogFileWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut f = self.0.file.lock();
        f.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.file.lock().flush()
    }
}

/// Shares one [`LogFile`] with the tracing layer.
#[derive(Clone)]
pub struct SharedLogFile(pub Arc<LogFile>);

impl<'a> MakeWriter<'a> for SharedLogFile {
    type Writer = LogFileWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LogFileWriter(&self.0)
    }
}

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `level`.
/// Returns the log file so the daemon can reopen it on SIGHUP.
pub fn init(level: LogLevel, log_path: Option<&Path>) -> io::Result<Option<Arc<LogFile>>> {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{},h2=warn,tower=warn", level.as_str())));
    // Colours only on a terminal: journald and log collectors get plain text.
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(io::stderr)
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
        .with_target(true);
    let file = log_path.map(LogFile::open).transpose()?.map(Arc::new);
    let file_layer = file.clone().map(|f| {
        tracing_subscriber::fmt::layer()
            .with_writer(SharedLogFile(f))
            .with_ansi(false)
            .with_target(true)
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(file_layer)
        .try_init()
        .map_err(|e| io::Error::other(e.to_string()))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopen_starts_a_new_file_after_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/monitor.log");
        let log = LogFile::open(&path).unwrap();
        LogFileWriter(&log).write_all(b"one\n").unwrap();
        let rotated = dir.path().join("sub/monitor.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        LogFileWriter(&log).write_all(b"two\n").unwrap();
        log.reopen().unwrap();
        LogFileWriter(&log).write_all(b"three\n").unwrap();
        assert_eq!(std::fs::read_to_string(&rotated).unwrap(), "one\ntwo\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "three\n");
    }
}
