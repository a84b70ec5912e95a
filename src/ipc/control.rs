//! Arbiter ↔ front control messages (sans-io).
//!
//! They travel over a `SOCK_SEQPACKET` socketpair made for each front the
//! arbiter starts, one message per packet, 9 bytes: `kind: u8, slot: u32 LE,
//! pid: u32 LE`. `AddWorker` carries the front's end of that worker's
//! response channel as an SCM_RIGHTS descriptor; an ASGI worker's inbox
//! (see `front/upstream/inbox.rs`) comes first, as two messages: its
//! sending end, then a second descriptor of the worker's receiving end
//! (for taking back what the worker left unread).

/// Arbiter → front.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToFront {
    /// A worker exists in `slot` with `pid`; its channel end comes along.
    AddWorker { slot: u32, pid: u32 },
    /// The sending end of the inbox of the worker in `slot` with `pid`.
    InboxSend { slot: u32, pid: u32 },
    /// A descriptor of that inbox's receiving end (the worker's).
    InboxTakeBack { slot: u32, pid: u32 },
}

/// Front → arbiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToArbiter {
    /// The front has finished with the dead worker of `slot` (answered its
    /// in-flight requests); the slot may be given to a new worker.
    SlotFree { slot: u32 },
}

pub const MESSAGE_LEN: usize = 9;

fn pack(kind: u8, a: u32, b: u32) -> [u8; MESSAGE_LEN] {
    let mut m = [0u8; MESSAGE_LEN];
    m[0] = kind;
    m[1..5].copy_from_slice(&a.to_le_bytes());
    m[5..9].copy_from_slice(&b.to_le_bytes());
    m
}

fn unpack(buf: &[u8]) -> Option<(u8, u32, u32)> {
    if buf.len() != MESSAGE_LEN {
        return None;
    }
    let a = u32::from_le_bytes(buf[1..5].try_into().ok()?);
    let b = u32::from_le_bytes(buf[5..9].try_into().ok()?);
    Some((buf[0], a, b))
}

impl ToFront {
    pub fn encode(self) -> [u8; MESSAGE_LEN] {
        match self {
            ToFront::AddWorker { slot, pid } => pack(1, slot, pid),
            ToFront::InboxSend { slot, pid } => pack(2, slot, pid),
            ToFront::InboxTakeBack { slot, pid } => pack(3, slot, pid),
        }
    }
    pub fn decode(buf: &[u8]) -> Option<Self> {
        match unpack(buf)? {
            (1, slot, pid) => Some(ToFront::AddWorker { slot, pid }),
            (2, slot, pid) => Some(ToFront::InboxSend { slot, pid }),
            (3, slot, pid) => Some(ToFront::InboxTakeBack { slot, pid }),
            _ => None,
        }
    }
}

impl ToArbiter {
    pub fn encode(self) -> [u8; MESSAGE_LEN] {
        match self {
            ToArbiter::SlotFree { slot } => pack(1, slot, 0),
        }
    }
    pub fn decode(buf: &[u8]) -> Option<Self> {
        match unpack(buf)? {
            (1, slot, _) => Some(ToArbiter::SlotFree { slot }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        for m in [
            ToFront::AddWorker { slot: 3, pid: 999 },
            ToFront::InboxSend { slot: 4, pid: 1000 },
            ToFront::InboxTakeBack { slot: 5, pid: 1001 },
        ] {
            assert_eq!(ToFront::decode(&m.encode()), Some(m));
        }
        let a = ToArbiter::SlotFree { slot: 7 };
        assert_eq!(ToArbiter::decode(&a.encode()), Some(a));
        assert_eq!(ToFront::decode(&[9; 9]), None);
        assert_eq!(ToFront::decode(&[1; 3]), None);
    }
}
