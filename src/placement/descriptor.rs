//! Fixed binary descriptors of an inference's tensors: where each lies in a shared region, its
//! type and shape. They travel in the shared regions themselves (after the tensors), so a request
//! costs no JSON and no socket message; only their offset and length go through the mailbox.
//!
//! Layout, little-endian: `u32` tensor count, then per tensor `u32` type (index in
//! [`DataType::ALL`]), `u32` rank, `u64` offset, `u64` length, `rank × u64` dimensions; a request
//! then has `u32` output count and one `u32` signature index per output.

use crate::tensor::DataType;

/// Where one tensor lies in a region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub dtype: DataType,
    pub shape: Vec<usize>,
    pub offset: usize,
    pub len: usize,
}

/// Largest rank accepted: a corrupt descriptor must not make the reader allocate gigabytes.
const MAX_RANK: usize = 64;

/// Appends the descriptor of `slots` to `out`.
pub fn encode_slots(slots: &[Slot], out: &mut Vec<u8>) {
    put_u32(out, slots.len());
    for slot in slots {
        let code = DataType::ALL
            .iter()
            .position(|d| *d == slot.dtype)
            .expect("every DataType is in ALL");
        put_u32(out, code);
        put_u32(out, slot.shape.len());
        out.extend_from_slice(&(slot.offset as u64).to_le_bytes());
        out.extend_from_slice(&(slot.len as u64).to_le_bytes());
        for &dim in &slot.shape {
            out.extend_from_slice(&(dim as u64).to_le_bytes());
        }
    }
}

/// Appends a request's descriptor: its inputs, then the outputs it wants.
pub fn encode_request(inputs: &[Slot], outputs: &[usize], out: &mut Vec<u8>) {
    encode_slots(inputs, out);
    put_u32(out, outputs.len());
    for &index in outputs {
        put_u32(out, index);
    }
}

/// Reads a descriptor written by [`encode_slots`]; `region_len` bounds every slot.
pub fn decode_slots(reader: &mut Reader<'_>, region_len: usize) -> Result<Vec<Slot>, String> {
    let count = reader.u32()? as usize;
    // Each slot takes at least 24 bytes: a count beyond what is left is corrupt.
    if count > reader.remaining() / 24 {
        return Err(format!("descriptor announces {count} tensors"));
    }
    let mut slots = Vec::with_capacity(count);
    for _ in 0..count {
        let code = reader.u32()? as usize;
        let dtype = *DataType::ALL
            .get(code)
            .ok_or_else(|| format!("unknown tensor type {code}"))?;
        let rank = reader.u32()? as usize;
        if rank > MAX_RANK {
            return Err(format!("rank {rank} above {MAX_RANK}"));
        }
        let offset = reader.u64()?;
        let len = reader.u64()?;
        let shape = (0..rank)
            .map(|_| reader.u64())
            .collect::<Result<Vec<_>, _>>()?;
        if offset.checked_add(len).is_none_or(|end| end > region_len) {
            return Err(format!(
                "tensor {offset}..+{len} outside the {region_len}-byte region"
            ));
        }
        slots.push(Slot {
            dtype,
            shape,
            offset,
            len,
        });
    }
    Ok(slots)
}

/// Reads a descriptor written by [`encode_request`].
pub fn decode_request(bytes: &[u8], region_len: usize) -> Result<(Vec<Slot>, Vec<usize>), String> {
    let mut reader = Reader { bytes };
    let inputs = decode_slots(&mut reader, region_len)?;
    let count = reader.u32()? as usize;
    if count > reader.remaining() / 4 {
        return Err(format!("descriptor announces {count} outputs"));
    }
    let outputs = (0..count)
        .map(|_| reader.u32().map(|i| i as usize))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((inputs, outputs))
}

fn put_u32(out: &mut Vec<u8>, value: usize) {
    let value = u32::try_from(value).expect("tensor counts, ranks and indexes fit in u32");
    out.extend_from_slice(&value.to_le_bytes());
}

/// Reads little-endian integers off a descriptor, refusing to run past its end.
pub struct Reader<'a> {
    pub bytes: &'a [u8],
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let (head, rest) = self
            .bytes
            .split_first_chunk::<N>()
            .ok_or("descriptor cut short")?;
        self.bytes = rest;
        Ok(*head)
    }

    fn u32(&mut self) -> Result<u32, String> {
        self.take::<4>().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<usize, String> {
        let value = u64::from_le_bytes(self.take::<8>()?);
        usize::try_from(value).map_err(|_| format!("{value} does not fit this machine"))
    }

    fn remaining(&self) -> usize {
        self.bytes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(dtype: DataType, shape: &[usize], offset: usize, len: usize) -> Slot {
        Slot {
            dtype,
            shape: shape.to_vec(),
            offset,
            len,
        }
    }

    #[test]
    fn a_request_round_trips() {
        let inputs = vec![
            slot(DataType::F32, &[2, 3], 0, 24),
            slot(DataType::Bool, &[], 64, 1),
            slot(DataType::BF16, &[1, 1, 1, 1, 7], 128, 14),
        ];
        let mut bytes = Vec::new();
        encode_request(&inputs, &[2, 0], &mut bytes);
        let (got, outputs) = decode_request(&bytes, 4096).unwrap();
        assert_eq!(got, inputs);
        assert_eq!(outputs, vec![2, 0]);
    }

    #[test]
    fn every_type_keeps_its_code() {
        let slots: Vec<_> = DataType::ALL.iter().map(|&d| slot(d, &[1], 0, 0)).collect();
        let mut bytes = Vec::new();
        encode_slots(&slots, &mut bytes);
        let got = decode_slots(&mut Reader { bytes: &bytes }, 0).unwrap();
        assert_eq!(got, slots);
    }

    #[test]
    fn corrupt_descriptors_are_refused() {
        let mut bytes = Vec::new();
        encode_request(&[slot(DataType::F32, &[4], 64, 16)], &[0], &mut bytes);
        // Outside the region.
        let e = decode_request(&bytes, 70).unwrap_err();
        assert!(e.contains("outside the 70-byte region"), "{e}");
        // Cut anywhere short.
        for end in 0..bytes.len() {
            assert!(decode_request(&bytes[..end], 4096).is_err(), "cut at {end}");
        }
        // A huge count.
        let e = decode_request(&u32::MAX.to_le_bytes(), 4096).unwrap_err();
        assert!(e.contains("announces"), "{e}");
        // An unknown type.
        let mut bad = bytes.clone();
        bad[4..8].copy_from_slice(&99u32.to_le_bytes());
        let e = decode_request(&bad, 4096).unwrap_err();
        assert!(e.contains("unknown tensor type 99"), "{e}");
    }
}
