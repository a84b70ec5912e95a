//! The worker channels: receive each one from the arbiter, read a
//! worker's response frames until it dies, and route them to the waiting
//! requests (whole, spooled, streamed or offloaded to a file) and to the
//! WebSockets it holds.

use super::*;

impl Upstream {
    /// Receive worker channels from the arbiter for as long as it lives.
    /// Each channel is read on one of the front's `runtimes`, by slot, so
    /// that the reading is spread over the front's threads.
    pub async fn control_loop(self: Arc<Self>, runtimes: Vec<tokio::runtime::Handle>) {
        let mut buf = [0u8; 64];
        // Inbox ends received for a worker whose channel has not come yet,
        // by slot: (pid, sending end, receiving end).
        let mut inbox_parts: HashMap<u32, InboxParts> = HashMap::new();
        loop {
            let r = self
                .control
                .async_io(Interest::READABLE, || {
                    fdpass::recv(self.control.as_fd(), &mut buf, MsgFlags::MSG_DONTWAIT)
                })
                .await;
            match r {
                Ok(got) if got.len == 0 => {
                    debug!("arbiter closed the control channel");
                    return;
                }
                Ok(got) => match (ToFront::decode(&buf[..got.len]), got.fd) {
                    (Some(ToFront::InboxSend { slot, pid }), Some(fd)) => {
                        *inbox_parts.entry(slot).or_default().of(pid).0 = Some(fd);
                    }
                    (Some(ToFront::InboxTakeBack { slot, pid }), Some(fd)) => {
                        *inbox_parts.entry(slot).or_default().of(pid).1 = Some(fd);
                    }
                    (Some(ToFront::AddWorker { slot, pid }), Some(fd)) => {
                        if let Some(parts) = inbox_parts.remove(&slot) {
                            if let (true, Some(send), Some(take_back)) =
                                (parts.pid == pid, parts.send, parts.take_back)
                            {
                                self.add_inbox(inbox::Inbox::new(
                                    slot as usize,
                                    pid,
                                    send,
                                    take_back,
                                ));
                            }
                        }
                        let up = self.clone();
                        let rt = &runtimes[slot as usize % runtimes.len().max(1)];
                        rt.spawn(async move { up.worker_loop(slot as usize, pid, fd).await });
                    }
                    _ => warn!("malformed control message from the arbiter"),
                },
                Err(e) => {
                    error!(error = %e, "control channel error");
                    return;
                }
            }
        }
    }

    /// Read one worker's responses until it dies.
    async fn worker_loop(self: Arc<Self>, slot: usize, pid: u32, fd: OwnedFd) {
        let std_stream = std::os::unix::net::UnixStream::from(fd);
        let _ = std_stream.set_nonblocking(true);
        let Ok(stream) = tokio::net::UnixStream::from_std(std_stream) else {
            return;
        };
        let stream = Arc::new(stream);
        let (writer, frames) = mpsc::channel(256);
        tokio::spawn(write_loop(stream.clone(), frames, pid));
        self.writers
            .lock()
            .expect("writers lock")
            .insert(slot, writer.clone());
        let mut sockets = Sockets {
            open: HashMap::new(),
            writer,
        };
        debug!(slot, pid, "worker channel open");
        self.channels.fetch_add(1, Ordering::Relaxed);
        crate::front::metrics::worker_channel(slot, true);
        let mut active: IdMap<Active> = IdMap::default();
        let mut buf = BytesMut::with_capacity(64 * 1024);
        // Descriptors received (wsgi.file_wrapper files), oldest first;
        // each `File` frame takes the oldest (see `ipc::wire`).
        let mut fds: VecDeque<OwnedFd> = VecDeque::new();
        let mut got_fds: Vec<OwnedFd> = Vec::new();
        let lost = 'read: loop {
            if buf.capacity() - buf.len() < 16 * 1024 {
                buf.reserve(64 * 1024);
            }
            // recvmsg rather than read: a response may carry a descriptor.
            // Same cost as read on the common path (no descriptor).
            let r = stream
                .async_io(Interest::READABLE, || {
                    fdpass::recv_into(
                        stream.as_fd(),
                        &mut buf,
                        &mut got_fds,
                        MsgFlags::MSG_DONTWAIT,
                    )
                })
                .await;
            fds.extend(got_fds.drain(..));
            match r {
                Ok(0) => break 'read false,
                Ok(_) => {}
                Err(e) => {
                    warn!(pid, error = %e, "worker channel read error");
                    break 'read false;
                }
            }
            loop {
                match wire::check(&buf, MAX_FRAME) {
                    Ok(Some(total)) if buf.len() >= total => {
                        let frame = buf.split_to(total).freeze();
                        match self.on_frame(pid, &frame, &mut active, &mut fds, &mut sockets) {
                            Ok(None) => {}
                            // An unbuffered response whose client is slow:
                            // stop reading this worker until it takes more.
                            Ok(Some((tx, item))) => {
                                let _ = tx.send(item).await;
                            }
                            Err(e) => {
                                error!(pid, error = %e, "bad frame from worker; dropping its channel");
                                break 'read true;
                            }
                        }
                    }
                    Ok(Some(total)) => {
                        buf.reserve(total - buf.len());
                        break;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        error!(pid, error = %e, "bad frame from worker; dropping its channel");
                        break 'read true;
                    }
                }
            }
            // Whatever is still incomplete after this read is streamed.
            for (id, a) in active.iter_mut() {
                if let Active::Building { .. } = a {
                    a.start_streaming(*id, pid, &self);
                }
            }
        };
        self.writers.lock().expect("writers lock").remove(&slot);
        // The relays see their channel close and tell their clients.
        drop(sockets);
        drop(stream);
        self.channels.fetch_sub(1, Ordering::Relaxed);
        crate::front::metrics::worker_channel(slot, false);
        let line = self.scoreboard.slot(slot);
        let timed_out = line.timed_out.load(Ordering::Acquire) != 0;
        let failure = if timed_out {
            Failure::Timeout
        } else {
            Failure::WorkerLost
        };
        for (id, a) in active.drain() {
            match a {
                Active::Building { .. } => self.complete(id, Err(failure)),
                Active::Spooled(w) => w.fail("worker died mid-response".into()),
                Active::Unbuffered(tx) => {
                    let _ = tx.try_send(Err(io::Error::other("worker died mid-response")));
                }
                // The file is the front's now; it goes on without the worker.
                Active::Offloaded => {}
            }
        }
        for id in line.in_flight() {
            self.complete(id, Err(failure));
        }
        if lost {
            // We stopped reading a live worker: it must not go on.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // Requests sent to its inbox and not taken go to the others.
        self.close_inbox(slot, pid).await;
        debug!(slot, pid, timed_out, "worker channel closed");
        let msg = ToArbiter::SlotFree { slot: slot as u32 }.encode();
        let _ = fdpass::send(self.control.as_fd(), &[&msg], None, MsgFlags::MSG_DONTWAIT);
    }

