//! Tensor bytes between the server and a placement worker: memfd shared memory.
//!
//! Each executor connection has two regions. The server writes inputs (and the request's
//! `descriptor`) into one it created; the worker writes outputs (and theirs) into one it created.
//! Whoever needs a bigger region makes a new memfd and passes it on the executor's socket before
//! the `mailbox` message that uses it, so a region is written by one side only and read by the
//! other only while the request/response exchange on that executor says it may.

use memmap2::MmapMut;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Tensors start at multiples of this (cache lines; OpenVINO copies faster from aligned data).
const ALIGN: usize = 64;

/// One shared mapping.
pub struct Region {
    file: File,
    map: MmapMut,
}

impl Region {
    /// A new memfd of at least `len` bytes (rounded up to a power of two so growth is rare).
    pub fn create(len: usize) -> io::Result<Region> {
        let len = len.max(4096).next_power_of_two();
        // SAFETY: the name is a NUL-terminated literal; the returned fd is checked and owned.
        let fd = unsafe { libc::memfd_create(c"vinoserve-tensors".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just created and nothing else owns it.
        let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        file.set_len(len as u64)?;
        Region::map(file)
    }

    /// Maps a region the other side created and passed over the socket.
    pub fn open(fd: OwnedFd) -> io::Result<Region> {
        Region::map(File::from(fd))
    }

    fn map(file: File) -> io::Result<Region> {
        // SAFETY: the memfd is only ever resized by its creator before it is shared, and the
        // protocol keeps each side from reading while the other writes.
        let map = unsafe { MmapMut::map_mut(&file)? };
        Ok(Region { file, map })
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.map
    }
}

/// Packs tensors one after another into a region, growing it (into a new memfd that keeps what
/// was written) when the next one does not fit.
pub struct Appender<'a> {
    region: &'a mut Option<Region>,
    end: usize,
    replaced: bool,
}

impl<'a> Appender<'a> {
    pub fn new(region: &'a mut Option<Region>) -> Appender<'a> {
        Appender {
            region,
            end: 0,
            replaced: false,
        }
    }

    /// Copies `bytes` in; returns their offset.
    pub fn push(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let offset = self.end.div_ceil(ALIGN) * ALIGN;
        let needed = offset + bytes.len();
        if self.region.as_ref().is_none_or(|r| r.len() < needed) {
            let mut bigger = Region::create(needed)?;
            if let Some(old) = self.region.as_ref() {
                bigger.bytes_mut()[..self.end].copy_from_slice(&old.bytes()[..self.end]);
            }
            *self.region = Some(bigger);
            self.replaced = true;
        }
        let region = self.region.as_mut().expect("made above");
        region.bytes_mut()[offset..needed].copy_from_slice(bytes);
        self.end = needed;
        Ok(offset)
    }

    /// Whether the region was replaced (its descriptor must go to the other side).
    pub fn replaced(&self) -> bool {
        self.replaced
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_appender_aligns_every_tensor() {
        let mut slot = None;
        let mut appender = Appender::new(&mut slot);
        let offsets: Vec<usize> = [&[1u8; 10][..], &[], &[2u8; 100]]
            .iter()
            .map(|bytes| appender.push(bytes).unwrap())
            .collect();
        assert_eq!(offsets, vec![0, 64, 64]);
        assert_eq!(appender.end, 164);
    }

    #[test]
    fn a_region_is_shared_through_its_descriptor() {
        let mut writer = Region::create(10).unwrap();
        assert_eq!(writer.len(), 4096);
        writer.bytes_mut()[..3].copy_from_slice(b"abc");
        // SAFETY: dup gives a second descriptor of the same memfd, owned by the reader.
        let dup = unsafe { OwnedFd::from_raw_fd(libc::dup(writer.fd())) };
        let reader = Region::open(dup).unwrap();
        assert_eq!(&reader.bytes()[..3], b"abc");
        let mut slot = Some(writer);
        let mut appender = Appender::new(&mut slot);
        appender.push(&[0u8; 4096]).unwrap();
        assert!(!appender.replaced());
        let mut appender = Appender::new(&mut slot);
        appender.push(&[0u8; 4097]).unwrap();
        assert!(appender.replaced());
        assert_eq!(slot.unwrap().len(), 8192);
    }

    #[test]
    fn an_appender_grows_the_region_and_keeps_what_it_wrote() {
        let mut slot = Some(Region::create(4096).unwrap());
        let mut appender = Appender::new(&mut slot);
        assert_eq!(appender.push(b"first").unwrap(), 0);
        assert!(!appender.replaced());
        let big = vec![7u8; 5000];
        assert_eq!(appender.push(&big).unwrap(), 64);
        assert!(appender.replaced());
        let region = slot.unwrap();
        assert_eq!(&region.bytes()[..5], b"first");
        assert_eq!(&region.bytes()[64..5064], &big[..]);
    }
}
