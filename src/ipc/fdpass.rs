//! Sending and receiving one file descriptor beside a message (SCM_RIGHTS).
//!
//! Used for request bodies spooled to a file (front → worker, on the shared
//! request queue), for worker channels (arbiter → front), and for
//! `wsgi.file_wrapper` files (worker → front, on the response channel,
//! read with [`recv_into`]).
#![allow(unsafe_code)]

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

/// Send `data` as one message, with `fd` attached when given.
/// `flags` lets async callers pass `MSG_DONTWAIT`.
pub fn send(
    sock: BorrowedFd<'_>,
    data: &[&[u8]],
    fd: Option<BorrowedFd<'_>>,
    flags: MsgFlags,
) -> io::Result<usize> {
    let fds;
    let cmsgs: &[ControlMessage<'_>] = match fd {
        Some(fd) => {
            fds = [fd.as_raw_fd()];
            &[ControlMessage::ScmRights(&fds)]
        }
        None => &[],
    };
    with_iov(data, |iov| {
        sendmsg::<()>(
            sock.as_raw_fd(),
            iov,
            cmsgs,
            flags | MsgFlags::MSG_NOSIGNAL,
            None,
        )
    })
    .map_err(io::Error::from)
}

/// Call `f` with `data` as `IoSlice`s: on the stack for the usual one to
/// four pieces (the front sends every request this way), else in a `Vec`.
fn with_iov<R>(data: &[&[u8]], f: impl FnOnce(&[IoSlice<'_>]) -> R) -> R {
    const ON_STACK: usize = 4;
    if data.len() <= ON_STACK {
        let mut iov = [IoSlice::new(&[]); ON_STACK];
        for (slot, d) in iov.iter_mut().zip(data) {
            *slot = IoSlice::new(d);
        }
        f(&iov[..data.len()])
    } else {
        let iov: Vec<IoSlice<'_>> = data.iter().map(|d| IoSlice::new(d)).collect();
        f(&iov)
    }
}

/// [`send`] for a descriptor known only by number (one a Python file
/// object holds open for the duration of the call).
pub fn send_raw(
    sock: BorrowedFd<'_>,
    data: &[&[u8]],
    fd: RawFd,
    flags: MsgFlags,
) -> io::Result<usize> {
    let fds = [fd];
    with_iov(data, |iov| {
        sendmsg::<()>(
            sock.as_raw_fd(),
            iov,
            &[ControlMessage::ScmRights(&fds)],
            flags | MsgFlags::MSG_NOSIGNAL,
            None,
        )
    })
    .map_err(io::Error::from)
}

/// What [`recv`] got.
pub struct Received {
    /// Bytes of the message placed in the buffer.
    pub len: usize,
    /// The descriptor that came with it, if any (close-on-exec).
    pub fd: Option<OwnedFd>,
    /// The message did not fit the buffer and was cut.
    pub truncated: bool,
}

/// Receive one message into `buf`, with at most one descriptor. Any extra
/// descriptors a misbehaving peer sent are closed.
///
/// A worker calls this up to three times per request (see
/// `worker/take.rs`), so the control buffer is on the stack.
pub fn recv(sock: BorrowedFd<'_>, buf: &mut [u8], flags: MsgFlags) -> io::Result<Received> {
    let mut fd = None;
    // SAFETY: `buf` is writable memory we borrow mutably for the call.
    let (len, truncated) = unsafe {
        recvmsg_raw(sock, buf.as_mut_ptr(), buf.len(), flags, |owned| {
            if fd.is_none() {
                fd = Some(owned);
            }
        })
    }?;
    Ok(Received { len, fd, truncated })
}

/// Block until a message waits on `sock`, and leave it there (a
/// zero-length `MSG_PEEK`; a descriptor beside it is not installed).
/// Returns at end of stream too; the `recv` that follows tells which.
///
/// A worker thread sleeps here, not in `recv`: a process killed while its
/// thread sleeps in a blocking `recv` takes one more message from the queue
/// on its way out if one arrived before it ran again, and that request is
/// lost with it. A peek takes nothing; the caller's `MSG_DONTWAIT` `recv`
/// runs only in a live process.
pub fn wait_message(sock: BorrowedFd<'_>) -> io::Result<()> {
    nix::sys::socket::recv(
        sock.as_raw_fd(),
        &mut [],
        MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC,
    )
    .map(drop)
    .map_err(io::Error::from)
}

/// `recvmsg` of at most `len` bytes into `ptr`, with a control buffer on
/// the stack for a few descriptors, each handed to `take` (close-on-exec).
/// Returns the bytes received and whether the message was cut.
///
/// # Safety
/// `ptr` must be valid for writes of `len` bytes (possibly uninitialised:
/// the kernel only writes) for the duration of the call.
unsafe fn recvmsg_raw(
    sock: BorrowedFd<'_>,
    ptr: *mut u8,
    len: usize,
    flags: MsgFlags,
    take: impl FnMut(OwnedFd),
) -> io::Result<(usize, bool)> {
    use std::mem::{size_of, MaybeUninit};

    let mut iov = libc::iovec {
        iov_base: ptr.cast(),
        iov_len: len,
    };
    // Room for a few descriptors; u64s keep it aligned for cmsghdr.
    let mut control = [0u64; 8];
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { MaybeUninit::zeroed().assume_init() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<[u64; 8]>() as _;
    // SAFETY: `msg` points at a live iovec over the caller's writable
    // memory and at `control`; both outlive the call.
    let n = unsafe {
        libc::recvmsg(
            sock.as_raw_fd(),
            &mut msg,
            (flags | MsgFlags::MSG_CMSG_CLOEXEC).bits(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just filled `msg`'s control buffer.
    unsafe { received_fds(&msg, take) };
    Ok((n as usize, msg.msg_flags & libc::MSG_TRUNC != 0))
}

/// Most messages [`recv_batch`] takes in one call.
pub const BATCH: usize = 8;

/// Receive up to `out_max` (at most [`BATCH`]) messages in one
/// `recvmmsg`: message `i` lands in `buf[i * size..(i + 1) * size]`, its
/// length, descriptor and truncation in `out[i]`. Returns how many came
/// (at least one; `WouldBlock` when none waits, with `MSG_DONTWAIT`).
///
/// An ASGI worker drains the request queue this way: one system call for
/// a batch of requests instead of one per request plus the last, empty
/// one.
pub fn recv_batch(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    size: usize,
    out_max: usize,
    flags: MsgFlags,
    out: &mut Vec<Received>,
) -> io::Result<usize> {
    use std::mem::{size_of, MaybeUninit};

    let n = out_max.min(BATCH).min(buf.len() / size.max(1));
    if n == 0 {
        return Ok(0);
    }
    let base = buf.as_mut_ptr();
    // SAFETY: iovec, mmsghdr and msghdr are plain data; all-zero is valid.
    let mut iov: [libc::iovec; BATCH] = unsafe { MaybeUninit::zeroed().assume_init() };
    let mut control = [[0u64; 8]; BATCH];
    // SAFETY: as above, an all-zero mmsghdr is a valid empty header.
    let mut msgs: [libc::mmsghdr; BATCH] = unsafe { MaybeUninit::zeroed().assume_init() };
    for i in 0..n {
        // SAFETY: i * size + size <= buf.len() (n <= buf.len() / size).
        iov[i].iov_base = unsafe { base.add(i * size) }.cast();
        iov[i].iov_len = size;
        let h = &mut msgs[i].msg_hdr;
        h.msg_iov = &mut iov[i];
        h.msg_iovlen = 1;
        h.msg_control = control[i].as_mut_ptr().cast();
        h.msg_controllen = size_of::<[u64; 8]>() as _;
    }
    // SAFETY: each header points at its own iovec over a disjoint part of
    // `buf` and at its own control buffer, all alive across the call.
    let got = unsafe {
        libc::recvmmsg(
            sock.as_raw_fd(),
            msgs.as_mut_ptr(),
            n as _,
            (flags | MsgFlags::MSG_CMSG_CLOEXEC).bits(),
            std::ptr::null_mut(),
        )
    };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    let got = got as usize;
    for m in &msgs[..got] {
        let mut fd = None;
        // SAFETY: the kernel just filled this message's control buffer.
        unsafe {
            received_fds(&m.msg_hdr, |owned| {
                if fd.is_none() {
                    fd = Some(owned);
                }
            })
        };
        out.push(Received {
            len: m.msg_len as usize,
            fd,
            truncated: m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
        });
    }
    Ok(got)
}

/// Most messages [`send_batch`] sends in one call.
pub const SEND_BATCH: usize = 32;

/// `sendmmsg`: each of `msgs` as one message (no descriptor), up to
/// [`SEND_BATCH`] in one system call. Returns how many were sent (at
/// least one), or the first one's error (`WouldBlock` when the socket is
/// full, with `MSG_DONTWAIT`).
///
/// The front sends the requests of one turn of a runtime thread this way:
/// on these VMs a `sendmsg` of a request costs ~2.8 µs, of which ~1.4 µs
/// is the system call's own entry and exit (bench/RESULTS.md, twelfth
/// session).
pub fn send_batch(sock: BorrowedFd<'_>, msgs: &[&[u8]], flags: MsgFlags) -> io::Result<usize> {
    use std::mem::MaybeUninit;

    let n = msgs.len().min(SEND_BATCH);
    if n == 0 {
        return Ok(0);
    }
    // Only the first `n` entries are written, and only they are passed
    // (no 2.5 KiB of zeroing per call for a batch of one).
    let mut iov = [MaybeUninit::<libc::iovec>::uninit(); SEND_BATCH];
    let mut hdrs = [MaybeUninit::<libc::mmsghdr>::uninit(); SEND_BATCH];
    for i in 0..n {
        // The kernel only reads through iov_base for a send.
        let v = iov[i].write(libc::iovec {
            iov_base: msgs[i].as_ptr().cast_mut().cast(),
            iov_len: msgs[i].len(),
        });
        // SAFETY: mmsghdr is plain data; all-zero is a valid empty header.
        let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
        h.msg_hdr.msg_iov = v;
        h.msg_hdr.msg_iovlen = 1;
        hdrs[i].write(h);
    }
    // SAFETY: the first `n` headers are initialised, each pointing at its
    // own iovec over one of `msgs`, all alive across the call; the kernel
    // reads only those `n` and writes only their msg_len.
    let sent = unsafe {
        libc::sendmmsg(
            sock.as_raw_fd(),
            hdrs.as_mut_ptr().cast(),
            n as _,
            (flags | MsgFlags::MSG_NOSIGNAL).bits(),
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}

/// Hand every descriptor of the SCM_RIGHTS messages in `msg`'s control
/// buffer to `take` (dropping one closes it).
///
/// # Safety
/// `msg` must be what `recvmsg` just returned: its control buffer filled by
/// the kernel, within `msg_controllen`, and its descriptors not yet taken.
unsafe fn received_fds(msg: &libc::msghdr, mut take: impl FnMut(OwnedFd)) {
    // SAFETY: CMSG_* walk the control buffer the kernel just filled, within
    // msg_controllen; each SCM_RIGHTS payload is an array of ints the
    // kernel installed in our descriptor table, owned by nobody else.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c).cast::<libc::c_int>();
                let bytes = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for i in 0..bytes / std::mem::size_of::<libc::c_int>() {
                    take(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
}

/// Receive bytes from a stream socket into the spare capacity of `buf`
/// (no zero-filling, like `read_buf`), collecting any descriptors that came
/// with them into `fds` (close-on-exec). Returns the bytes read; 0 is EOF.
/// The caller reserves capacity first.
pub fn recv_into(
    sock: BorrowedFd<'_>,
    buf: &mut bytes::BytesMut,
    fds: &mut Vec<OwnedFd>,
    flags: MsgFlags,
) -> io::Result<usize> {
    let spare = buf.spare_capacity_mut();
    // SAFETY: the spare capacity is memory `buf` owns, writable, possibly
    // uninitialised, which the kernel only writes.
    let (n, _) = unsafe {
        recvmsg_raw(sock, spare.as_mut_ptr().cast(), spare.len(), flags, |fd| {
            fds.push(fd)
        })
    }?;
    // SAFETY: the kernel initialised the first `n` bytes of the spare
    // capacity (recvmsg returned n ≤ its length).
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsFd;

    #[test]
    fn a_batch_leaves_as_separate_messages_in_order_and_stops_when_full() {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        )
        .unwrap();
        let msgs: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 1 + usize::from(i)]).collect();
        let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
        // At most SEND_BATCH per call; the rest on the next.
        let first = send_batch(a.as_fd(), &refs, MsgFlags::MSG_DONTWAIT).unwrap();
        assert_eq!(first, SEND_BATCH);
        let second = send_batch(a.as_fd(), &refs[first..], MsgFlags::MSG_DONTWAIT).unwrap();
        assert_eq!(first + second, 40);
        assert_eq!(
            send_batch(a.as_fd(), &[], MsgFlags::MSG_DONTWAIT).unwrap(),
            0
        );
        let mut buf = [0u8; 64];
        for m in &msgs {
            let r = recv(b.as_fd(), &mut buf, MsgFlags::MSG_DONTWAIT).unwrap();
            assert_eq!(&buf[..r.len], m.as_slice());
        }
        // A full socket: some sent, then WouldBlock for the rest.
        let big = vec![7u8; 32 * 1024];
        let many: Vec<&[u8]> = vec![big.as_slice(); SEND_BATCH];
        let mut total = 0;
        loop {
            match send_batch(a.as_fd(), &many, MsgFlags::MSG_DONTWAIT) {
                Ok(n) => {
                    assert!(n >= 1);
                    total += n;
                    assert!(total < 10_000, "the socket never filled");
                }
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}");
                    break;
                }
            }
        }
        assert!(total >= 1);
    }

    #[test]
    fn a_file_travels_with_a_message() {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"spooled").unwrap();
        f.rewind().unwrap();
        send(
            a.as_fd(),
            &[b"he", b"ad"],
            Some(f.as_fd()),
            MsgFlags::empty(),
        )
        .unwrap();
        drop(f);
        let mut buf = [0u8; 16];
        let r = recv(b.as_fd(), &mut buf, MsgFlags::empty()).unwrap();
        assert_eq!(&buf[..r.len], b"head");
        assert!(!r.truncated);
        let mut got = String::new();
        std::fs::File::from(r.fd.unwrap())
            .read_to_string(&mut got)
            .unwrap();
        assert_eq!(got, "spooled");
    }

    #[test]
    fn a_message_too_big_for_the_buffer_is_cut_and_says_so() {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let pieces: [&[u8]; 6] = [b"a", b"b", b"c", b"d", b"e", b"f"];
        assert_eq!(
            send(a.as_fd(), &pieces, None, MsgFlags::empty()).unwrap(),
            6
        );
        send(a.as_fd(), &[b"xyz"], None, MsgFlags::empty()).unwrap();
        let mut buf = [0u8; 4];
        let r = recv(b.as_fd(), &mut buf, MsgFlags::empty()).unwrap();
        assert_eq!((r.len, r.truncated, r.fd.is_none()), (4, true, true));
        assert_eq!(&buf, b"abcd");
        let r = recv(b.as_fd(), &mut buf, MsgFlags::empty()).unwrap();
        assert_eq!((r.len, r.truncated), (3, false));
        assert_eq!(&buf[..3], b"xyz");
        let e = recv(b.as_fd(), &mut buf, MsgFlags::MSG_DONTWAIT)
            .err()
            .unwrap();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn recv_into_a_stream_keeps_bytes_and_descriptors_in_order() {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let mut f1 = tempfile::tempfile().unwrap();
        f1.write_all(b"one").unwrap();
        let mut f2 = tempfile::tempfile().unwrap();
        f2.write_all(b"two").unwrap();
        send(a.as_fd(), &[b"plain "], None, MsgFlags::empty()).unwrap();
        send(a.as_fd(), &[b"first "], Some(f1.as_fd()), MsgFlags::empty()).unwrap();
        send(a.as_fd(), &[b"second"], Some(f2.as_fd()), MsgFlags::empty()).unwrap();
        drop(a);
        let mut buf = bytes::BytesMut::with_capacity(4);
        let mut fds = Vec::new();
        loop {
            buf.reserve(64);
            let n = recv_into(b.as_fd(), &mut buf, &mut fds, MsgFlags::empty()).unwrap();
            if n == 0 {
                break;
            }
        }
        assert_eq!(&buf[..], b"plain first second");
        assert_eq!(fds.len(), 2);
        let read = |fd: OwnedFd| {
            let mut f = std::fs::File::from(fd);
            f.rewind().unwrap();
            let mut s = String::new();
            f.read_to_string(&mut s).unwrap();
            s
        };
        let mut it = fds.into_iter();
        assert_eq!(read(it.next().unwrap()), "one");
        assert_eq!(read(it.next().unwrap()), "two");
    }
}
