//! A block: a fixed run of one archive's slots, stored as a presence bitmap and the present
//! values, compressed with pcodec when that is smaller (it usually is: regular series
//! compress to one or two bytes a value). Timestamps are implicit in the slot positions.
//!
//! Layout: `format u8 | slots u16 LE | bitmap ceil(slots/8) | values`, where `format` is 1
//! for raw little-endian f64 values and 2 for a pcodec chunk.

use crate::TsdbError;

const RAW: u8 = 1;
const PCO: u8 = 2;
/// pcodec's effort: lower is faster; 4 keeps most of the gain.
const PCO_LEVEL: usize = 4;

/// Encodes slots (None where nothing was written); `compress` asks for pcodec (worth it
/// for a block that is complete; a block still being filled is rewritten every flush, and
/// raw values make that cheap).
pub fn encode(slots: &[Option<f64>], compress: bool) -> Vec<u8> {
    let n = slots.len();
    let mut out = Vec::with_capacity(3 + n.div_ceil(8) + 8 * n);
    let mut bitmap = vec![0u8; n.div_ceil(8)];
    let mut values = Vec::with_capacity(n);
    for (i, slot) in slots.iter().enumerate() {
        if let Some(v) = slot {
            bitmap[i / 8] |= 1 << (i % 8);
            values.push(*v);
        }
    }
    let compressed = if compress && values.len() >= 16 {
        pco::standalone::simpler_compress(&values, PCO_LEVEL).ok()
    } else {
        None
    };
    let raw_len = 8 * values.len();
    match compressed {
        Some(bytes) if bytes.len() < raw_len => {
            out.push(PCO);
            out.extend_from_slice(&(n as u16).to_le_bytes());
            out.extend_from_slice(&bitmap);
            out.extend_from_slice(&bytes);
        }
        _ => {
            out.push(RAW);
            out.extend_from_slice(&(n as u16).to_le_bytes());
            out.extend_from_slice(&bitmap);
            for v in values {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    out
}

/// A delta record: the slots that changed, as `index u16 LE | present u8 | value f64 LE`
/// (the value only when present).
pub fn encode_delta(changed: &std::collections::BTreeMap<usize, Option<f64>>) -> Vec<u8> {
    let mut out = Vec::with_capacity(changed.len() * 11);
    for (&index, value) in changed {
        out.extend_from_slice(&(index as u16).to_le_bytes());
        match value {
            Some(v) => {
                out.push(1);
                out.extend_from_slice(&v.to_le_bytes());
            }
            None => out.push(0),
        }
    }
    out
}

/// Applies a delta record to a block's slots.
pub fn apply_delta(bytes: &[u8], slots: &mut [Option<f64>]) -> Result<(), TsdbError> {
    let corrupt = |why: &str| TsdbError::Corrupt(format!("delta: {why}"));
    let mut rest = bytes;
    while !rest.is_empty() {
        let (head, tail) = rest
            .split_at_checked(3)
            .ok_or_else(|| corrupt("short entry"))?;
        let index = u16::from_le_bytes([head[0], head[1]]) as usize;
        let value = match head[2] {
            0 => {
                rest = tail;
                None
            }
            1 => {
                let (v, tail) = tail
                    .split_at_checked(8)
                    .ok_or_else(|| corrupt("short value"))?;
                rest = tail;
                Some(f64::from_le_bytes([
                    v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7],
                ]))
            }
            _ => return Err(corrupt("bad presence byte")),
        };
        *slots
            .get_mut(index)
            .ok_or_else(|| corrupt("slot out of range"))? = value;
    }
    Ok(())
}

/// Whether a stored block is in the raw (uncompressed) format.
pub fn is_raw(bytes: &[u8]) -> bool {
    bytes.first() == Some(&RAW)
}

/// Decodes a block, refusing anything inconsistent.
pub fn decode(bytes: &[u8]) -> Result<Vec<Option<f64>>, TsdbError> {
    let mut slots = vec![None; slot_count(bytes)?];
    decode_into(bytes, &mut slots)?;
    Ok(slots)
}

fn slot_count(bytes: &[u8]) -> Result<usize, TsdbError> {
    bytes
        .get(1..3)
        .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
        .ok_or_else(|| TsdbError::Corrupt("block: no length".into()))
}

/// Decodes a block into `slots` (as many as the block has), refusing anything
/// inconsistent; on an error `slots` may hold part of the block.
pub fn decode_into(bytes: &[u8], slots: &mut [Option<f64>]) -> Result<(), TsdbError> {
    let corrupt = |why: &str| TsdbError::Corrupt(format!("block: {why}"));
    let (&format, rest) = bytes.split_first().ok_or_else(|| corrupt("empty"))?;
    let n = slot_count(bytes)?;
    if n != slots.len() {
        return Err(corrupt(&format!(
            "{n} slots where {} were expected",
            slots.len()
        )));
    }
    let bitmap = rest
        .get(2..2 + n.div_ceil(8))
        .ok_or_else(|| corrupt("short bitmap"))?;
    let payload = &rest[2 + n.div_ceil(8)..];
    let present: usize = bitmap.iter().map(|b| b.count_ones() as usize).sum();
    // Bits past the last slot must be clear.
    if n % 8 != 0 && bitmap.last().is_some_and(|b| b >> (n % 8) != 0) {
        return Err(corrupt("bitmap marks slots past the end"));
    }
    let values: Vec<f64> = match format {
        RAW => {
            if payload.len() != 8 * present {
                return Err(corrupt("raw payload has the wrong length"));
            }
            payload
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect()
        }
        PCO => pco::standalone::simple_decompress::<f64>(payload)
            .map_err(|e| corrupt(&e.to_string()))?,
        other => return Err(corrupt(&format!("unknown format {other}"))),
    };
    if values.len() != present {
        return Err(corrupt("value count does not match the bitmap"));
    }
    if present == n {
        // A complete block (the usual case once a block is folded): no bits to test.
        for (slot, value) in slots.iter_mut().zip(values) {
            *slot = Some(value);
        }
        return Ok(());
    }
    let mut values = values.into_iter();
    for (&byte, chunk) in bitmap.iter().zip(slots.chunks_mut(8)) {
        if byte == 0 {
            chunk.fill(None);
            continue;
        }
        for (bit, slot) in chunk.iter_mut().enumerate() {
            *slot = if byte & (1 << bit) != 0 {
                values.next()
            } else {
                None
            };
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let cases: Vec<Vec<Option<f64>>> = vec![
            vec![],
            vec![None; 360],
            vec![Some(1.5), None, Some(-2.0)],
            (0..360).map(|i| Some(f64::from(i % 7) * 10.0)).collect(),
            (0..360)
                .map(|i| (i % 3 != 0).then(|| (f64::from(i)).sin() * 1e3))
                .collect(),
            (0..360)
                .map(|i| {
                    Some(if i == 5 {
                        f64::NAN.max(0.0)
                    } else {
                        f64::INFINITY
                    })
                })
                .collect(),
        ];
        for slots in cases {
            let decoded = decode(&encode(&slots, true)).unwrap();
            assert_eq!(decode(&encode(&slots, false)).unwrap(), slots);
            assert_eq!(decoded, slots);
        }
    }

    #[test]
    fn regular_series_are_small() {
        // A counter-like series: whole numbers around a level.
        let slots: Vec<Option<f64>> = (0..360)
            .map(|i| Some(100.0 + f64::from((i * 7919) % 13)))
            .collect();
        let bytes = encode(&slots, true);
        assert!(is_raw(&encode(&slots, false)));
        assert!(
            bytes.len() < 360 * 2,
            "{} bytes for 360 values",
            bytes.len()
        );
    }

    #[test]
    fn deltas_apply_in_order() {
        let mut slots = vec![None; 4];
        let first: std::collections::BTreeMap<usize, Option<f64>> =
            [(0, Some(1.0)), (3, Some(2.0))].into();
        let second: std::collections::BTreeMap<usize, Option<f64>> =
            [(0, Some(5.0)), (3, None)].into();
        apply_delta(&encode_delta(&first), &mut slots).unwrap();
        apply_delta(&encode_delta(&second), &mut slots).unwrap();
        assert_eq!(slots, vec![Some(5.0), None, None, None]);
        assert!(apply_delta(&[1, 0], &mut slots).is_err());
        assert!(apply_delta(&[9, 0, 0], &mut slots).is_err());
        assert!(apply_delta(&[0, 0, 1, 1], &mut slots).is_err());
    }

    #[test]
    fn corruption_is_detected() {
        let bytes = encode(&[Some(1.0), Some(2.0)], true);
        for bad in [
            &[][..],
            &bytes[..2],
            &bytes[..bytes.len() - 1],
            &[9, 1, 0, 1][..],
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn decoding_into_a_reused_buffer_leaves_nothing_of_the_last_block() {
        let full: Vec<Option<f64>> = (0..360).map(|i| Some(f64::from(i))).collect();
        let sparse: Vec<Option<f64>> = (0..360).map(|i| (i % 90 == 0).then_some(7.0)).collect();
        let mut buffer = vec![None; 360];
        for compress in [true, false] {
            decode_into(&encode(&full, compress), &mut buffer).unwrap();
            assert_eq!(buffer, full);
            decode_into(&encode(&sparse, compress), &mut buffer).unwrap();
            assert_eq!(buffer, sparse);
        }
    }

    #[test]
    fn decoding_into_refuses_a_block_of_another_size_or_with_stray_bits() {
        let bytes = encode(&[Some(1.0), Some(2.0), None], false);
        let mut four = vec![None; 4];
        let err = decode_into(&bytes, &mut four).unwrap_err().to_string();
        assert!(err.contains("3 slots where 4 were expected"), "{err}");
        // Bit 3 set in a 3-slot bitmap.
        let mut stray = bytes.clone();
        stray[3] |= 1 << 3;
        let mut three = vec![None; 3];
        assert!(decode_into(&stray, &mut three).is_err());
    }
}
