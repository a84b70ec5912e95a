//! Sending and receiving one file descriptor beside a message (SCM_RIGHTS).
//!
//! Used for request bodies spooled to a file (front → worker, on the shared
//! request queue), for worker channels (arbiter → front), and for
//! `wsgi.file_wrapper` files (worker → front, on the response channel,
//! read with [`recv_into`]).
#![allow(unsafe_code)]

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

/// Send `data` as one message, with `fd` attached when given.
/// `flags` lets async callers pass `MSG_DONTWAIT`.
pub fn send(
    sock: BorrowedFd<'_>,
    data: &[&[u8]],
    fd: Option<BorrowedFd<'_>>,
    flags: MsgFlags,
) -> io::Result<usize> {
    let iov: Vec<IoSlice<'_>> = data.iter().map(|d| IoSlice::new(d)).collect();
    let fds;
    let cmsgs: &[ControlMessage<'_>] = match fd {
        Some(fd) => {
            fds = [fd.as_raw_fd()];
            &[ControlMessage::ScmRights(&fds)]
        }
        None => &[],
    };
    sendmsg::<()>(
        sock.as_raw_fd(),
        &iov,
        cmsgs,
        flags | MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(io::Error::from)
}

/// [`send`] for a descriptor known only by number (one a Python file
/// object holds open for the duration of the call).
pub fn send_raw(
    sock: BorrowedFd<'_>,
    data: &[&[u8]],
    fd: RawFd,
    flags: MsgFlags,
) -> io::Result<usize> {
    let iov: Vec<IoSlice<'_>> = data.iter().map(|d| IoSlice::new(d)).collect();
    let fds = [fd];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        flags | MsgFlags::MSG_NOSIGNAL,
        None,
    )
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
pub fn recv(sock: BorrowedFd<'_>, buf: &mut [u8], flags: MsgFlags) -> io::Result<Received> {
    let mut cmsg_space = nix::cmsg_space!([RawFd; 4]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg_space),
        flags | MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(io::Error::from)?;
    let mut fd = None;
    for cmsg in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            for raw in fds {
                // SAFETY: the kernel just installed `raw` in our table for
                // this message; nothing else owns it.
                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                if fd.is_none() {
                    fd = Some(owned);
                }
            }
        }
    }
    Ok(Received {
        len: msg.bytes,
        fd,
        truncated: msg.flags.contains(MsgFlags::MSG_TRUNC),
    })
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
    use std::mem::{size_of, MaybeUninit};

    let spare = buf.spare_capacity_mut();
    let mut iov = libc::iovec {
        iov_base: spare.as_mut_ptr().cast(),
        iov_len: spare.len(),
    };
    // Room for a few descriptors; u64s keep it aligned for cmsghdr.
    let mut control = [0u64; 8];
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { MaybeUninit::zeroed().assume_init() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<[u64; 8]>() as _;
    // SAFETY: `msg` points at a live iovec over `spare` (writable memory we
    // own, possibly uninitialised, which the kernel only writes) and at
    // `control`; both outlive the call.
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
    // SAFETY: CMSG_* walk the control buffer the kernel just filled, within
    // msg_controllen; each SCM_RIGHTS payload is an array of ints the
    // kernel installed in our descriptor table, owned by nobody else.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c).cast::<libc::c_int>();
                let bytes = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for i in 0..bytes / size_of::<libc::c_int>() {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    let n = n as usize;
    // SAFETY: the kernel initialised the first `n` bytes of the spare
    // capacity (recvmsg returned n ≤ iov_len).
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
