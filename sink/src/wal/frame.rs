//! The log's frames: `[len u32][crc32 u32][payload]`, the payload one [`Op`].

use std::sync::Arc;

use bytes::Bytes;

/// One logged mutation.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    /// A record stored under `key` with this `seq`.
    Put {
        key: Arc<str>,
        seq: u64,
        received_ms: i64,
        json: Bytes,
    },
    /// Every record of `key` forgotten.
    Delete { key: Arc<str> },
}

const KIND_PUT: u8 = 1;
const KIND_DELETE: u8 = 2;
/// No single frame is larger than this: a length above it is corruption, not a record.
pub(super) const MAX_FRAME: u32 = 1 << 30;
/// Frame header: length and checksum of the payload.
pub(super) const HEADER_LEN: usize = 8;

/// Bytes of `op`'s payload (without the header).
fn payload_len(op: &Op) -> usize {
    match op {
        Op::Put { key, json, .. } => 21 + key.len() + json.len(),
        Op::Delete { key } => 1 + key.len(),
    }
}

/// A new buffer holding `op`'s frame.
pub(super) fn frame(op: &Op) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload_len(op) + HEADER_LEN);
    encode(op, &mut out);
    out
}

/// Appends `op`'s frame to `out`.
pub(super) fn encode(op: &Op, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    match op {
        Op::Put {
            key,
            seq,
            received_ms,
            json,
        } => {
            out.push(KIND_PUT);
            out.extend_from_slice(&seq.to_le_bytes());
            out.extend_from_slice(&received_ms.to_le_bytes());
            out.extend_from_slice(&(key.len() as u32).to_le_bytes());
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(json);
        }
        Op::Delete { key } => {
            out.push(KIND_DELETE);
            out.extend_from_slice(key.as_bytes());
        }
    }
    let payload = &out[start + HEADER_LEN..];
    let len = payload.len() as u32;
    let crc = crc32fast::hash(payload);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Splits a frame header into `(payload length, checksum)`.
pub(super) fn header(bytes: [u8; HEADER_LEN]) -> (u32, u32) {
    let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let crc = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    (len, crc)
}

/// Decodes one payload whose checksum matched; `None` if it does not decode.
pub(super) fn decode(payload: &[u8]) -> Option<Op> {
    match payload.first() {
        Some(&KIND_PUT) if payload.len() >= 21 => {
            let seq = u64::from_le_bytes(payload[1..9].try_into().unwrap_or_default());
            let received_ms = i64::from_le_bytes(payload[9..17].try_into().unwrap_or_default());
            let key_len =
                u32::from_le_bytes(payload[17..21].try_into().unwrap_or_default()) as usize;
            let key = payload
                .get(21..21 + key_len)
                .and_then(|k| std::str::from_utf8(k).ok())?;
            Some(Op::Put {
                key: Arc::from(key),
                seq,
                received_ms,
                json: Bytes::copy_from_slice(&payload[21 + key_len..]),
            })
        }
        Some(&KIND_DELETE) => std::str::from_utf8(&payload[1..])
            .ok()
            .map(|key| Op::Delete {
                key: Arc::from(key),
            }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_decodes_to_the_op_it_was_made_from() {
        let put = Op::Put {
            key: Arc::from("k/1"),
            seq: 7,
            received_ms: 1_700_000_000_123,
            json: Bytes::from_static(b"{\"a\":1}"),
        };
        for op in [
            put,
            Op::Delete {
                key: Arc::from("k/1"),
            },
        ] {
            let bytes = frame(&op);
            let (len, crc) = header(bytes[..HEADER_LEN].try_into().unwrap());
            let payload = &bytes[HEADER_LEN..];
            assert_eq!(len as usize, payload.len());
            assert_eq!(crc, crc32fast::hash(payload));
            assert_eq!(format!("{:?}", decode(payload)), format!("{:?}", Some(op)));
        }
    }
}
