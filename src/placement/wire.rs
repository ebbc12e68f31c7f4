//! The server ↔ placement worker control protocol: length-prefixed JSON messages on a Unix
//! stream socket, optionally carrying file descriptors (shared-memory regions, eventfds).
//!
//! One connection per loaded model (its lifetime is the model's) and one per executor. Infer
//! requests do not use it: they go through the executor's `mailbox` (shared memory, binary
//! `descriptor`s); its socket carries only what is rare (a new tensor region, an error) and,
//! by closing, says that the other side is gone.

use crate::error::BackendError;
use crate::runtime::LoadSpec;
use crate::tensor::Signature;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

/// Largest header accepted: a corrupt length must not make either side allocate gigabytes.
const MAX_MESSAGE: usize = 16 << 20;

/// From the server to a worker.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToWorker {
    /// First message of a model connection.
    Load(LoadSpec),
    /// First message of an executor connection: create an infer request of this model. The
    /// executor's mailbox descriptors are attached (see `Mailbox::fds`).
    Attach { model: u64 },
    /// The server's new input region is attached; the next request's descriptor is in it.
    InputRegion,
}

/// From a worker to the server.
#[derive(Debug, Serialize, Deserialize)]
pub enum FromWorker {
    Loaded {
        model: u64,
        signature: Signature,
        properties: BTreeMap<String, String>,
        optimal_infer_requests: usize,
    },
    Attached,
    /// The worker's new output region is attached; the next answer's descriptor is in it.
    OutputRegion,
    Failed(BackendError),
}

/// Sends `message`, with `fd` attached to its first byte when given.
pub fn send<T: Serialize>(stream: &UnixStream, message: &T, fd: Option<RawFd>) -> io::Result<()> {
    send_fds(stream, message, fd.as_slice())
}

/// Sends `message` with `fds` (at most [`MAX_FDS`]) attached to its first byte.
pub fn send_fds<T: Serialize>(stream: &UnixStream, message: &T, fds: &[RawFd]) -> io::Result<()> {
    // The length goes in front once the body is written: one buffer, no second copy.
    let mut frame = vec![0u8; 4];
    serde_json::to_writer(&mut frame, message).map_err(io::Error::other)?;
    let len = (frame.len() - 4) as u32;
    frame[..4].copy_from_slice(&len.to_le_bytes());
    let sent = if fds.is_empty() {
        0
    } else {
        send_with_fds(stream, &frame, fds)?
    };
    (&*stream).write_all(&frame[sent..])
}

/// Receives one message and the descriptors attached to it. `Ok(None)` on a clean close.
pub fn recv<T: DeserializeOwned>(stream: &UnixStream) -> io::Result<Option<(T, Vec<OwnedFd>)>> {
    let mut header = [0u8; 4];
    let (got, fds) = recv_with_fds(stream, &mut header)?;
    if got == 0 {
        return Ok(None);
    }
    (&*stream).read_exact(&mut header[got..])?;
    let len = u32::from_le_bytes(header) as usize;
    if len > MAX_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message of {len} bytes announced, at most {MAX_MESSAGE} accepted"),
        ));
    }
    let mut body = vec![0u8; len];
    (&*stream).read_exact(&mut body)?;
    let message = serde_json::from_slice(&body).map_err(io::Error::other)?;
    Ok(Some((message, fds)))
}

/// Most descriptors one message carries (an executor's mailbox: its block and two eventfds).
pub const MAX_FDS: usize = 3;

/// Room for one control message of `MAX_FDS` descriptors (CMSG_SPACE: a 16-byte header and
/// the descriptors, rounded up to 8 bytes).
const CMSG_SPACE: usize = 16 + (MAX_FDS * 4).div_ceil(8) * 8;

/// A control-message buffer, aligned as the `cmsghdr` the CMSG_* macros read in it.
#[repr(C, align(8))]
struct Control([u8; CMSG_SPACE]);

/// A message header over one buffer and one control-message buffer, both owned by the caller.
fn message(iov: &mut libc::iovec, control: &mut Control) -> libc::msghdr {
    // SAFETY: msghdr is plain data; all-zero is its empty value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = CMSG_SPACE;
    msg
}

