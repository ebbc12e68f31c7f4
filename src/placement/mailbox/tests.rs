use super::*;
use std::os::unix::net::UnixStream;
use std::sync::mpsc;

/// A fail-safe only: every wait below ends on an event long before it.
const FAIL_SAFE: Duration = Duration::from_secs(60);

/// A spin budget that makes every wait sleep in `poll`.
const SLEEP_AT_ONCE: Duration = Duration::ZERO;

/// Both ends of a mailbox and of the socket that watches for hang-ups.
struct Pair {
    server: Mailbox,
    server_socket: UnixStream,
    worker: Mailbox,
    worker_socket: UnixStream,
}

fn dup(fd: RawFd) -> OwnedFd {
    // SAFETY: dup returns a new descriptor, owned once; the source stays open meanwhile.
    let new = unsafe { libc::dup(fd) };
    assert!(new >= 0, "{}", io::Error::last_os_error());
    // SAFETY: as above.
    unsafe { OwnedFd::from_raw_fd(new) }
}

/// A pair whose sequence numbers start at `seq` (to cross the wrap-around early).
fn pair_from(seq: u32) -> Pair {
    let mut server = Mailbox::create().unwrap();
    server.control().request.seq.store(seq, Ordering::Relaxed);
    server.control().response.seq.store(seq, Ordering::Relaxed);
    (server.posted, server.seen) = (seq, seq);
    // What crossing a socket does: the worker gets its own descriptors of the same objects.
    let worker = Mailbox::open(server.fds().iter().map(|&fd| dup(fd)).collect()).unwrap();
    let (server_socket, worker_socket) = UnixStream::pair().unwrap();
    Pair {
        server,
        server_socket,
        worker,
        worker_socket,
    }
}

/// The worker's end answers each request with `at + 1` until the server hangs up; returns how
/// many it answered.
fn echo(mut worker: Mailbox, socket: UnixStream, spin: Duration) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut answered = 0;
        while let Some(request) = worker.wait(socket.as_fd(), spin).unwrap() {
            worker.post(Message {
                flags: request.flags,
                at: request.at + 1,
                len: request.len,
            });
            answered += 1;
        }
        answered
    })
}

fn round_trip(server: &mut Mailbox, socket: &UnixStream, at: u64, spin: Duration) -> Message {
    server.post(Message {
        flags: FAILED,
        at,
        len: 7,
    });
    server
        .wait(socket.as_fd(), spin)
        .unwrap()
        .expect("the worker answers")
}

#[test]
fn sequence_numbers_wrap_around() {
    let Pair {
        mut server,
        server_socket,
        worker,
        worker_socket,
    } = pair_from(u32::MAX - 3);
    let worker = echo(worker, worker_socket, Duration::from_millis(1));
    for at in 0..10 {
        let answer = round_trip(&mut server, &server_socket, at, Duration::from_millis(1));
        assert_eq!(
            answer,
            Message {
                flags: FAILED,
                at: at + 1,
                len: 7
            }
        );
    }
    assert!(server.posted < 10, "the numbers wrapped: {}", server.posted);
    drop(server_socket);
    assert_eq!(worker.join().unwrap(), 10);
}

#[test]
fn a_sleeping_side_is_woken_by_the_post() {
    let Pair {
        mut server,
        server_socket,
        worker,
        worker_socket,
    } = pair_from(0);
    let worker = echo(worker, worker_socket, SLEEP_AT_ONCE);
    for at in 0..100 {
        // The worker has said it sleeps: only the eventfd can get this request to it.
        while server.theirs().sleeping.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        let answer = round_trip(&mut server, &server_socket, at, SLEEP_AT_ONCE);
        assert_eq!(answer.at, at + 1);
    }
    drop(server_socket);
    assert_eq!(worker.join().unwrap(), 100);
}

