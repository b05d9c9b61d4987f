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
        PCO => decompress(payload, present).map_err(|why| corrupt(&why))?,
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

/// A pcodec chunk's values, exactly `present` of them (as many as the bitmap marks: the
/// chunk's own counts are never trusted for an allocation, and a damaged header can claim
/// billions). pcodec checks some properties of what it reads only with debug assertions (a
/// damaged chunk of quantised floats trips one); such a panic is caught and reported as
/// damage, so a debug build reads a damaged block as a release build does: as corrupt.
fn decompress(payload: &[u8], present: usize) -> Result<Vec<f64>, String> {
    let read = std::panic::catch_unwind(|| {
        let mut values = vec![0.0; present];
        let progress = pco::standalone::simple_decompress_into::<f64>(payload, &mut values)
            .map_err(|e| e.to_string())?;
        if progress.n_processed != present || !progress.finished {
            return Err("value count does not match the bitmap".to_string());
        }
        Ok(values)
    });
    read.unwrap_or_else(|_| Err("the compressed values are damaged".to_string()))
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

    /// A compressed block whose values disagree in number with its bitmap is refused, and
    /// a damaged count in the compressed header allocates nothing for it.
    #[test]
    fn compressed_values_must_match_the_bitmap() {
        let slots: Vec<Option<f64>> = (0..64).map(|i| Some(f64::from(i))).collect();
        let bytes = encode(&slots, true);
        assert!(!is_raw(&bytes));
        assert_eq!(decode(&bytes).unwrap(), slots);
        // One slot fewer in the bitmap than values in the chunk, and one more.
        for (slot, set) in [(0, false), (64, true)] {
            let mut n = slots.clone();
            n.push(None);
            let mut bad = encode(&n, true);
            if set {
                bad[3 + slot / 8] |= 1 << (slot % 8);
            } else {
                bad[3 + slot / 8] &= !(1 << (slot % 8));
            }
            assert!(decode(&bad).is_err(), "bitmap slot {slot} set {set}");
        }
        // A compressed block (found by the tsdb_block fuzz target) whose header claims
        // about 24 billion values: decoding it once asked for 192 GB and aborted.
        const HUGE_HINT: &[u8] = &[
            0x02, 0x68, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xc7, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x70, 0x63, 0x6f, 0x21, 0x02, 0x28, 0x5a, 0x03,
            0x06, 0x67, 0x01, 0x00, 0xa3, 0x12, 0x62, 0x02, 0x00, 0x01, 0x60, 0xff, 0xfd, 0xff,
            0xff, 0xff, 0xff, 0xaf, 0xc2, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02,
            0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x09, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x27, 0xe0, 0x9c, 0x78, 0x7c, 0xa2, 0x02,
            0xa9, 0xac, 0x1f, 0xb2, 0x06, 0x66, 0x00, 0x00, 0x00, 0x00, 0x0e, 0x40, 0x00, 0x02,
            0x08, 0x4c, 0x00, 0x41, 0x09, 0x20, 0x35, 0x01, 0x84, 0x27, 0x80, 0xc0, 0x04, 0x10,
            0x9e, 0x00, 0xa2, 0x13, 0x40, 0x78, 0x02, 0xc8, 0x4f, 0x00, 0xf5, 0x09, 0x20, 0x3f,
            0x01, 0xfc, 0x27, 0x80, 0xfc, 0x04, 0xf0, 0x1f, 0x00,
        ];
        assert!(decode(HUGE_HINT).is_err());
        // A damaged chunk of quantised floats (also from the fuzz target), which trips a
        // debug assertion inside pcodec: corrupt, in debug builds as in release ones.
        const BAD_QUANT: &[u8] = &[
            0x02, 0x68, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x70, 0x63, 0x6f, 0x21, 0x02, 0x08, 0x5a, 0x03,
            0x06, 0x67, 0x01, 0x00, 0xa3, 0x12, 0x62, 0x02, 0x00, 0x01, 0x60, 0xff, 0xfd, 0xff,
            0xff, 0xff, 0xff, 0xaf, 0xc2, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02,
            0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2d, 0x00, 0x00, 0x00, 0x00,
            0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x27, 0xe0, 0x9c, 0x78, 0x7c, 0xa2, 0x02, 0xa9, 0xac, 0x1f, 0xb2, 0x06, 0x66, 0x00,
            0x00, 0x00, 0x00, 0x0e, 0x40, 0x00, 0x02, 0x08, 0x4c, 0x00, 0x41, 0x09, 0x20, 0x30,
            0x01, 0x84, 0x27, 0x80, 0x22, 0x22, 0x22, 0xdd, 0xdd, 0xdd, 0xdd, 0xdd, 0xdd, 0xdd,
            0xc8, 0x4f, 0x00, 0xf5, 0x09, 0x20, 0x3f, 0x01, 0xfc, 0x27, 0x80, 0xfc, 0x04, 0xb0,
            0x1f, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf0, 0x3f, 0x03,
            0x00, 0x00,
        ];
        assert!(decode(BAD_QUANT).is_err());
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
