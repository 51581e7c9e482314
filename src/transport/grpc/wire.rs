//! The protobuf wire format without a schema: read a message's fields and rewrite a
//! few of them, copying every other byte as it came. A reranked gRPC request is
//! patched this way instead of being decoded and re-encoded, so fields newer than
//! secondpass's generated stubs reach Qdrant intact.
//!
//! Semantics follow proto3: a scalar set twice takes the last value, occurrences of a
//! singular message field merge, each occurrence of a repeated message field is one
//! element. [`Edit::set`] therefore removes every occurrence and appends one.

/// How a field's value is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireType {
    Varint = 0,
    I64 = 1,
    Len = 2,
    StartGroup = 3,
    EndGroup = 4,
    I32 = 5,
}

impl WireType {
    fn from_bits(b: u64) -> Result<WireType, WireError> {
        Ok(match b {
            0 => WireType::Varint,
            1 => WireType::I64,
            2 => WireType::Len,
            3 => WireType::StartGroup,
            4 => WireType::EndGroup,
            5 => WireType::I32,
            other => return Err(WireError::WireType(other as u8)),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("message ends inside a field")]
    Truncated,
    #[error("varint longer than 10 bytes")]
    VarintTooLong,
    #[error("invalid wire type {0}")]
    WireType(u8),
    #[error("invalid field number")]
    FieldNumber,
    #[error("group not closed by its own end, or nested too deep")]
    Group,
    #[error("edit does not fit the message: {0}")]
    Mismatch(String),
}

/// One field occurrence as it was encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    pub number: u32,
    pub wire_type: WireType,
    /// The whole occurrence: key and value, byte for byte.
    pub raw: &'a [u8],
    /// The value: a varint's bytes, the fixed bytes, a length-delimited field's
    /// content (without its length) or a group's content (without its end).
    pub value: &'a [u8],
}

impl Field<'_> {
    /// A varint field's value.
    pub fn as_u64(&self) -> Option<u64> {
        match self.wire_type {
            WireType::Varint => read_varint(self.value).ok().map(|(v, _)| v),
            _ => None,
        }
    }
}

/// A varint at the start of `buf`: its value and length.
pub fn read_varint(buf: &[u8]) -> Result<(u64, usize), WireError> {
    let mut v: u64 = 0;
    for (i, &b) in buf.iter().enumerate() {
        if i == 10 {
            return Err(WireError::VarintTooLong);
        }
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((v, i + 1));
        }
    }
    Err(if buf.len() >= 10 {
        WireError::VarintTooLong
    } else {
        WireError::Truncated
    })
}

pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, number: u32, wt: WireType) {
    put_varint(out, (u64::from(number) << 3) | wt as u64);
}

/// Groups (deprecated, but legal in unknown fields) nest at most this deep, as in prost.
const MAX_GROUP_DEPTH: usize = 100;

/// The field at the start of `buf` and its length; `group` is the number of the group
/// being read, whose end tag stops it (returned as `None`).
fn read_field(
    buf: &[u8],
    group: Option<u32>,
    depth: usize,
) -> Result<Option<(Field<'_>, usize)>, WireError> {
    let (key, k) = read_varint(buf)?;
    let number = u32::try_from(key >> 3).map_err(|_| WireError::FieldNumber)?;
    if number == 0 || number > (1 << 29) - 1 {
        return Err(WireError::FieldNumber);
    }
    let wire_type = WireType::from_bits(key & 7)?;
    let rest = &buf[k..];
    let take = |n: usize| rest.get(..n).ok_or(WireError::Truncated);
    let (value, used) = match wire_type {
        WireType::Varint => {
            let (_, n) = read_varint(rest)?;
            (&rest[..n], n)
        }
        WireType::I64 => (take(8)?, 8),
        WireType::I32 => (take(4)?, 4),
        WireType::Len => {
            let (len, n) = read_varint(rest)?;
            let len = usize::try_from(len).map_err(|_| WireError::Truncated)?;
            let end = n.checked_add(len).ok_or(WireError::Truncated)?;
            (rest.get(n..end).ok_or(WireError::Truncated)?, end)
        }
        WireType::StartGroup => {
            if depth >= MAX_GROUP_DEPTH {
                return Err(WireError::Group);
            }
            let mut at = 0;
            while let Some((_, n)) = read_field(&rest[at..], Some(number), depth + 1)? {
                at += n;
            }
            // `at` is where the end tag starts; step over it.
            let (_, end_len) = read_varint(&rest[at..])?;
            (&rest[..at], at + end_len)
        }
        WireType::EndGroup => {
            return if group == Some(number) {
                Ok(None)
            } else {
                Err(WireError::Group)
            };
        }
    };
    let total = k + used;
    Ok(Some((
        Field {
            number,
            wire_type,
            raw: &buf[..total],
            value,
        },
        total,
    )))
}