    /// Static routes the app declared (`django_static`, `flask_static`).
    /// Every worker sends the same list when it starts and then every few
    /// seconds; the latest wins, so the routes follow the app across a
    /// reload and reach a restarted front.
    fn app_routes(&self, routes: &[(&[u8], &[u8])]) {
        use std::os::unix::ffi::OsStrExt;
        let list: Vec<crate::config::StaticRoute> = routes
            .iter()
            .filter_map(|(url, dir)| {
                let url = std::str::from_utf8(url).ok()?;
                let dir = std::path::Path::new(std::ffi::OsStr::from_bytes(dir));
                Some(crate::config::StaticRoute::new(url, dir))
            })
            .collect();
        let files = self.files.clone();
        // Checking the directories touches the disk: off the runtime.
        tokio::task::spawn_blocking(move || {
            let added = files.set_app_routes(list);
            if !added.is_empty() {
                tracing::info!(routes = ?added, "serving the app's static routes");
            }
        });
    }

    /// Handle one frame. `Ok(Some(..))` is a chunk for an unbuffered
    /// response whose channel is full: the caller awaits its delivery.
    fn on_frame(
        &self,
        pid: u32,
        frame: &Bytes,
        active: &mut IdMap<Active>,
        fds: &mut VecDeque<OwnedFd>,
        sockets: &mut Sockets,
    ) -> Result<Option<Blocked>, String> {
        let (decoded, _) = wire::decode(frame, MAX_FRAME)
            .map_err(|e| e.to_string())?
            .ok_or("incomplete frame")?;
        match decoded {
            wire::Frame::ResponseHead(id, head) => {
                let status = StatusCode::from_u16(head.status).map_err(|e| e.to_string())?;
                let mut headers = HeaderMap::with_capacity(head.headers.len() + 2);
                for (n, v) in head.headers {
                    let name = HeaderName::from_bytes(n).map_err(|e| e.to_string())?;
                    let value = HeaderValue::from_bytes(v).map_err(|e| e.to_string())?;
                    headers.append(name, value);
                }
                active.insert(
                    id,
                    Active::Building {
                        status,
                        headers,
                        chunks: Vec::new(),
                    },
                );
            }
            wire::Frame::Body(id, data) => match active.get_mut(&id) {
                Some(Active::Building { chunks, .. }) => chunks.push(frame.slice_ref(data)),
                Some(Active::Spooled(w)) => {
                    if let Err(e) = w.push(frame.slice_ref(data)) {
                        error!(request = id, error = %e, "cannot buffer a response; aborting it");
                        if let Some(Active::Spooled(w)) = active.remove(&id) {
                            w.fail(format!("response buffering failed: {e}"));
                        }
                    }
                }
                Some(Active::Unbuffered(tx)) => {
                    if let Err(mpsc::error::TrySendError::Full(item)) =
                        tx.try_send(Ok(frame.slice_ref(data)))
                    {
                        return Ok(Some((tx.clone(), item)));
                    }
                }
                Some(Active::Offloaded) => return Err(format!("body after a file for {id}")),
                None => return Err(format!("body for unknown request {id}")),
            },
            wire::Frame::File(id, span) => {
                let fd = fds
                    .pop_front()
                    .ok_or_else(|| format!("file frame for {id} without a descriptor"))?;
                match active.remove(&id) {
                    Some(Active::Building {
                        status,
                        mut headers,
                        chunks,
                    }) if chunks.is_empty() => {
                        // The worker sized the span (file size from its
                        // position, capped by the app's Content-Length).
                        headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(span.len));
                        let file = Arc::new(std::fs::File::from(fd));
                        let body = ResponseBody::boxed(FileBody::new(file, span.offset, span.len));
                        self.complete(
                            id,
                            Ok(ResponseStart {
                                status,
                                headers,
                                body,
                                worker_pid: pid,
                                websocket: None,
                            }),
                        );
                        active.insert(id, Active::Offloaded);
                    }
                    _ => return Err(format!("file frame for {id} out of place")),
                }
            }
            wire::Frame::StaticRoutes(_, routes) => self.app_routes(&routes),
            wire::Frame::WsAccept(id, subprotocol, hs) => {
                let mut headers = HeaderMap::with_capacity(hs.len());
                for (n, v) in hs {
                    let name = HeaderName::from_bytes(n).map_err(|e| e.to_string())?;
                    let value = HeaderValue::from_bytes(v).map_err(|e| e.to_string())?;
                    headers.append(name, value);
                }
                let (tx, rx) = mpsc::unbounded_channel();
                sockets.open.insert(id, tx);
                let waiting = self.pending.lock().expect("pending lock").remove(&id);
                let start = ResponseStart {
                    status: StatusCode::SWITCHING_PROTOCOLS,
                    headers: HeaderMap::new(),
                    body: ResponseBody::Empty,
                    worker_pid: pid,
                    websocket: Some(Box::new(WsLink {
                        id,
                        subprotocol: (!subprotocol.is_empty())
                            .then(|| String::from_utf8_lossy(subprotocol).into_owned()),
                        headers,
                        to_worker: sockets.writer.clone(),
                        from_worker: rx,
                    })),
                };
                if waiting.is_none_or(|w| w.tx.send(Ok(start)).is_err()) {
                    // The client left during the handshake.
                    sockets.client_gone(id);
                }
            }
            wire::Frame::Pull(id) => {
                let stream = self.streams.lock().expect("streams lock").get(&id).cloned();
                let writer = sockets.writer.clone();
                match stream {
                    Some(s) => {
                        tokio::spawn(async move {
                            let frame = s.lock().await.next_frame(id).await;
                            let _ = writer.send(frame).await;
                        });
                    }
                    None => {
                        // The request is over (answered, or its client
                        // left): nothing more will come.
                        let mut frame = Vec::new();
                        wire::encode_disconnect(&mut frame, id);
                        let _ = writer.try_send(Bytes::from(frame));
                    }
                }
            }
            wire::Frame::WsMessage(id, kind, data) => {
                sockets.deliver(id, WsEvent::Message(kind, frame.slice_ref(data)));
            }
            wire::Frame::WsClose(id, code, reason) => {
                sockets.deliver(id, WsEvent::Close(code, reason.to_string()));
                sockets.open.remove(&id);
            }
            wire::Frame::End(id) => match active.remove(&id) {
                Some(Active::Building {
                    status,
                    headers,
                    chunks,
                }) => {
                    let body = match chunks.len() {
                        0 => ResponseBody::Empty,
                        1 => ResponseBody::full(chunks.into_iter().next().expect("one")),
                        _ => {
                            let mut all =
                                BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
                            for c in chunks {
                                all.extend_from_slice(&c);
                            }
                            ResponseBody::full(all.freeze())
                        }
                    };
                    self.complete(
                        id,
                        Ok(ResponseStart {
                            status,
                            headers,
                            body,
                            worker_pid: pid,
                            websocket: None,
                        }),
                    );
                }
                Some(Active::Spooled(w)) => w.finish(),
                Some(Active::Unbuffered(_) | Active::Offloaded) => {}
                None => return Err(format!("end for unknown request {id}")),
            },
            wire::Frame::Abort(id, reason) => match active.remove(&id) {
                // The app failed after its first chunk, but none of it has
                // reached the client: answer as for any app error, 500.
                Some(Active::Building { .. }) => {
                    debug!(request = id, reason, "worker aborted a response");
                    self.complete(id, Err(Failure::Internal));
                }
                None => {
                    debug!(request = id, reason, "worker aborted a response");
                    self.complete(id, Err(Failure::WorkerLost));
                }
                Some(Active::Spooled(w)) => w.fail(format!("response aborted: {reason}")),
                Some(Active::Offloaded) => {}
                Some(Active::Unbuffered(tx)) => {
                    let item = Err(io::Error::other(format!("response aborted: {reason}")));
                    if let Err(mpsc::error::TrySendError::Full(item)) = tx.try_send(item) {
                        return Ok(Some((tx, item)));
                    }
                }
            },
            other => return Err(format!("unexpected {other} from a worker")),
        }
        Ok(None)
    }
}

