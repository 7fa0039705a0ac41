//! The Redis side: RESP2 encoding of commands and an incremental parser.

use std::io;

use bytes::{Buf, Bytes, BytesMut};

use crate::wire::{invalid, Parse};

/// A RESP2 value.
#[derive(Debug)]
pub enum Value {
    // Read only through Debug, in error messages.
    #[allow(dead_code)]
    Simple(Bytes),
    Error(Bytes),
    Int(i64),
    Bulk(Option<Bytes>),
    Array(Option<Vec<Value>>),
}

impl Value {
    pub fn into_array(self) -> io::Result<Vec<Value>> {
        match self {
            Value::Array(Some(items)) => Ok(items),
            other => Err(invalid(format!("expected an array, got {other:?}"))),
        }
    }
    pub fn into_bulk(self) -> io::Result<Bytes> {
        match self {
            Value::Bulk(Some(b)) => Ok(b),
            other => Err(invalid(format!("expected a bulk string, got {other:?}"))),
        }
    }
    pub fn ok(self) -> io::Result<Value> {
        match self {
            Value::Error(e) => Err(invalid(format!(
                "redis error: {}",
                String::from_utf8_lossy(&e)
            ))),
            v => Ok(v),
        }
    }
}

/// A command as a RESP array of bulk strings.
pub fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// One whole RESP value.
pub struct Resp;

impl Parse for Resp {
    type Out = Value;
    fn parse(buf: &mut BytesMut) -> io::Result<Option<Value>> {
        let Some(end) = complete(buf, 0)? else {
            return Ok(None);
        };
        let mut frame = buf.split_to(end).freeze();
        let value = build(&mut frame)?;
        Ok(Some(value))
    }
}

fn line_end(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|p| from + p)
}

fn number(bytes: &[u8]) -> io::Result<i64> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("bad RESP number"))
}

/// Where the value starting at `pos` ends, if it is all in `buf`.
fn complete(buf: &[u8], pos: usize) -> io::Result<Option<usize>> {
    let Some(&kind) = buf.get(pos) else {
        return Ok(None);
    };
    let Some(eol) = line_end(buf, pos + 1) else {
        return Ok(None);
    };
    let after = eol + 2;
    match kind {
        b'+' | b'-' | b':' => Ok(Some(after)),
        b'$' => {
            let len = number(&buf[pos + 1..eol])?;
            if len < 0 {
                return Ok(Some(after));
            }
            let end = after + len as usize + 2;
            Ok((buf.len() >= end).then_some(end))
        }
        b'*' => {
            let n = number(&buf[pos + 1..eol])?;
            let mut at = after;
            for _ in 0..n.max(0) {
                match complete(buf, at)? {
                    Some(next) => at = next,
                    None => return Ok(None),
                }
            }
            Ok(Some(at))
        }
        other => Err(invalid(format!("unknown RESP type byte {other:#x}"))),
    }
}

/// Builds the value at the front of a buffer known to be complete.
fn build(buf: &mut Bytes) -> io::Result<Value> {
    let kind = buf[0];
    let eol = line_end(buf, 1).ok_or_else(|| invalid("truncated RESP"))?;
    let head = buf.slice(1..eol);
    buf.advance(eol + 2);
    Ok(match kind {
        b'+' => Value::Simple(head),
        b'-' => Value::Error(head),
        b':' => Value::Int(number(&head)?),
        b'$' => {
            let len = number(&head)?;
            if len < 0 {
                Value::Bulk(None)
            } else {
                let data = buf.split_to(len as usize);
                buf.advance(2);
                Value::Bulk(Some(data))
            }
        }
        b'*' => {
            let n = number(&head)?;
            if n < 0 {
                Value::Array(None)
            } else {
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(build(buf)?);
                }
                Value::Array(Some(items))
            }
        }
        other => return Err(invalid(format!("unknown RESP type byte {other:#x}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_and_partial() {
        let whole = b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n:7\r\n";
        for cut in 0..whole.len() - 4 {
            let mut buf = BytesMut::from(&whole[..cut]);
            if cut < whole.len() - 4 {
                assert!(Resp::parse(&mut buf).unwrap().is_none(), "cut {cut}");
            }
        }
        let mut buf = BytesMut::from(&whole[..]);
        let items = Resp::parse(&mut buf)
            .unwrap()
            .unwrap()
            .into_array()
            .unwrap();
        assert_eq!(items.len(), 3);
        assert!(matches!(
            Resp::parse(&mut buf).unwrap(),
            Some(Value::Int(7))
        ));
        assert!(buf.is_empty());
    }
}