fn send_with_fds(stream: &UnixStream, bytes: &[u8], fds: &[RawFd]) -> io::Result<usize> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::other(format!(
            "{} descriptors in one message, at most {MAX_FDS}",
            fds.len()
        )));
    }
    let fds_len = std::mem::size_of_val(fds) as u32;
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    let mut control = Control([0; CMSG_SPACE]);
    let mut msg = message(&mut iov, &mut control);
    // SAFETY: every pointer in msg refers to a live local buffer, and the CMSG_* macros stay
    // within `control`, which is large enough for MAX_FDS ints (checked above).
    unsafe {
        msg.msg_controllen = libc::CMSG_SPACE(fds_len) as usize;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(fds_len) as usize;
        std::ptr::copy_nonoverlapping(
            fds.as_ptr() as *const u8,
            libc::CMSG_DATA(cmsg),
            fds_len as usize,
        );
        let sent = libc::sendmsg(stream.as_raw_fd(), &msg, libc::MSG_NOSIGNAL);
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(sent as usize)
    }
}

fn recv_with_fds(stream: &UnixStream, bytes: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut iov = libc::iovec {
        iov_base: bytes.as_mut_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    let mut control = Control([0; CMSG_SPACE]);
    let mut msg = message(&mut iov, &mut control);
    let got = loop {
        // SAFETY: msg points at live local buffers; MSG_CMSG_CLOEXEC keeps a received
        // descriptor out of processes spawned later.
        let got = unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if got >= 0 {
            break got as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut fds = Vec::new();
    // SAFETY: the kernel filled `control` and set msg_controllen; each received descriptor is
    // owned exactly once.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg);
                let count = ((*cmsg).cmsg_len as usize - (data as usize - cmsg as usize))
                    / std::mem::size_of::<RawFd>();
                for i in 0..count {
                    let raw = std::ptr::read_unaligned((data as *const RawFd).add(i));
                    fds.push(OwnedFd::from_raw_fd(raw));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::other(format!(
            "more than {MAX_FDS} descriptors sent with one message"
        )));
    }
    Ok((got, fds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::shm::Region;

    #[test]
    fn messages_and_a_descriptor_cross_a_socket() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut region = Region::create(100).unwrap();
        region.bytes_mut()[..5].copy_from_slice(b"hello");
        let message = ToWorker::Attach { model: 7 };
        send(&a, &message, Some(region.fd())).unwrap();
        send(&a, &FromWorker::Attached, None).unwrap();
        let (got, fds) = recv::<ToWorker>(&b).unwrap().unwrap();
        assert!(matches!(got, ToWorker::Attach { model: 7 }));
        let shared = Region::open(fds.into_iter().next().expect("descriptor attached")).unwrap();
        assert_eq!(&shared.bytes()[..5], b"hello");
        let (got, fds) = recv::<FromWorker>(&b).unwrap().unwrap();
        assert!(matches!(got, FromWorker::Attached) && fds.is_empty());
        drop(a);
        assert!(recv::<FromWorker>(&b).unwrap().is_none());
    }

    #[test]
    fn three_descriptors_cross_in_order() {
        let (a, b) = UnixStream::pair().unwrap();
        let regions: Vec<Region> = (0..MAX_FDS)
            .map(|i| {
                let mut region = Region::create(10).unwrap();
                region.bytes_mut()[0] = i as u8;
                region
            })
            .collect();
        let fds: Vec<RawFd> = regions.iter().map(Region::fd).collect();
        send_fds(&a, &ToWorker::InputRegion, &fds).unwrap();
        let (_, got) = recv::<ToWorker>(&b).unwrap().unwrap();
        let firsts: Vec<u8> = got
            .into_iter()
            .map(|fd| Region::open(fd).unwrap().bytes()[0])
            .collect();
        assert_eq!(firsts, vec![0, 1, 2]);
        let e = send_fds(&a, &ToWorker::InputRegion, &[fds[0]; MAX_FDS + 1]).unwrap_err();
        assert!(e.to_string().contains("at most 3"), "{e}");
    }

    #[test]
    fn a_corrupt_length_is_refused() {
        let (a, b) = UnixStream::pair().unwrap();
        (&a).write_all(&u32::MAX.to_le_bytes()).unwrap();
        let e = recv::<FromWorker>(&b).unwrap_err();
        assert!(e.to_string().contains("at most"), "{e}");
    }
}