/// Many server threads, each with its executor's mailbox, at once (as a pool's threads drive
/// one worker); the answers never cross.
#[test]
fn concurrent_executors_get_their_own_answers() {
    let threads: Vec<_> = (0..8u64)
        .map(|thread| {
            std::thread::spawn(move || {
                let Pair {
                    mut server,
                    server_socket,
                    worker,
                    worker_socket,
                } = pair_from(thread as u32 * 1000);
                // Half spin, half sleep at once: both wake-up paths under contention.
                let spin = if thread % 2 == 0 {
                    Duration::from_micros(50)
                } else {
                    SLEEP_AT_ONCE
                };
                let worker = echo(worker, worker_socket, spin);
                for i in 0..2000 {
                    let at = thread << 32 | i;
                    assert_eq!(round_trip(&mut server, &server_socket, at, spin).at, at + 1);
                }
                drop(server_socket);
                worker.join().unwrap()
            })
        })
        .collect();
    for thread in threads {
        assert_eq!(thread.join().unwrap(), 2000);
    }
}

/// The server waits as long as the worker takes (back-pressure: one request at a time per
/// executor), then gets exactly that answer.
#[test]
fn the_server_waits_for_a_slow_answer() {
    let Pair {
        mut server,
        server_socket,
        mut worker,
        worker_socket,
    } = pair_from(0);
    let (release, released) = mpsc::channel::<()>();
    let (got, request) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let message = worker
            .wait(worker_socket.as_fd(), SLEEP_AT_ONCE)
            .unwrap()
            .unwrap();
        got.send(message).unwrap();
        released.recv().unwrap();
        worker.post(Message {
            flags: 0,
            at: 99,
            len: 1,
        });
        worker_socket
    });
    let (answer, answered) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        server.post(Message {
            flags: NEW_REGION,
            at: 5,
            len: 6,
        });
        answer
            .send(server.wait(server_socket.as_fd(), SLEEP_AT_ONCE).unwrap())
            .unwrap();
        server_socket
    });
    let request = request.recv_timeout(FAIL_SAFE).unwrap();
    assert_eq!((request.flags, request.at, request.len), (NEW_REGION, 5, 6));
    assert!(
        answered.try_recv().is_err(),
        "the server answered itself before the worker did"
    );
    release.send(()).unwrap();
    let answer = answered.recv_timeout(FAIL_SAFE).unwrap().unwrap();
    assert_eq!(answer.at, 99);
    let _sockets = (worker.join().unwrap(), waiter.join().unwrap());
}

/// A worker process that dies while the server waits for its answer wakes the server at once
/// with `None` (the socket hangs up), rather than leaving it asleep.
#[test]
fn a_dead_peer_process_wakes_the_waiter() {
    use std::os::unix::process::CommandExt;
    let Pair {
        mut server,
        server_socket,
        worker,
        worker_socket,
    } = pair_from(0);
    // The worker's end lives in another process (which never answers), as in production.
    let held = worker_socket.as_raw_fd();
    let mut command = std::process::Command::new("sleep");
    command.arg("600");
    // SAFETY: only fcntl runs between fork and exec.
    unsafe {
        command.pre_exec(move || {
            if libc::fcntl(held, libc::F_SETFD, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    drop(worker_socket);
    drop(worker);
    let (done, outcome) = mpsc::channel();
    std::thread::spawn(move || {
        server.post(Message::default());
        done.send(server.wait(server_socket.as_fd(), SLEEP_AT_ONCE).unwrap())
            .unwrap();
    });
    assert!(outcome.try_recv().is_err(), "answered while the peer lives");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(outcome.recv_timeout(FAIL_SAFE).unwrap(), None);
}

#[test]
fn a_worker_end_needs_three_descriptors() {
    let server = Mailbox::create().unwrap();
    let e = Mailbox::open(vec![dup(server.fds()[0])])
        .err()
        .expect("one descriptor is refused");
    assert!(e.to_string().contains("3 descriptors, 1 were sent"), "{e}");
}
