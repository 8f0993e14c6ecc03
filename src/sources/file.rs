//! JSON-lines file input (SPEC §8, §9): one record per line, read in file order, from a
//! committed byte position.
//!
//! Empty and whitespace-only lines are skipped; `\n` and `\r\n` line ends are accepted; a
//! UTF-8 byte-order mark at the start of a file is skipped; a last line without a line end
//! is still a record. Lines are returned as bytes, exactly as read minus the terminator,
//! so a dead letter can carry the original text (or bytes, when not UTF-8).

use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// A committed read position in one file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePosition {
    /// Bytes consumed.
    pub offset: u64,
    /// Lines consumed (1-based number of the last consumed line).
    pub line: u64,
}

/// Errors reading input files.
#[derive(Debug, Error)]
pub enum SourceError {
    #[error("cannot read input {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error(
        "input {path} has {len} bytes but {offset} were already consumed from it: it was \
         truncated or replaced; restore it, or use a fresh --data-dir to start over"
    )]
    Shrunk { path: String, len: u64, offset: u64 },
}

/// Reads records from one file.
pub struct FileSource {
    path: PathBuf,
    reader: BufReader<File>,
    pos: FilePosition,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

impl FileSource {
    /// Opens `path` and seeks to `start`.
    pub fn open(path: &Path, start: FilePosition) -> Result<FileSource, SourceError> {
        let err = |source| SourceError::Io { path: path.display().to_string(), source };
        let mut file = File::open(path).map_err(err)?;
        let len = file.metadata().map_err(err)?.len();
        if len < start.offset {
            return Err(SourceError::Shrunk { path: path.display().to_string(), len, offset: start.offset });
        }
        file.seek(SeekFrom::Start(start.offset)).map_err(err)?;
        Ok(FileSource {
            path: path.to_path_buf(),
            reader: BufReader::with_capacity(1 << 20, file),
            pos: start,
        })
    }

    /// The position after the last record returned.
    pub fn position(&self) -> FilePosition {
        self.pos
    }

    /// Reads the next non-blank record into `buf` (cleared first, terminator removed) and
    /// returns its 1-based line number, or `None` at end of file.
    pub fn next_record(&mut self, buf: &mut Vec<u8>) -> Result<Option<u64>, SourceError> {
        loop {
            buf.clear();
            let n = self
                .reader
                .read_until(b'\n', buf)
                .map_err(|source| SourceError::Io { path: self.path.display().to_string(), source })?;
            if n == 0 {
                return Ok(None);
            }
            let at_start = self.pos.offset == 0;
            self.pos.offset += n as u64;
            self.pos.line += 1;
            if buf.last() == Some(&b'\n') {
                buf.pop();
                if buf.last() == Some(&b'\r') {
                    buf.pop();
                }
            }
            if at_start && buf.starts_with(BOM) {
                buf.drain(..BOM.len());
            }
            if buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Ok(Some(self.pos.line));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(src: &mut FileSource) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        while let Some(line) = src.next_record(&mut buf).unwrap() {
            out.push((line, buf.clone()));
        }
        out
    }

    #[test]
    fn bom_crlf_blank_lines_and_unterminated_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        std::fs::write(&path, b"\xEF\xBB\xBF{\"a\":1}\r\n\n  \t\r\n{\"b\":2}\n\xff\xfe\n{\"c\":3}").unwrap();
        let mut src = FileSource::open(&path, FilePosition::default()).unwrap();
        let got = read_all(&mut src);
        assert_eq!(
            got,
            vec![
                (1, b"{\"a\":1}".to_vec()),
                (4, b"{\"b\":2}".to_vec()),
                (5, b"\xff\xfe".to_vec()),
                (6, b"{\"c\":3}".to_vec()),
            ]
        );
        let end = src.position();
        assert_eq!(end.offset, std::fs::metadata(&path).unwrap().len());

        // Resuming from a committed position continues with the next line number.
        let mut src = FileSource::open(&path, FilePosition { offset: 26, line: 4 }).unwrap();
        assert_eq!(read_all(&mut src)[0], (5, b"\xff\xfe".to_vec()));
    }

    #[test]
    fn shrunk_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        std::fs::write(&path, b"{}\n").unwrap();
        let err = FileSource::open(&path, FilePosition { offset: 100, line: 9 }).err().unwrap();
        assert!(err.to_string().contains("truncated or replaced"), "{err}");
    }
}
