//! The embedded broker's side of each connection has Nagle's algorithm off (`TCP_NODELAY`, the
//! one change in `vendor/rumqttd`). With it on, a message the broker forwarded shortly after
//! another to the same client waited for the client's delayed ACK: 40 ms per hop.
//!
//! The broker runs in this process, so its accepted socket is one of this process's file
//! descriptors: found by its inode in `/proc/net/tcp` (local port = the broker's, remote = our
//! client's), its option read with `getsockopt`. Linux only.

#![cfg(all(target_os = "linux", target_endian = "little"))]

use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use edgepool_simulator::broker::{poll_until, EmbeddedBroker};

/// `/proc/net/tcp`'s `ADDR:PORT` in hex: the IPv4 address is the raw network-order word printed as
/// a host integer, so its bytes in host (little-endian) order are the address; the port is plain.
fn parse_hex_addr(field: &str) -> Option<SocketAddrV4> {
    let (ip, port) = field.split_once(':')?;
    let ip = u32::from_str_radix(ip, 16).ok()?;
    let port = u16::from_str_radix(port, 16).ok()?;
    Some(SocketAddrV4::new(ip.to_le_bytes().into(), port))
}

/// The inode of the TCP socket from `local` to `remote`, as `/proc/net/tcp` lists it.
fn socket_inode(local: SocketAddrV4, remote: SocketAddrV4) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (l, r, inode) = (fields.get(1)?, fields.get(2)?, fields.get(9)?);
        (parse_hex_addr(l)? == local && parse_hex_addr(r)? == remote)
            .then(|| inode.parse().ok())
            .flatten()
    })
}

/// This process's file descriptor for the socket with `inode`.
fn fd_of_inode(inode: u64) -> Option<RawFd> {
    let target = format!("socket:[{inode}]");
    std::fs::read_dir("/proc/self/fd").ok()?.find_map(|entry| {
        let entry = entry.ok()?;
        let link = std::fs::read_link(entry.path()).ok()?;
        (link.to_str()? == target)
            .then(|| entry.file_name().to_str()?.parse().ok())
            .flatten()
    })
}

/// `getsockopt(fd, IPPROTO_TCP, TCP_NODELAY)`.
#[allow(unsafe_code)]
fn tcp_nodelay(fd: RawFd) -> std::io::Result<bool> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes of the sizes given; a stale `fd` only makes
    // the call fail (EBADF / ENOTSOCK).
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            std::ptr::addr_of_mut!(value).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(value != 0)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn v4(addr: SocketAddr) -> SocketAddrV4 {
    match addr {
        SocketAddr::V4(addr) => addr,
        SocketAddr::V6(addr) => panic!("expected an IPv4 address, got {addr}"),
    }
}

#[test]
fn the_embedded_broker_turns_nagle_off_on_every_accepted_connection() {
    let broker = EmbeddedBroker::start().expect("embedded broker");
    let broker_addr = SocketAddrV4::new([127, 0, 0, 1].into(), broker.port());
    for client_no in 0..3 {
        let client = TcpStream::connect(broker_addr).expect("connect to the broker");
        let client_addr = v4(client.local_addr().expect("client address"));
        // The broker accepts on its own thread: wait (bounded) for its socket to appear.
        let mut fd = None;
        let found = poll_until(Duration::from_secs(5), || {
            fd = socket_inode(broker_addr, client_addr).and_then(fd_of_inode);
            fd.is_some()
        });
        assert!(
            found,
            "connection {client_no}: the broker's socket to {client_addr} not found"
        );
        let fd = fd.expect("found");
        assert!(
            tcp_nodelay(fd).expect("getsockopt on the broker's socket"),
            "connection {client_no}: the broker's side has Nagle's algorithm on"
        );
        // The client's own socket, left as the OS made it, reads as Nagle on: the check reads
        // the option of the socket it is given.
        assert_ne!(fd, client.as_raw_fd());
        assert!(!tcp_nodelay(client.as_raw_fd()).expect("getsockopt on the client's socket"));
    }
}