/// The WebSockets a worker holds, and its channel's writer.
struct Sockets {
    open: HashMap<u64, mpsc::UnboundedSender<WsEvent>>,
    writer: mpsc::Sender<Bytes>,
}

impl Sockets {
    /// Pass an app event to its client's relay. A relay that is gone (the
    /// client left before the accept arrived) means the app must hear
    /// that its socket is closed.
    fn deliver(&mut self, id: u64, event: WsEvent) {
        let Some(tx) = self.open.get(&id) else { return };
        if tx.send(event).is_err() {
            self.client_gone(id);
        }
    }

    /// The relay of socket `id` is gone: forget it, and tell the app its
    /// socket closed abnormally (1006).
    fn client_gone(&mut self, id: u64) {
        self.open.remove(&id);
        let mut frame = Vec::new();
        wire::encode_ws_close(&mut frame, id, 1006, "");
        let _ = self.writer.try_send(Bytes::from(frame));
    }
}

/// Write frames to a worker's channel, in order, as they come.
async fn write_loop(
    stream: Arc<tokio::net::UnixStream>,
    mut frames: mpsc::Receiver<Bytes>,
    pid: u32,
) {
    while let Some(frame) = frames.recv().await {
        let mut done = 0;
        while done < frame.len() {
            if stream.writable().await.is_err() {
                return;
            }
            match stream.try_write(&frame[done..]) {
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    debug!(pid, error = %e, "cannot write to a worker's channel");
                    return;
                }
            }
        }
    }
}

