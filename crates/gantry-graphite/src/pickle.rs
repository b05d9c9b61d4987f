//! Carbon's pickle protocol: frames of a 4-byte big-endian length and a pickle of
//! `[(path, (timestamp, value)), …]`, as carbon's senders (carbon-relay, graphite clients)
//! write them with pickle protocols 0 and 2.
//!
//! Only what such a list needs is decoded: lists, tuples, strings, integers, floats,
//! booleans and `None`, with the memo. An opcode that would name a global, call something or
//! build an object (`GLOBAL`, `REDUCE`, `BUILD`, `INST`, `OBJ`, `NEWOBJ`, …) is refused: it is
//! how a pickle runs code, and a metrics port must never do that.

use std::collections::HashMap;

use crate::plaintext::Point;
use crate::tags::normalise;

/// Why a pickle was refused. The connection that sent it should be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PickleError {
    #[error("pickle opcode {name} at byte {offset} is forbidden (it would load or call code)")]
    Forbidden { name: &'static str, offset: usize },
    #[error("pickle opcode 0x{opcode:02x} at byte {offset} is not supported")]
    Unsupported { opcode: u8, offset: usize },
    #[error("pickle is malformed at byte {offset}: {what}")]
    Malformed { offset: usize, what: &'static str },
    #[error("pickle ends without STOP")]
    Truncated,
    #[error("pickle expands to more than {0} values")]
    TooLarge(usize),
    #[error("pickle nests lists and tuples more than {0} deep")]
    TooDeep(u32),
    #[error("pickle is not a list of (path, (timestamp, value))")]
    NotAList,
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Mark,
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Value>),
    Tuple(Vec<Value>),
}

impl Value {
    fn cells(&self) -> usize {
        match self {
            Value::List(items) | Value::Tuple(items) => {
                1 + items.iter().map(Value::cells).sum::<usize>()
            }
            _ => 1,
        }
    }

