//! TFRecord files, as TensorFlow writes them: per record a little-endian u64 length, the masked
//! CRC-32C of that length, the data, and the masked CRC-32C of the data. Both checksums are
//! verified, so a file still being copied is refused instead of half-read.

/// The records of a TFRecord file, or what is wrong with it.
pub fn records(bytes: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut records = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let index = records.len();
        let header = bytes
            .get(at..at + 12)
            .ok_or_else(|| format!("record {index}: truncated header at byte {at}"))?;
        let length_bytes = &header[..8];
        if masked_crc(length_bytes) != u32::from_le_bytes(header[8..12].try_into().unwrap()) {
            return Err(format!(
                "record {index}: length checksum mismatch at byte {at}"
            ));
        }
        let length = usize::try_from(u64::from_le_bytes(length_bytes.try_into().unwrap()))
            .map_err(|_| format!("record {index}: impossible length"))?;
        let start = at + 12;
        let end = start
            .checked_add(length)
            .filter(|&end| end + 4 <= bytes.len())
            .ok_or_else(|| {
                format!("record {index}: {length} bytes announced, the file ends before")
            })?;
        let data = &bytes[start..end];
        if masked_crc(data) != u32::from_le_bytes(bytes[end..end + 4].try_into().unwrap()) {
            return Err(format!("record {index}: data checksum mismatch"));
        }
        records.push(data);
        at = end + 4;
    }
    Ok(records)
}

fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One record, framed (tests, and tools that write warm-up files).
pub fn frame(data: &[u8]) -> Vec<u8> {
    let length = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&length);
    out.extend_from_slice(&masked_crc(&length).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_kind_of_damage() {
        let file: Vec<u8> = [frame(b"first"), frame(b""), frame(b"third record")].concat();
        assert_eq!(
            records(&file).unwrap(),
            vec![&b"first"[..], &b""[..], &b"third record"[..]]
        );
        assert!(records(&file[..file.len() - 1])
            .unwrap_err()
            .contains("record 2"));
        assert!(records(&file[..5])
            .unwrap_err()
            .contains("truncated header"));
        let mut flipped = file.clone();
        flipped[14] ^= 1;
        assert!(records(&flipped).unwrap_err().contains("data checksum"));
        assert_eq!(records(&[]).unwrap(), Vec::<&[u8]>::new());
    }

    #[test]
    fn checksums_are_masked_crc32c() {
        // The masked CRC of an empty record's length (8 zero bytes), computed by an independent
        // bit-by-bit CRC-32C. Files written by TensorFlow itself are read in tests/formats.rs.
        assert_eq!(&frame(b"")[8..12], &[0x29, 0x03, 0x98, 0x07]);
    }
}