/// A response being received from a worker.
enum Active {
    /// Head seen, end not yet: collected in case it ends within this read.
    Building {
        status: StatusCode,
        headers: HeaderMap,
        chunks: Vec<Bytes>,
    },
    /// Handed to the client; later chunks are buffered (memory, then a
    /// temporary file) so the worker never waits for the client.
    Spooled(SpoolWriter),
    /// `X-Accel-Buffering: no`: chunks flow through a short channel, and a
    /// slow client slows the worker down (server-sent events, long polls).
    Unbuffered(mpsc::Sender<io::Result<Bytes>>),
    /// The body is a file the front sends (`wsgi.file_wrapper`); only `End`
    /// may follow.
    Offloaded,
}

/// A chunk waiting for room in an unbuffered response's channel.
type Blocked = (mpsc::Sender<io::Result<Bytes>>, io::Result<Bytes>);

impl Active {
    fn start_streaming(&mut self, id: u64, pid: u32, up: &Upstream) {
        let Active::Building {
            status,
            mut headers,
            chunks,
        } = std::mem::replace(self, Active::Unbuffered(mpsc::channel(1).0))
        else {
            return;
        };
        // nginx's per-response switch; the header is for us, not the client.
        let unbuffered = headers
            .remove("x-accel-buffering")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"no"));
        let body = if unbuffered {
            let (tx, rx) = mpsc::channel(16 + chunks.len());
            for c in chunks {
                let _ = tx.try_send(Ok(c));
            }
            *self = Active::Unbuffered(tx);
            ResponseBody::Channel(rx)
        } else {
            let (w, r) = spool::spool(up.response_buffer, up.temp_dir.clone());
            for c in chunks {
                let _ = w.push(c);
            }
            *self = Active::Spooled(w);
            ResponseBody::Spool(r)
        };
        up.complete(
            id,
            Ok(ResponseStart {
                status,
                headers,
                body,
                worker_pid: pid,
                websocket: None,
            }),
        );
    }
}

/// A worker's inbox ends as they arrive from the arbiter (before its
/// channel).
#[derive(Default)]
struct InboxParts {
    pid: u32,
    send: Option<OwnedFd>,
    take_back: Option<OwnedFd>,
}

impl InboxParts {
    /// The ends for `pid` (what an earlier worker of the slot left goes).
    fn of(&mut self, pid: u32) -> (&mut Option<OwnedFd>, &mut Option<OwnedFd>) {
        if self.pid != pid {
            *self = InboxParts {
                pid,
                ..InboxParts::default()
            };
        }
        (&mut self.send, &mut self.take_back)
    }
}