    fn as_number(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            Value::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

/// What one pickle held.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Decoded {
    pub points: Vec<Point>,
    /// Entries that were not `(path, (timestamp, value))`, or had a bad path or a NaN.
    pub bad: usize,
}

/// Decodes one frame's payload. `now` replaces a timestamp of `-1`.
pub fn decode(payload: &[u8], now: i64) -> Result<Decoded, PickleError> {
    let value = unpickle(payload)?;
    let (Value::List(entries) | Value::Tuple(entries)) = value else {
        return Err(PickleError::NotAList);
    };
    let mut decoded = Decoded::default();
    for entry in entries {
        match point(entry, now) {
            Some(p) => decoded.points.push(p),
            None => decoded.bad += 1,
        }
    }
    Ok(decoded)
}

fn point(entry: Value, now: i64) -> Option<Point> {
    let (Value::Tuple(mut parts) | Value::List(mut parts)) = entry else {
        return None;
    };
    if parts.len() != 2 {
        return None;
    }
    let datapoint = parts.pop()?;
    let Value::Str(path) = parts.pop()? else {
        return None;
    };
    let (Value::Tuple(pair) | Value::List(pair)) = datapoint else {
        return None;
    };
    let [timestamp, value] = <[Value; 2]>::try_from(pair).ok()?;
    let timestamp = timestamp.as_number().filter(|t| t.is_finite())?;
    let value = value.as_number().filter(|v| !v.is_nan())?;
    let timestamp = if timestamp == -1.0 {
        now
    } else {
        timestamp as i64
    };
    if timestamp < 0 {
        return None;
    }
    Some(Point {
        path: normalise(&path).ok()?.into_owned(),
        value,
        timestamp,
    })
}

/// Most values (counting nested ones) a pickle may expand to, per input byte: bounds the
/// memory a hostile pickle can make us use with memo lookups.
const CELLS_PER_BYTE: usize = 4;

/// Deepest nesting of lists and tuples a pickle may have (carbon's needs 3: a list of
/// tuples holding a tuple). Values are walked, cloned and dropped recursively, so without a
/// bound a frame of `]]]…aaa` would overflow the stack.
const MAX_DEPTH: u32 = 32;

/// A value on the stack or in the memo, with how deeply lists and tuples nest in it (0 for
/// a scalar, 1 for a container of scalars).
type Entry = (Value, u32);

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or(PickleError::Truncated)?;
        let bytes = &self.data[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn byte(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn u32_le(&mut self) -> Result<u32, PickleError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn line(&mut self) -> Result<&'a str, PickleError> {
        let rest = &self.data[self.at..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(PickleError::Truncated)?;
        let at = self.at;
        self.at += end + 1;
        std::str::from_utf8(&rest[..end]).map_err(|_| PickleError::Malformed {
            offset: at,
            what: "text argument is not UTF-8",
        })
    }
}

fn forbidden(opcode: u8) -> Option<&'static str> {
    Some(match opcode {
        b'c' => "GLOBAL",
        0x93 => "STACK_GLOBAL",
        b'R' => "REDUCE",
        b'b' => "BUILD",
        b'i' => "INST",
        b'o' => "OBJ",
        0x81 => "NEWOBJ",
        0x92 => "NEWOBJ_EX",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        b'P' => "PERSID",
        b'Q' => "BINPERSID",
        _ => return None,
    })
}

fn unpickle(data: &[u8]) -> Result<Value, PickleError> {
    let mut r = Reader { data, at: 0 };
    let mut stack: Vec<Entry> = Vec::new();
    let mut memo: HashMap<u32, Entry> = HashMap::new();
    let nested = |depth: u32| {
        if depth > MAX_DEPTH {
            Err(PickleError::TooDeep(MAX_DEPTH))
        } else {
            Ok(depth)
        }
    };
    let budget = data.len().saturating_mul(CELLS_PER_BYTE).max(64);
    let mut cells = 0usize;
    loop {
        let offset = r.at;
        let opcode = r.byte()?;
        let malformed = |what| PickleError::Malformed { offset, what };
        if let Some(name) = forbidden(opcode) {
            return Err(PickleError::Forbidden { name, offset });
        }
        let pushed = match opcode {
            0x80 => {
                r.byte()?;
                None
            }
            0x95 => {
                r.take(8)?;
                None
            }
            b'.' => {
                return stack
                    .pop()
                    .map(|(value, _)| value)
                    .ok_or(malformed("STOP with an empty stack"))
            }
            b'(' => Some((Value::Mark, 0)),
            b']' => Some((Value::List(Vec::new()), 1)),
            b')' => Some((Value::Tuple(Vec::new()), 1)),
            b'N' => Some((Value::None, 0)),
            0x88 => Some((Value::Bool(true), 0)),
            0x89 => Some((Value::Bool(false), 0)),
            b'l' | b't' => {
                let (items, depth) = pop_to_mark(&mut stack).ok_or(malformed("no MARK"))?;
                let depth = nested(depth + 1)?;
                Some(if opcode == b'l' {
                    (Value::List(items), depth)
                } else {
                    (Value::Tuple(items), depth)
                })
            }
            0x85..=0x87 => {
                let n = usize::from(opcode - 0x84);
                if stack.len() < n || stack[stack.len() - n..].iter().any(|(v, _)| is_mark(v)) {
                    return Err(malformed("TUPLE with too few items"));
                }
                let (items, depth) = unzip(stack.split_off(stack.len() - n));
                Some((Value::Tuple(items), nested(depth + 1)?))
            }
            b'a' => {
                let (item, depth) = stack.pop().ok_or(malformed("APPEND with an empty stack"))?;
                match stack.last_mut() {
                    Some((Value::List(list), list_depth)) => {
                        *list_depth = nested((*list_depth).max(depth + 1))?;
                        list.push(item);
                    }
                    _ => return Err(malformed("APPEND to something not a list")),
                }
                None
            }
            b'e' => {
                let (items, depth) = pop_to_mark(&mut stack).ok_or(malformed("no MARK"))?;
                match stack.last_mut() {
                    Some((Value::List(list), list_depth)) => {
                        *list_depth = nested((*list_depth).max(depth + 1))?;
                        list.extend(items);
                    }
                    _ => return Err(malformed("APPENDS to something not a list")),
                }
                None
            }
            b'p' | b'q' | b'r' | 0x94 => {
                let index = match opcode {
                    b'p' => r
                        .line()?
                        .trim()
                        .parse()
                        .map_err(|_| malformed("bad PUT index"))?,
                    b'q' => u32::from(r.byte()?),
                    b'r' => r.u32_le()?,
                    _ => memo.len() as u32,
                };
                let top = stack.last().ok_or(malformed("PUT with an empty stack"))?;
                cells += top.0.cells();
                memo.insert(index, top.clone());
                None
            }
            b'g' | b'h' | b'j' => {
                let index = match opcode {
                    b'g' => r
                        .line()?
                        .trim()
                        .parse()
                        .map_err(|_| malformed("bad GET index"))?,
                    b'h' => u32::from(r.byte()?),
                    _ => r.u32_le()?,
                };
                let value = memo
                    .get(&index)
                    .ok_or(malformed("GET of an unknown memo entry"))?;
                Some(value.clone())
            }
            other => Some((scalar(other, &mut r, offset)?, 0)),
        };
        if let Some((value, depth)) = pushed {
            cells += value.cells();
            stack.push((value, depth));
        }
        if cells > budget {
            return Err(PickleError::TooLarge(budget));
        }
    }
}

/// A scalar opcode's value (its argument read from `r`), or why it cannot be one.
fn scalar(opcode: u8, r: &mut Reader<'_>, offset: usize) -> Result<Value, PickleError> {
    let malformed = |what| PickleError::Malformed { offset, what };
    match opcode {
        b'I' => {
            let text = r.line()?.trim();
            Ok(match text {
                "01" => Value::Bool(true),
                "00" => Value::Bool(false),
                _ => Value::Int(text.parse().map_err(|_| malformed("bad INT"))?),
            })
        }
        b'L' => {
            let text = r.line()?.trim();
            let text = text.strip_suffix('L').unwrap_or(text);
            Ok(Value::Int(
                text.parse().map_err(|_| malformed("LONG out of range"))?,
            ))
        }
        b'J' => {
            let b = r.take(4)?;
            Ok(Value::Int(i64::from(i32::from_le_bytes([
                b[0], b[1], b[2], b[3],
            ]))))
        }
        b'K' => Ok(Value::Int(i64::from(r.byte()?))),
        b'M' => {
            let b = r.take(2)?;
            Ok(Value::Int(i64::from(u16::from_le_bytes([b[0], b[1]]))))
        }
        0x8a => {
            let n = usize::from(r.byte()?);
            if n > 8 {
                return Err(malformed("LONG1 wider than 64 bits"));
            }
            let bytes = r.take(n)?;
            let mut value: i64 = 0;
            for (i, b) in bytes.iter().enumerate() {
                value |= i64::from(*b) << (8 * i);
            }
            if n > 0 && n < 8 && bytes[n - 1] & 0x80 != 0 {
                value -= 1i64 << (8 * n);
            }
            Ok(Value::Int(value))
        }
        b'F' => Ok(Value::Float(
            r.line()?
                .trim()
                .parse()
                .map_err(|_| malformed("bad FLOAT"))?,
        )),
        b'G' => {
            let b = r.take(8)?;
            Ok(Value::Float(f64::from_be_bytes([
                b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
            ])))
        }
        b'S' => Ok(Value::Str(
            unquote(r.line()?.trim()).ok_or(malformed("bad STRING"))?,
        )),
        b'V' => Ok(Value::Str(r.line()?.to_string())),
        b'T' | b'B' | b'X' => {
            let n = r.u32_le()? as usize;
            Ok(Value::Str(
                text(r.take(n)?).ok_or(malformed("string is not UTF-8"))?,
            ))
        }
        b'U' | b'C' | 0x8c => {
            let n = usize::from(r.byte()?);
            Ok(Value::Str(
                text(r.take(n)?).ok_or(malformed("string is not UTF-8"))?,
            ))
        }
        other => Err(PickleError::Unsupported {
            opcode: other,
            offset,
        }),
    }
}

/// The values above the topmost mark (removed with it), and how deeply the deepest nests.
fn pop_to_mark(stack: &mut Vec<Entry>) -> Option<(Vec<Value>, u32)> {
    let mark = stack.iter().rposition(|(v, _)| is_mark(v))?;
    let items = stack.split_off(mark + 1);
    stack.pop();
    Some(unzip(items))
}

fn is_mark(value: &Value) -> bool {
    matches!(value, Value::Mark)
}

/// Values without their depths, and the deepest depth.
fn unzip(entries: Vec<Entry>) -> (Vec<Value>, u32) {
    let depth = entries.iter().map(|(_, d)| *d).max().unwrap_or(0);
    (entries.into_iter().map(|(v, _)| v).collect(), depth)
}

fn text(bytes: &[u8]) -> Option<String> {
    std::str::from_utf8(bytes).ok().map(str::to_string)
}

/// A protocol-0 `STRING` argument: a Python repr in single or double quotes.
fn unquote(repr: &str) -> Option<String> {
    let quote = repr.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let inner = repr.strip_prefix(quote)?.strip_suffix(quote)?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'x' => {
                let hex: String = chars.by_ref().take(2).collect();
                out.push(char::from(u8::from_str_radix(&hex, 16).ok()?));
            }
            other => out.push(other),
        }
    }
    Some(out)
}

