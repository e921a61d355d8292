//! The vote, kept a second time outside the database: `vote` in the data
//! directory.
//!
//! Raft's safety needs a voter never to forget its vote: one that did could
//! vote twice in a term, or take entries from a leader of a term it had
//! already left behind, and let that leader commit what the real leader of
//! the later term will overwrite. The vote lives in RocksDB with the log; a
//! node whose database is damaged and set aside for a repair (`aside`) would
//! lose it with the rest. So every vote is also written here, after the
//! database has it, atomically (a temporary file, synced, renamed, the
//! directory synced), with a checksum; a repaired node starts from it, and a
//! node whose file is missing or damaged is not repaired by itself.
//!
//! Format, one line: `veritrail-vote 1 <term> <node id> <committed 0|1>
//! <SHA-256 in hex of everything before it, with its trailing space>`.

use std::io::Write as _;
use std::path::Path;

use openraft::Vote;
use sha2::{Digest, Sha256};

use crate::error::{Result, StoreError};

/// The file's name in the data directory.
pub const VOTE_FILE: &str = "vote";
const MAGIC: &str = "veritrail-vote 1";

fn digest(body: &str) -> String {
    Sha256::digest(body.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn encode(vote: &Vote<u64>) -> String {
    let body = format!(
        "{MAGIC} {} {} {} ",
        vote.leader_id.term,
        vote.leader_id.node_id,
        u8::from(vote.committed)
    );
    format!("{body}{}\n", digest(&body))
}

fn decode(text: &str) -> Option<Vote<u64>> {
    let line = text.strip_suffix('\n')?;
    let (body, sum) = line.rsplit_once(' ')?;
    let body = format!("{body} ");
    if digest(&body) != sum {
        return None;
    }
    let mut fields = body.strip_prefix(MAGIC)?.split_whitespace();
    let term = fields.next()?.parse().ok()?;
    let node_id = fields.next()?.parse().ok()?;
    let committed = match fields.next()? {
        "0" => false,
        "1" => true,
        _ => return None,
    };
    fields.next().is_none().then_some(())?;
    Some(if committed {
        Vote::new_committed(term, node_id)
    } else {
        Vote::new(term, node_id)
    })
}

/// Writes `vote` to `dir/vote`, durably and atomically.
pub fn write(dir: &Path, vote: &Vote<u64>) -> Result<()> {
    let path = dir.join(VOTE_FILE);
    let tmp = dir.join(format!("{VOTE_FILE}.tmp"));
    let io = |e| StoreError::io(format!("writing {}", path.display()), e);
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    file.write_all(encode(vote).as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)
}

/// The vote in `dir/vote`: `None` when there is no file, an integrity error
/// when it does not read back whole.
pub fn read(dir: &Path) -> Result<Option<Vote<u64>>> {
    let path = dir.join(VOTE_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io(format!("reading {}", path.display()), e)),
    };
    decode(&text)
        .map(Some)
        .ok_or_else(|| StoreError::Integrity {
            seq: None,
            detail: format!(
                "{} is damaged: the vote it holds cannot be trusted",
                path.display()
            ),
        })
}

/// Whether `a` is a later vote than `b`: a higher term, or the same term
/// committed where `b` is not. Votes of one term for different nodes are not
/// ordered: neither is later.
pub fn later(a: &Vote<u64>, b: Option<&Vote<u64>>) -> bool {
    match b {
        None => true,
        Some(b) => {
            a.leader_id.term > b.leader_id.term
                || (a.leader_id == b.leader_id && a.committed && !b.committed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vote_reads_back_and_damage_is_refused() {
        let dir = tempfile::TempDir::new().expect("dir");
        assert!(read(dir.path()).expect("no file").is_none());
        for vote in [Vote::new(7, 2), Vote::new_committed(9, 3)] {
            write(dir.path(), &vote).expect("write");
            assert_eq!(read(dir.path()).expect("read"), Some(vote));
        }
        let text = std::fs::read_to_string(dir.path().join(VOTE_FILE)).expect("text");
        // Pinned byte for byte: the checksum is SHA-256 of the line before it.
        assert_eq!(
            text,
            "veritrail-vote 1 9 3 1 \
             47c19e85da7793c6f84992b6e9b451314d6450f40faa3fd4730b0cfef9c258d7\n"
        );
        // A flipped digit of the term: the checksum no longer matches.
        std::fs::write(dir.path().join(VOTE_FILE), text.replacen(" 9 ", " 8 ", 1)).expect("w");
        assert!(matches!(
            read(dir.path()),
            Err(StoreError::Integrity { .. })
        ));
        std::fs::write(dir.path().join(VOTE_FILE), "veritrail-vote 1 9").expect("w");
        assert!(read(dir.path()).is_err());
    }

    #[test]
    fn later_is_a_higher_term_or_the_same_vote_committed() {
        let v = Vote::new(5, 1);
        assert!(later(&v, None));
        assert!(later(&Vote::new(6, 2), Some(&v)));
        assert!(later(&Vote::new_committed(5, 1), Some(&v)));
        assert!(!later(&v, Some(&v)));
        assert!(!later(&Vote::new(5, 2), Some(&v)));
        assert!(!later(&Vote::new(4, 1), Some(&v)));
    }
}
