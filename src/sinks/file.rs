//! The file sink of embedded mode: one JSON-lines file per output kind (SPEC §8).
//!
//! Its checkpoint is the committed length of each file. Recovery truncates every file to
//! that length, which removes torn lines and records written after the last commit.

use super::{Sink, SinkError};
use crate::output::{Output, OutputKind};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Committed file lengths, in [`OutputKind::ALL`] order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Checkpoint {
    lengths: [u64; 4],
}

struct OutFile {
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
    len: u64,
}

/// Writes outputs to `DIR/{snapshots,compensations,alerts,dead_letters}.jsonl`.
pub struct FileSink {
    files: Vec<OutFile>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SinkError + '_ {
    move |source| SinkError::Io { path: path.display().to_string(), source }
}

impl FileSink {
    /// Opens (creating) the output files under `dir`; call [`Sink::recover`] before use.
    pub fn open(dir: &Path) -> Result<FileSink, SinkError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut files = Vec::new();
        for kind in OutputKind::ALL {
            let path = dir.join(kind.file_name());
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io(&path))?;
            let len = file.metadata().map_err(io(&path))?.len();
            files.push(OutFile { path, file, buf: Vec::with_capacity(1 << 16), len });
        }
        Ok(FileSink { files })
    }

    fn slot(kind: OutputKind) -> usize {
        OutputKind::ALL.iter().position(|k| *k == kind).expect("all kinds listed")
    }
}

impl Sink for FileSink {
    fn write(&mut self, record: &Output) -> Result<(), SinkError> {
        let f = &mut self.files[Self::slot(record.kind())];
        f.buf.extend_from_slice(record.to_json().as_bytes());
        f.buf.push(b'\n');
        Ok(())
    }

    fn flush(&mut self) -> Result<Vec<u8>, SinkError> {
        let mut cp = Checkpoint::default();
        for (i, f) in self.files.iter_mut().enumerate() {
            if !f.buf.is_empty() {
                f.file.seek(SeekFrom::Start(f.len)).map_err(io(&f.path))?;
                f.file.write_all(&f.buf).map_err(io(&f.path))?;
                f.file.sync_data().map_err(io(&f.path))?;
                f.len += f.buf.len() as u64;
                f.buf.clear();
            }
            cp.lengths[i] = f.len;
        }
        Ok(crate::state::codec::encode(&cp))
    }

    fn recover(&mut self, checkpoint: Option<&[u8]>) -> Result<(), SinkError> {
        let cp: Checkpoint = match checkpoint {
            Some(bytes) => crate::state::codec::decode(b"sink-checkpoint", bytes)
                .map_err(|e| SinkError::Inconsistent(e.to_string()))?,
            None => {
                // Fresh state: the outputs must be empty too, or they came from another run.
                if let Some(f) = self.files.iter().find(|f| f.len > 0) {
                    return Err(SinkError::Inconsistent(format!(
                        "output file {} is not empty but the data directory has no record of \
                         writing it; use an empty --output directory or the --data-dir that \
                         produced it",
                        f.path.display()
                    )));
                }
                Checkpoint::default()
            }
        };
        for (f, &committed) in self.files.iter_mut().zip(&cp.lengths) {
            f.buf.clear();
            if f.len < committed {
                return Err(SinkError::Inconsistent(format!(
                    "output file {} holds {} bytes but {} were committed; it was truncated or \
                     replaced outside shopscore: restore it, or start over with empty --output \
                     and --data-dir",
                    f.path.display(),
                    f.len,
                    committed
                )));
            }
            if f.len > committed {
                f.file.set_len(committed).map_err(io(&f.path))?;
                f.file.sync_data().map_err(io(&f.path))?;
                f.len = committed;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{DeadLetter, SourcePos};

    fn dl(line: u64) -> Output {
        Output::DeadLetter(DeadLetter {
            reason: "r".into(),
            reason_code: "malformed_json",
            source: SourcePos::File { file: "f".into(), line },
            raw: b"x".to_vec(),
            key: None,
        })
    }

    #[test]
    fn recover_truncates_uncommitted_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = FileSink::open(dir.path()).unwrap();
        s.recover(None).unwrap();
        s.write(&dl(1)).unwrap();
        let cp = s.flush().unwrap();
        s.write(&dl(2)).unwrap();
        s.flush().unwrap();
        drop(s);
        let path = dir.path().join("dead_letters.jsonl");
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
        let mut s = FileSink::open(dir.path()).unwrap();
        s.recover(Some(&cp)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1);
        assert!(text.contains("\"line\":1"));
    }

    #[test]
    fn fresh_state_refuses_foreign_outputs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("snapshots.jsonl"), "{}\n").unwrap();
        let mut s = FileSink::open(dir.path()).unwrap();
        let err = s.recover(None).unwrap_err().to_string();
        assert!(err.contains("snapshots.jsonl") && err.contains("--output"), "{err}");
    }
}
