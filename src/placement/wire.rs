//! The server ↔ placement worker protocol: length-prefixed JSON messages on a Unix stream
//! socket, optionally carrying one file descriptor (a shared-memory region, see `shm`).
//!
//! Headers are small (names, shapes, offsets); tensor bytes never go through the socket. One
//! connection per loaded model (its lifetime is the model's) and one per executor (strictly
//! request → response, so neither side needs to match replies to requests).

use crate::error::BackendError;
use crate::runtime::LoadSpec;
use crate::tensor::{DataType, Signature};
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
    /// First message of an executor connection: create an infer request of this model.
    Attach { model: u64 },
    /// Run one inference. Inputs are in the server's input region (a new one is attached to
    /// this message when `new_region`).
    Infer {
        inputs: Vec<Slot>,
        outputs: Vec<usize>,
        new_region: bool,
    },
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
    /// Outputs in the worker's output region (a new one is attached when `new_region`).
    Outputs {
        tensors: Vec<Slot>,
        new_region: bool,
    },
    Failed(BackendError),
}

/// Where one tensor lies in a region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    pub dtype: DataType,
    pub shape: Vec<usize>,
    pub offset: usize,
    pub len: usize,
}

/// Sends `message`, with `fd` attached to its first byte when given.
pub fn send<T: Serialize>(stream: &UnixStream, message: &T, fd: Option<RawFd>) -> io::Result<()> {
    // The length goes in front once the body is written: one buffer, no second copy.
    let mut frame = vec![0u8; 4];
    serde_json::to_writer(&mut frame, message).map_err(io::Error::other)?;
    let len = (frame.len() - 4) as u32;
    frame[..4].copy_from_slice(&len.to_le_bytes());
    let sent = match fd {
        Some(fd) => send_with_fd(stream, &frame, fd)?,
        None => 0,
    };
    (&*stream).write_all(&frame[sent..])
}

/// Receives one message and the descriptor attached to it, if any. `Ok(None)` on a clean close.
pub fn recv<T: DeserializeOwned>(stream: &UnixStream) -> io::Result<Option<(T, Option<OwnedFd>)>> {
    let mut header = [0u8; 4];
    let (got, fd) = recv_with_fd(stream, &mut header)?;
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
    Ok(Some((message, fd)))
}

/// Room for one descriptor's control message.
const CMSG_SPACE: usize = 32;

/// A message header over one buffer and one control-message buffer, both owned by the caller.
fn message(iov: &mut libc::iovec, control: &mut [u8; CMSG_SPACE]) -> libc::msghdr {
    // SAFETY: msghdr is plain data; all-zero is its empty value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = control.len();
    msg
}

fn send_with_fd(stream: &UnixStream, bytes: &[u8], fd: RawFd) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    let mut control = [0u8; CMSG_SPACE];
    let mut msg = message(&mut iov, &mut control);
    // SAFETY: every pointer in msg refers to a live local buffer, and the CMSG_* macros stay
    // within `control`, which is large enough for one int.
    unsafe {
        msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut RawFd, fd);
        let sent = libc::sendmsg(stream.as_raw_fd(), &msg, libc::MSG_NOSIGNAL);
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(sent as usize)
    }
}

fn recv_with_fd(stream: &UnixStream, bytes: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut iov = libc::iovec {
        iov_base: bytes.as_mut_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    let mut control = [0u8; CMSG_SPACE];
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
    let mut fd = None;
    // SAFETY: the kernel filled `control` and set msg_controllen; a received descriptor is
    // owned exactly once.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let raw = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const RawFd);
                fd = Some(OwnedFd::from_raw_fd(raw));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((got, fd))
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
        let (got, fd) = recv::<ToWorker>(&b).unwrap().unwrap();
        assert!(matches!(got, ToWorker::Attach { model: 7 }));
        let shared = Region::open(fd.expect("descriptor attached")).unwrap();
        assert_eq!(&shared.bytes()[..5], b"hello");
        let (got, fd) = recv::<FromWorker>(&b).unwrap().unwrap();
        assert!(matches!(got, FromWorker::Attached) && fd.is_none());
        drop(a);
        assert!(recv::<FromWorker>(&b).unwrap().is_none());
    }

    #[test]
    fn a_corrupt_length_is_refused() {
        let (a, b) = UnixStream::pair().unwrap();
        (&a).write_all(&u32::MAX.to_le_bytes()).unwrap();
        let e = recv::<FromWorker>(&b).unwrap_err();
        assert!(e.to_string().contains("at most"), "{e}");
    }
}
