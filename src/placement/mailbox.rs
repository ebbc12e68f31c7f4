//! The per-request hop between a server executor and its infer request in a placement worker:
//! a control block in shared memory (memfd) plus one eventfd per direction, instead of a socket
//! message with a JSON header per request.
//!
//! Each executor connection is strictly request → response, so it needs no queue: each side owns
//! one cache line of the block, where it writes a message (flags, and where its descriptor lies
//! in its tensor region) and then bumps a sequence number. The other side sees the new number
//! while spinning for a short, bounded time, or else sleeps in `poll` on its eventfd, having said
//! so in its own line: the poster then writes the eventfd. The same `poll` watches the executor's
//! socket for a hang-up, so a peer that dies (or closes) wakes the waiter at once; an idle side
//! sleeps and costs nothing.
//!
//! Memory: one page and two eventfds per executor, whatever the traffic.

use super::shm::Region;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The message announces a new tensor region, sent with a descriptor on the socket just before.
pub const NEW_REGION: u32 = 1;
/// The worker failed the request; the error is on the socket (JSON, it is rare).
pub const FAILED: u32 = 2;

/// What one side posts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Message {
    pub flags: u32,
    /// Where the descriptor lies in the poster's tensor region.
    pub at: u64,
    pub len: u64,
}

/// One side's line of the control block; only that side writes it.
#[repr(C, align(64))]
struct Line {
    seq: AtomicU32,
    /// Set while this side sleeps (or is about to) in `poll`: the other must write its eventfd.
    sleeping: AtomicU32,
    flags: AtomicU32,
    at: AtomicU64,
    len: AtomicU64,
}

#[repr(C)]
struct Control {
    /// Written by the server.
    request: Line,
    /// Written by the worker.
    response: Line,
}

/// Which line is whose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Server,
    Worker,
}

/// One end of an executor's mailbox.
pub struct Mailbox {
    block: Region,
    side: Side,
    /// Written to wake the other side.
    wake_peer: OwnedFd,
    /// Written by the other side to wake this one.
    woken: OwnedFd,
    /// This side's last posted sequence number.
    posted: u32,
    /// The other side's last sequence number this side took.
    seen: u32,
}

fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd returns a new descriptor or -1; a new descriptor is owned exactly once.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl Mailbox {
    /// The server's end of a new mailbox; [`Mailbox::fds`] go to the worker with the attach.
    pub fn create() -> io::Result<Mailbox> {
        let block = Region::create(std::mem::size_of::<Control>())?;
        Ok(Mailbox {
            block,
            side: Side::Server,
            wake_peer: eventfd()?,
            woken: eventfd()?,
            posted: 0,
            seen: 0,
        })
    }

    /// Descriptors for the worker's end: the block, the worker's eventfd, the server's eventfd.
    pub fn fds(&self) -> [RawFd; 3] {
        [
            self.block.fd(),
            self.wake_peer.as_raw_fd(),
            self.woken.as_raw_fd(),
        ]
    }

    /// The worker's end, from the descriptors of [`Mailbox::fds`] in that order.
    pub fn open(fds: Vec<OwnedFd>) -> io::Result<Mailbox> {
        let [block, woken, wake_peer]: [OwnedFd; 3] = fds.try_into().map_err(|fds: Vec<_>| {
            io::Error::other(format!(
                "a mailbox takes 3 descriptors, {} were sent",
                fds.len()
            ))
        })?;
        let block = Region::open(block)?;
        if block.len() < std::mem::size_of::<Control>() {
            return Err(io::Error::other("mailbox block too small"));
        }
        let mut mailbox = Mailbox {
            block,
            side: Side::Worker,
            wake_peer,
            woken,
            posted: 0,
            seen: 0,
        };
        // Numbers go on from wherever the block's creator started them.
        mailbox.posted = mailbox.mine().seq.load(Ordering::Acquire);
        mailbox.seen = mailbox.theirs().seq.load(Ordering::Acquire);
        Ok(mailbox)
    }

    fn control(&self) -> &Control {
        // SAFETY: the mapping is page-aligned, at least size_of::<Control>() long (checked in
        // `open`, guaranteed by `create`) and lives as long as `self`; Control is only atomics,
        // valid for any bytes, and both processes access it only through them.
        unsafe { &*(self.block.bytes().as_ptr() as *const Control) }
    }

    fn mine(&self) -> &Line {
        match self.side {
            Side::Server => &self.control().request,
            Side::Worker => &self.control().response,
        }
    }

    fn theirs(&self) -> &Line {
        match self.side {
            Side::Server => &self.control().response,
            Side::Worker => &self.control().request,
        }
    }

    /// Posts `message` to the other side, waking it if it sleeps.
    pub fn post(&mut self, message: Message) {
        let line = self.mine();
        line.flags.store(message.flags, Ordering::Relaxed);
        line.at.store(message.at, Ordering::Relaxed);
        line.len.store(message.len, Ordering::Relaxed);
        let seq = self.posted.wrapping_add(1);
        // SeqCst here and on `sleeping` on both sides: either the sleeper sees the new number
        // before it sleeps, or the poster sees it sleeping and wakes it (no lost wake-up).
        line.seq.store(seq, Ordering::SeqCst);
        self.posted = seq;
        if self.theirs().sleeping.load(Ordering::SeqCst) != 0 {
            let one = 1u64.to_ne_bytes();
            // SAFETY: writes 8 bytes from a live local to our eventfd. It cannot fail but with
            // an overflowing counter (2^64 wake-ups unread), which the reader's drain prevents.
            unsafe { libc::write(self.wake_peer.as_raw_fd(), one.as_ptr().cast(), 8) };
        }
    }

    /// The other side's next message, after spinning up to `spin` and then sleeping until it is
    /// posted; `None` when `socket`'s peer hung up (closed, or its process died) first.
    pub fn wait(&mut self, socket: BorrowedFd<'_>, spin: Duration) -> io::Result<Option<Message>> {
        if let Some(message) = self.spin_for(spin) {
            return Ok(Some(message));
        }
        loop {
            self.mine().sleeping.store(1, Ordering::SeqCst);
            if let Some(message) = self.take() {
                self.mine().sleeping.store(0, Ordering::Relaxed);
                return Ok(Some(message));
            }
            let hung_up = wait_readable(self.woken.as_fd(), socket);
            self.mine().sleeping.store(0, Ordering::Relaxed);
            self.drain();
            // A message posted before the peer died is still an answer.
            if let Some(message) = self.take() {
                return Ok(Some(message));
            }
            if hung_up? {
                return Ok(None);
            }
        }
    }

    /// The other side's message if it posted a new one.
    fn take(&mut self) -> Option<Message> {
        let line = self.theirs();
        let seq = line.seq.load(Ordering::SeqCst);
        if seq == self.seen {
            return None;
        }
        let message = Message {
            flags: line.flags.load(Ordering::Relaxed),
            at: line.at.load(Ordering::Relaxed),
            len: line.len.load(Ordering::Relaxed),
        };
        self.seen = seq;
        Some(message)
    }

    /// Polls the other side's line for at most `budget`, yielding the CPU between looks so a
    /// spinning side never keeps a runnable thread (the peer, or other work) off it.
    fn spin_for(&mut self, budget: Duration) -> Option<Message> {
        let start = Instant::now();
        loop {
            if let Some(message) = self.take() {
                return Some(message);
            }
            if start.elapsed() >= budget {
                return None;
            }
            std::thread::yield_now();
        }
    }

    /// Resets this side's eventfd after a wake-up (it is non-blocking: nothing to read is fine).
    fn drain(&self) {
        let mut count = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a live local.
        unsafe { libc::read(self.woken.as_raw_fd(), count.as_mut_ptr().cast(), 8) };
    }
}

/// Sleeps until `eventfd` is readable or `socket`'s peer hangs up; says whether it hung up.
/// Data arriving on the socket does not wake it (the protocol reads the socket only when a
/// message says something waits there).
fn wait_readable(eventfd: BorrowedFd<'_>, socket: BorrowedFd<'_>) -> io::Result<bool> {
    let mut fds = [
        libc::pollfd {
            fd: eventfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: socket.as_raw_fd(),
            events: libc::POLLRDHUP,
            revents: 0,
        },
    ];
    loop {
        // SAFETY: fds is a live local array of two pollfds.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if ready >= 0 {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    let gone = libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL;
    Ok(fds[1].revents & gone != 0)
}

#[cfg(test)]
mod tests;
