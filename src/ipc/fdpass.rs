//! Sending and receiving one file descriptor beside a message (SCM_RIGHTS).
//!
//! Used for request bodies spooled to a file (front → worker, on the shared
//! request queue) and for worker channels (arbiter → front).
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
}