/// Splits a byte stream into pickle frames (4-byte big-endian length, then the payload).
#[derive(Debug, Default)]
pub struct FrameBuffer {
    buffer: Vec<u8>,
}

impl FrameBuffer {
    /// Feeds a chunk; calls `each` with every complete payload. Refuses a frame announced
    /// larger than `max_frame` (the connection should then be closed).
    pub fn push(
        &mut self,
        chunk: &[u8],
        max_frame: usize,
        mut each: impl FnMut(&[u8]),
    ) -> Result<(), usize> {
        self.buffer.extend_from_slice(chunk);
        let mut at = 0;
        while self.buffer.len() - at >= 4 {
            let b = &self.buffer[at..at + 4];
            let len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
            if len > max_frame {
                return Err(len);
            }
            if self.buffer.len() - at - 4 < len {
                break;
            }
            each(&self.buffer[at + 4..at + 4 + len]);
            at += 4 + len;
        }
        self.buffer.drain(..at);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    /// `pickle.dumps([('a.b', (1700000000, 1.5)), ('c;x=1', (1700000010, 2))], protocol=2)`
    const PROTOCOL_2: &[u8] = b"\x80\x02]q\x00(U\x03a.bq\x01J\x00\xf1SeG?\xf8\x00\x00\x00\x00\x00\x00\x86q\x02\x86q\x03U\x05c;x=1q\x04J\n\xf1SeK\x02\x86q\x05\x86q\x06e.";

    /// The same list with `protocol=0`.
    const PROTOCOL_0: &[u8] = b"(lp0\n(S'a.b'\np1\n(I1700000000\nF1.5\ntp2\ntp3\na(S'c;x=1'\np4\n(I1700000010\nI2\ntp5\ntp6\na.";

    /// The same list as Python 3 writes it (unicode strings: `X` and `V`).
    const PROTOCOL_2_PY3: &[u8] = b"\x80\x02]q\x00(X\x03\x00\x00\x00a.bq\x01J\x00\xf1SeG?\xf8\x00\x00\x00\x00\x00\x00\x86q\x02\x86q\x03X\x05\x00\x00\x00c;x=1q\x04J\n\xf1SeK\x02\x86q\x05\x86q\x06e.";
    const PROTOCOL_0_PY3: &[u8] = b"(lp0\n(Va.b\np1\n(I1700000000\nF1.5\ntp2\ntp3\na(Vc;x=1\np4\n(I1700000010\nI2\ntp5\ntp6\na.";

    fn expected() -> Vec<Point> {
        vec![
            Point {
                path: "a.b".into(),
                value: 1.5,
                timestamp: 1_700_000_000,
            },
            Point {
                path: "c;x=1".into(),
                value: 2.0,
                timestamp: 1_700_000_010,
            },
        ]
    }

    #[test]
    fn decodes_what_carbon_senders_write() {
        assert_eq!(
            decode(PROTOCOL_2, NOW).unwrap(),
            Decoded {
                points: expected(),
                bad: 0
            }
        );
        assert_eq!(
            decode(PROTOCOL_0, NOW).unwrap(),
            Decoded {
                points: expected(),
                bad: 0
            }
        );
        assert_eq!(
            decode(PROTOCOL_2_PY3, NOW).unwrap(),
            Decoded {
                points: expected(),
                bad: 0
            }
        );
        assert_eq!(
            decode(PROTOCOL_0_PY3, NOW).unwrap(),
            Decoded {
                points: expected(),
                bad: 0
            }
        );
    }

    #[test]
    fn refuses_code() {
        // `cos\nsystem\n(S'echo hi'\ntR.`: the classic pickle that runs a command.
        let evil = b"cos\nsystem\n(S'echo hi'\ntR.";
        assert_eq!(
            decode(evil, NOW),
            Err(PickleError::Forbidden {
                name: "GLOBAL",
                offset: 0
            })
        );
        for (opcode, name) in [
            (b'R', "REDUCE"),
            (b'b', "BUILD"),
            (0x93, "STACK_GLOBAL"),
            (0x81, "NEWOBJ"),
            (b'i', "INST"),
        ] {
            let mut data = b"\x80\x02]".to_vec();
            data.push(opcode);
            assert_eq!(
                decode(&data, NOW),
                Err(PickleError::Forbidden { name, offset: 3 })
            );
        }
    }

    #[test]
    fn malformed_and_hostile() {
        assert_eq!(decode(b"\x80\x02]", NOW), Err(PickleError::Truncated));
        assert_eq!(
            decode(b"}.", NOW),
            Err(PickleError::Unsupported {
                opcode: b'}',
                offset: 0
            })
        );
        assert!(matches!(
            decode(b"a.", NOW),
            Err(PickleError::Malformed { .. })
        ));
        assert_eq!(decode(b"K\x05.", NOW), Err(PickleError::NotAList));
        // Memo amplification: a list fetched from the memo over and over.
        let mut bomb = b"](K\x01K\x01K\x01K\x01K\x01K\x01K\x01K\x01eq\x00".to_vec();
        bomb.extend(std::iter::repeat_n(b"h\x00".as_slice(), 200).flatten());
        assert!(matches!(decode(&bomb, NOW), Err(PickleError::TooLarge(_))));
        // Lists inside lists, far deeper than a stack could walk: refused, not followed.
        let mut deep = vec![b']'; 1_000_000];
        deep.extend(std::iter::repeat_n(b'a', 999_999));
        deep.push(b'.');
        assert_eq!(decode(&deep, NOW), Err(PickleError::TooDeep(MAX_DEPTH)));
        let mut tuples = vec![b'K', 1];
        tuples.extend(std::iter::repeat_n(0x85, 100));
        tuples.push(b'.');
        assert!(decode(&tuples, NOW).is_err());
        let mut marked = vec![b'('; 100];
        marked.extend(std::iter::repeat_n(b'l', 100));
        marked.push(b'.');
        assert!(decode(&marked, NOW).is_err());
    }

    #[test]
    fn bad_entries_are_counted_and_good_ones_kept() {
        // [('ok', (1, 2)), ('nan', (1, nan)), 5, ('x;bad', (1, 1))]
        let mut data = b"(lp0\n(S'ok'\n(I1\nI2\nttp1\na(S'nan'\n(I1\nFnan\nttp2\naI5\na(S'x;bad'\n(I1\nI1\nttp3\na.".to_vec();
        let decoded = decode(&data, NOW).unwrap();
        assert_eq!(
            decoded.points,
            vec![Point {
                path: "ok".into(),
                value: 2.0,
                timestamp: 1
            }]
        );
        assert_eq!(decoded.bad, 3);
        data.truncate(3);
        assert!(decode(&data, NOW).is_err());
    }

    #[test]
    fn frames() {
        let mut buffer = FrameBuffer::default();
        let mut frames = Vec::new();
        let mut stream = (PROTOCOL_2.len() as u32).to_be_bytes().to_vec();
        stream.extend_from_slice(PROTOCOL_2);
        stream.extend_from_slice(&(PROTOCOL_0.len() as u32).to_be_bytes());
        stream.extend_from_slice(PROTOCOL_0);
        for chunk in stream.chunks(7) {
            buffer
                .push(chunk, 1 << 20, |p| frames.push(p.to_vec()))
                .unwrap();
        }
        assert_eq!(frames, vec![PROTOCOL_2.to_vec(), PROTOCOL_0.to_vec()]);
        assert_eq!(
            buffer.push(&u32::MAX.to_be_bytes(), 1 << 20, |_| {}),
            Err(u32::MAX as usize)
        );
    }
}