/// Every field occurrence of `msg`, in order.
pub fn parse(msg: &[u8]) -> Result<Vec<Field<'_>>, WireError> {
    let mut fields = Vec::new();
    let mut at = 0;
    while at < msg.len() {
        let (f, n) = read_field(&msg[at..], None, 0)?.ok_or(WireError::Group)?;
        fields.push(f);
        at += n;
    }
    Ok(fields)
}

/// A new value for a field.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// int32/int64/uint32/uint64/bool/enum (not zigzag `sint`).
    Varint(u64),
    /// A length-delimited value: an encoded message, string or bytes.
    Bytes(Vec<u8>),
    Fixed32(u32),
    Fixed64(u64),
}

pub fn put_field(out: &mut Vec<u8>, number: u32, value: &Value) {
    match value {
        Value::Varint(v) => {
            put_key(out, number, WireType::Varint);
            put_varint(out, *v);
        }
        Value::Bytes(b) => put_len(out, number, b),
        Value::Fixed32(v) => {
            put_key(out, number, WireType::I32);
            out.extend_from_slice(&v.to_le_bytes());
        }
        Value::Fixed64(v) => {
            put_key(out, number, WireType::I64);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

fn put_len(out: &mut Vec<u8>, number: u32, content: &[u8]) {
    put_key(out, number, WireType::Len);
    put_varint(out, content.len() as u64);
    out.extend_from_slice(content);
}

/// Changes to one message. Every field it does not name is copied byte for byte and
/// in its place; named fields are written after them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Edit {
    set: Vec<(u32, Value)>,
    remove: Vec<u32>,
    each: Vec<(u32, Vec<Option<Edit>>)>,
    replace: Vec<(u32, Vec<Vec<u8>>)>,
}

impl Edit {
    pub fn new() -> Edit {
        Edit::default()
    }

    /// Field `number` takes `value`: every occurrence goes, one is appended.
    pub fn set(mut self, number: u32, value: Value) -> Edit {
        self.set.push((number, value));
        self
    }

    /// Field `number` goes (every occurrence).
    pub fn remove(mut self, number: u32) -> Edit {
        self.remove.push(number);
        self
    }

    /// Occurrence `k` of the length-delimited field `number` (element `k` of a repeated
    /// message field) is edited by `edits[k]` in place; `None` copies it as it was. The
    /// message must have exactly `edits.len()` occurrences.
    pub fn each(mut self, number: u32, edits: Vec<Option<Edit>>) -> Edit {
        self.each.push((number, edits));
        self
    }

    /// The repeated length-delimited field `number` becomes `values` (its elements'
    /// encoded contents, in order), written after the other fields.
    pub fn replace(mut self, number: u32, values: Vec<Vec<u8>>) -> Edit {
        self.replace.push((number, values));
        self
    }

    /// `msg` with this edit applied.
    pub fn apply(&self, msg: &[u8]) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::with_capacity(msg.len() + 16);
        self.apply_into(msg, &mut out)?;
        Ok(out)
    }

    fn drops(&self, n: u32) -> bool {
        self.remove.contains(&n)
            || self.set.iter().any(|(s, _)| *s == n)
            || self.replace.iter().any(|(r, _)| *r == n)
    }

    fn apply_into(&self, msg: &[u8], out: &mut Vec<u8>) -> Result<(), WireError> {
        let mut seen = vec![0usize; self.each.len()];
        for f in parse(msg)? {
            if self.drops(f.number) {
                continue;
            }
            let Some(slot) = self.each.iter().position(|(n, _)| *n == f.number) else {
                out.extend_from_slice(f.raw);
                continue;
            };
            let edits = &self.each[slot].1;
            let k = seen[slot];
            seen[slot] += 1;
            match (edits.get(k), f.wire_type) {
                (Some(None), _) => out.extend_from_slice(f.raw),
                (Some(Some(edit)), WireType::Len) => {
                    let mut inner = Vec::with_capacity(f.value.len() + 16);
                    edit.apply_into(f.value, &mut inner)?;
                    put_len(out, f.number, &inner);
                }
                (Some(Some(_)), wt) => {
                    return Err(WireError::Mismatch(format!(
                        "field {} is {wt:?}, not a message",
                        f.number
                    )))
                }
                (None, _) => {
                    return Err(WireError::Mismatch(format!(
                        "field {} occurs more than {} times",
                        f.number,
                        edits.len()
                    )))
                }
            }
        }
        for ((n, edits), count) in self.each.iter().zip(seen) {
            if count != edits.len() {
                return Err(WireError::Mismatch(format!(
                    "field {n} occurs {count} times, {} edits",
                    edits.len()
                )));
            }
        }
        for (n, values) in &self.replace {
            for v in values {
                put_len(out, *n, v);
            }
        }
        for (n, v) in &self.set {
            put_field(out, *n, v);
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
