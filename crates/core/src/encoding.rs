//! The primitives of the canonical encoding: big-endian integers and
//! `u32`-length-prefixed byte strings, written and read with bounds checks.
//!
//! The reader never panics and never allocates more than the input it was given:
//! every length is checked against the bytes that remain before anything is copied.

use crate::Error;

/// Appends canonical primitives to a byte buffer.
#[derive(Debug)]
pub(crate) struct Writer<'a> {
    buf: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(buf: &'a mut Vec<u8>) -> Self {
        Writer { buf }
    }

    pub(crate) fn u8(&mut self, value: u8) {
        self.buf.push(value);
    }

    pub(crate) fn u32(&mut self, value: u32) {
        self.buf.extend_from_slice(&value.to_be_bytes());
    }

    pub(crate) fn u64(&mut self, value: u64) {
        self.buf.extend_from_slice(&value.to_be_bytes());
    }

    pub(crate) fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// A `u32` length, then the bytes. Callers guarantee the length fits: every
    /// field is bounded far below 4 GiB by the format maxima.
    pub(crate) fn bytes(&mut self, bytes: &[u8]) {
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        debug_assert!(
            (len as usize) == bytes.len(),
            "field longer than u32::MAX bytes"
        );
        self.u32(len);
        self.raw(bytes);
    }
}

/// Reads canonical primitives from a byte slice, tracking the offset for errors.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    input: &'a [u8],
    offset_bytes: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(input: &'a [u8]) -> Self {
        Reader {
            input,
            offset_bytes: 0,
        }
    }

    pub(crate) fn offset_bytes(&self) -> usize {
        self.offset_bytes
    }

    pub(crate) fn error(&self, reason: &'static str) -> Error {
        Error::Decode {
            offset_bytes: self.offset_bytes,
            reason,
        }
    }

    fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], Error> {
        let rest = &self.input[self.offset_bytes..];
        if rest.len() < len {
            return Err(self.error(what));
        }
        self.offset_bytes += len;
        Ok(&rest[..len])
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.take(1, "input ends inside a one-byte field")?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Error> {
        let bytes = self.take(4, "input ends inside a 32-bit integer")?;
        let mut array = [0u8; 4];
        array.copy_from_slice(bytes);
        Ok(u32::from_be_bytes(array))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, Error> {
        let bytes = self.take(8, "input ends inside a 64-bit integer")?;
        let mut array = [0u8; 8];
        array.copy_from_slice(bytes);
        Ok(u64::from_be_bytes(array))
    }

    pub(crate) fn array32(&mut self) -> Result<[u8; 32], Error> {
        let bytes = self.take(32, "input ends inside a 32-byte hash")?;
        let mut array = [0u8; 32];
        array.copy_from_slice(bytes);
        Ok(array)
    }

    /// A length-prefixed byte string of at most `max_bytes`.
    pub(crate) fn bytes(&mut self, max_bytes: usize) -> Result<&'a [u8], Error> {
        let len = self.u32()? as usize;
        if len > max_bytes {
            return Err(self.error("length prefix exceeds the format maximum for this field"));
        }
        self.take(len, "length prefix runs past the end of the input")
    }

    /// A length-prefixed UTF-8 string of at most `max_bytes`.
    pub(crate) fn string(&mut self, max_bytes: usize) -> Result<String, Error> {
        let start = self.offset_bytes;
        let bytes = self.bytes(max_bytes)?;
        match std::str::from_utf8(bytes) {
            Ok(text) => Ok(text.to_owned()),
            Err(_) => Err(Error::Decode {
                offset_bytes: start,
                reason: "string field is not valid UTF-8",
            }),
        }
    }

    /// A presence tag: exactly 0 (absent) or 1 (present). Any other value is
    /// rejected, so that each entry has exactly one encoding.
    pub(crate) fn presence(&mut self) -> Result<bool, Error> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => {
                self.offset_bytes -= 1;
                Err(self.error("presence tag must be 0 or 1"))
            }
        }
    }

    pub(crate) fn finish(&self) -> Result<(), Error> {
        if self.offset_bytes != self.input.len() {
            return Err(self.error("trailing bytes after the entry"));
        }
        Ok(())
    }
}
