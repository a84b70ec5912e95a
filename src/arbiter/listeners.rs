//! Bind the public listeners once, in the arbiter, so that a restarted
//! front inherits them and no connection is refused meanwhile.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;

use nix::sys::socket::{
    bind, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType,
    SockaddrStorage,
};

/// A bound, listening socket and whether it serves TLS.
pub struct Listener {
    pub socket: TcpListener,
    pub addr: SocketAddr,
    pub tls: bool,
}

/// Bind `addr` with SO_REUSEADDR and a backlog like nginx's (511).
pub fn bind_one(addr: SocketAddr, tls: bool) -> std::io::Result<Listener> {
    let family = if addr.is_ipv6() {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let fd: OwnedFd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    if addr.is_ipv6() {
        setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
    }
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrStorage::from(addr),
    )?;
    listen(&fd, Backlog::new(511).expect("valid backlog"))?;
    let socket = TcpListener::from(fd);
    let addr = socket.local_addr()?;
    Ok(Listener { socket, addr, tls })
}
