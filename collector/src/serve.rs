//! `fathom-collector serve`: the peer the network probes measure against.
//!
//! Safe to leave running on a host: it only moves bytes. Each client's first line names one of
//! four fixed tests; there is nothing else it can ask for (no command execution, no file
//! access). Memory is bounded: at most `max_clients` connections at once (others are told
//! `ERR busy` and closed), one 128 KiB buffer each, and every test ends after `max_test`.
//! Sockets time out after `io_timeout` without progress, so a vanished client frees its slot.
//!
//! The protocol, a line of text then bytes (`\n`-terminated lines, at most 256 bytes):
//! - `FATHOM/1 sink` → `OK`; the server reads and discards until EOF, then answers
//!   `DONE <bytes> <nanoseconds from first byte to EOF>`.
//! - `FATHOM/1 source <seconds>` → `OK`; the server writes for that long, then closes.
//! - `FATHOM/1 echo <size>` → `OK`; the server reads `size` bytes and writes them back, until EOF.
//! - `FATHOM/1 udp` → `OK <port>`; the server receives datagrams on that UDP port (same address)
//!   until the client sends `END <sent>` on the TCP connection, then answers
//!   `STATS <received> <lost> <out_of_order> <jitter_ns>`: loss and out-of-order counted from
//!   sequence numbers and jitter estimated as RFC 3550 does, as iperf3 does.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::probe::CancelToken;

pub const PROTOCOL: &str = "FATHOM/1";
/// The default port of `serve` and of the network probes' `peer`.
pub const DEFAULT_PORT: u16 = 7433;
const BUFFER: usize = 128 << 10;
const MAX_LINE: usize = 256;
const MAX_ECHO: usize = 64 << 10;
/// Bytes at the start of every probe datagram: sequence number, then the sender's clock (ns).
pub const UDP_HEADER: usize = 16;

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub max_clients: usize,
    pub max_test: Duration,
    pub io_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            listen: SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)),
            max_clients: 64,
            max_test: Duration::from_secs(300),
            io_timeout: Duration::from_secs(10),
        }
    }
}

/// A bound listener, ready to serve.
pub struct Server {
    listener: TcpListener,
    options: ServeOptions,
}

impl Server {
    pub fn bind(options: ServeOptions) -> std::io::Result<Server> {
        let listener = TcpListener::bind(options.listen)?;
        Ok(Server { listener, options })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `stop` is cancelled (checked every 100 ms).
    pub fn run(self, stop: &CancelToken) -> std::io::Result<()> {
        self.listener.set_nonblocking(true)?;
        let active = Arc::new(AtomicUsize::new(0));
        while !stop.is_cancelled() {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    stream.set_nonblocking(false)?;
                    let slot = Slot::take(&active);
                    if slot.0.load(Ordering::SeqCst) > self.options.max_clients {
                        drop(slot);
                        refuse_busy(stream);
                        continue;
                    }
                    let (options, stop) = (self.options.clone(), stop.clone());
                    // The slot is given back when the thread ends, however it ends, or at once
                    // if no thread can be started.
                    let spawned = std::thread::Builder::new().name("fathom-serve".into()).spawn(move || {
                        let _slot = slot;
                        if let Err(e) = handle(stream, &options, &stop) {
                            tracing::debug!("client {peer}: {e}");
                        }
                    });
                    if let Err(e) = spawned {
                        tracing::warn!("client {peer}: no thread to serve it: {e}");
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => tracing::warn!("accept: {e}"),
            }
        }
        Ok(())
    }
}

/// One client's place among `max_clients`, given back on drop.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(active: &Arc<AtomicUsize>) -> Slot {
        active.fetch_add(1, Ordering::SeqCst);
        Slot(active.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Tells a client over the limit, after reading its request line if it came at once (closing
/// a socket with unread data resets it, and the client would never read why); the accept loop
/// waits at most 20 ms for it.
fn refuse_busy(mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(20)));
    let mut request = [0u8; MAX_LINE];
    let _ = stream.read(&mut request);
    let _ = stream.write_all(b"ERR busy: too many clients\n");
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// Sets the socket's read timeout to what is left until `until`, at most `io_timeout`; an
/// error once `until` has passed, so a client that drips bytes cannot hold its slot.
fn read_timeout(stream: &TcpStream, until: Instant, io_timeout: Duration) -> std::io::Result<()> {
    let left = until.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the test's time is up"));
    }
    stream.set_read_timeout(Some(left.min(io_timeout)))
}

/// Reads one line of at most MAX_LINE bytes, all of it before `until`.
fn read_line(
    reader: &mut BufReader<TcpStream>,
    until: Instant,
    io_timeout: Duration,
) -> std::io::Result<String> {
    let mut line = Vec::new();
    loop {
        read_timeout(reader.get_ref(), until, io_timeout)?;
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed before a whole line"));
        }
        if let Some(end) = buf.iter().position(|&b| b == b'\n') {
            line.extend_from_slice(&buf[..end]);
            reader.consume(end + 1);
            return Ok(String::from_utf8_lossy(&line).trim().to_string());
        }
        let n = buf.len();
        line.extend_from_slice(buf);
        reader.consume(n);
        if line.len() > MAX_LINE {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "no line within 256 bytes"));
        }
    }
}

fn handle(stream: TcpStream, options: &ServeOptions, stop: &CancelToken) -> std::io::Result<()> {
    stream.set_read_timeout(Some(options.io_timeout))?;
    stream.set_write_timeout(Some(options.io_timeout))?;
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::with_capacity(BUFFER, stream);
    let line = read_line(&mut reader, Instant::now() + options.io_timeout, options.io_timeout)?;
    let mut words = line.split_whitespace();
    if words.next() != Some(PROTOCOL) {
        writer.write_all(format!("ERR expected {PROTOCOL}\n").as_bytes())?;
        return Ok(());
    }
    let deadline = Instant::now() + options.max_test;
    match (words.next(), words.next()) {
        (Some("sink"), None) => {
            writer.write_all(b"OK\n")?;
            let mut buf = vec![0u8; BUFFER];
            let (mut bytes, mut first) = (0u64, None);
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                if n == 0 {
                    break;
                }
                first.get_or_insert_with(Instant::now);
                bytes += n as u64;
                if Instant::now() > deadline || stop.is_cancelled() {
                    return Ok(());
                }
            }
            let nanos = first.map_or(0, |f| f.elapsed().as_nanos());
            writer.write_all(format!("DONE {bytes} {nanos}\n").as_bytes())
        }
        (Some("source"), Some(seconds)) => {
            let seconds: f64 = seconds.parse().unwrap_or(0.0);
            if !(0.0..=options.max_test.as_secs_f64()).contains(&seconds) {
                return writer.write_all(b"ERR source: seconds out of range\n");
            }
            writer.write_all(b"OK\n")?;
            let buf = vec![0x5au8; BUFFER];
            let until = Instant::now() + Duration::from_secs_f64(seconds);
            while Instant::now() < until && !stop.is_cancelled() {
                writer.write_all(&buf)?;
            }
            writer.shutdown(std::net::Shutdown::Write)
        }
        (Some("echo"), Some(size)) => {
            let size: usize = size.parse().unwrap_or(0);
            if !(1..=MAX_ECHO).contains(&size) {
                return writer.write_all(b"ERR echo: size out of range\n");
            }
            writer.write_all(b"OK\n")?;
            let mut buf = vec![0u8; size];
            loop {
                // A whole message, each read bounded by the test's deadline.
                let mut have = 0;
                while have < size {
                    read_timeout(reader.get_ref(), deadline, options.io_timeout)?;
                    match reader.read(&mut buf[have..]) {
                        Ok(0) => return Ok(()),
                        Ok(n) => have += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                writer.write_all(&buf)?;
                if stop.is_cancelled() {
                    return Ok(());
                }
            }
        }
        (Some("udp"), None) => {
            let local = writer.local_addr()?;
            let socket = UdpSocket::bind(SocketAddr::new(local.ip(), 0))?;
            socket.set_read_timeout(Some(Duration::from_millis(50)))?;
            writer.write_all(format!("OK {}\n", socket.local_addr()?.port()).as_bytes())?;
            // The END line arrives on the TCP connection while datagrams arrive on the socket.
            let done = std::sync::atomic::AtomicBool::new(false);
            let control = std::thread::scope(|scope| {
                let receiver = scope.spawn(|| receive_datagrams(&socket, &done, deadline, stop));
                // Nothing comes on this connection while the datagrams flow: wait for the END
                // line until the test's deadline, not the idle timeout.
                let line = read_line(&mut reader, deadline, options.max_test);
                done.store(true, Ordering::SeqCst);
                (line, receiver.join().expect("receiver thread"))
            });
            let (line, stats) = control;
            let line = line?;
            match line.strip_prefix("END ").and_then(|n| n.trim().parse::<u64>().ok()) {
                Some(sent) => {
                    let lost = sent.saturating_sub(stats.received);
                    writer.write_all(
                        format!(
                            "STATS {} {lost} {} {}\n",
                            stats.received,
                            stats.out_of_order,
                            stats.jitter_ns.round() as u64
                        )
                        .as_bytes(),
                    )
                }
                None => writer.write_all(b"ERR udp: expected END <sent>\n"),
            }
        }
        _ => writer.write_all(format!("ERR unknown test `{line}`\n").as_bytes()),
    }
}

#[derive(Debug, Default)]
struct UdpStats {
    received: u64,
    out_of_order: u64,
    jitter_ns: f64,
}

fn receive_datagrams(
    socket: &UdpSocket,
    done: &std::sync::atomic::AtomicBool,
    deadline: Instant,
    stop: &CancelToken,
) -> UdpStats {
    let mut stats = UdpStats::default();
    let mut buf = vec![0u8; 65536];
    let clock = Instant::now();
    let mut highest: Option<u64> = None;
    let mut last_transit: Option<f64> = None;
    // Datagrams still in flight when END arrives get a short grace period.
    let mut grace_until: Option<Instant> = None;
    loop {
        if let Some(until) = grace_until {
            if Instant::now() > until {
                break;
            }
        } else if done.load(Ordering::SeqCst) {
            grace_until = Some(Instant::now() + Duration::from_millis(100));
        }
        if Instant::now() > deadline || stop.is_cancelled() {
            break;
        }
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            Err(_) => continue,
        };
        if n < UDP_HEADER {
            continue;
        }
        let arrival = clock.elapsed().as_nanos() as f64;
        let seq = u64::from_be_bytes(buf[0..8].try_into().expect("8 bytes"));
        let sent = u64::from_be_bytes(buf[8..16].try_into().expect("8 bytes")) as f64;
        stats.received += 1;
        match highest {
            Some(h) if seq <= h => stats.out_of_order += 1,
            _ => highest = Some(seq),
        }
        // RFC 3550 §6.4.1: J += (|D| - J) / 16, D the change of transit time; the clocks need
        // not agree, only their differences count.
        let transit = arrival - sent;
        if let Some(last) = last_transit {
            stats.jitter_ns += ((transit - last).abs() - stats.jitter_ns) / 16.0;
        }
        last_transit = Some(transit);
    }
    stats
}

/// Connects to a peer and starts a test; the reply line after `OK` (the UDP port for `udp`).
pub fn start_test(peer: SocketAddr, test: &str, timeout: Duration) -> std::io::Result<(TcpStream, String)> {
    let stream = TcpStream::connect_timeout(&peer, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    writer.write_all(format!("{PROTOCOL} {test}\n").as_bytes())?;
    let reply = read_reply(&stream)?;
    match reply.strip_prefix("OK") {
        Some(rest) => Ok((stream, rest.trim().to_string())),
        None => Err(std::io::Error::other(format!("peer {peer} refused `{test}`: {reply}"))),
    }
}

/// Reads one reply line byte by byte (so no data after it is consumed).
pub fn read_reply(mut stream: &TcpStream) -> std::io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8];
    while line.len() < MAX_LINE {
        match stream.read(&mut byte) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection",
                ));
            }
            Ok(_) if byte[0] == b'\n' => return Ok(String::from_utf8_lossy(&line).trim().to_string()),
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "no reply line within 256 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(max_clients: usize) -> (SocketAddr, CancelToken) {
        let options =
            ServeOptions { listen: "127.0.0.1:0".parse().unwrap(), max_clients, ..Default::default() };
        let server = Server::bind(options).unwrap();
        let addr = server.local_addr().unwrap();
        let stop = CancelToken::default();
        let s = stop.clone();
        std::thread::spawn(move || server.run(&s));
        (addr, stop)
    }

    const T: Duration = Duration::from_secs(5);

    #[test]
    fn sink_counts_what_it_was_sent() {
        let (addr, stop) = server(4);
        let (mut stream, _) = start_test(addr, "sink", T).unwrap();
        stream.write_all(&vec![1u8; 1_000_000]).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let done = read_reply(&stream).unwrap();
        let words: Vec<&str> = done.split_whitespace().collect();
        assert_eq!(words[..2], ["DONE", "1000000"], "{done}");
        stop.cancel();
    }

    #[test]
    fn echo_returns_each_message_and_source_sends_for_its_time() {
        let (addr, stop) = server(4);
        let (mut stream, _) = start_test(addr, "echo 64", T).unwrap();
        let message: Vec<u8> = (0..64).collect();
        for _ in 0..3 {
            stream.write_all(&message).unwrap();
            let mut back = vec![0u8; 64];
            stream.read_exact(&mut back).unwrap();
            assert_eq!(back, message);
        }
        drop(stream);
        let started = Instant::now();
        let (mut stream, _) = start_test(addr, "source 0.3", T).unwrap();
        let mut total = 0usize;
        let mut buf = vec![0u8; 65536];
        loop {
            let n = stream.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            total += n;
        }
        assert!(total > 0);
        assert!(started.elapsed() >= Duration::from_millis(300));
        stop.cancel();
    }

    #[test]
    fn udp_counts_loss_reordering_and_jitter() {
        let (addr, stop) = server(4);
        let (mut control, port) = start_test(addr, "udp", T).unwrap();
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.connect(SocketAddr::new(addr.ip(), port.parse().unwrap())).unwrap();
        let clock = Instant::now();
        // Ten datagrams, 1 ms apart; 4 is never sent, 7 comes after 8.
        for seq in [0u64, 1, 2, 3, 5, 6, 8, 7, 9] {
            let mut d = vec![0u8; 100];
            d[0..8].copy_from_slice(&seq.to_be_bytes());
            d[8..16].copy_from_slice(&(clock.elapsed().as_nanos() as u64).to_be_bytes());
            socket.send(&d).unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        control.write_all(b"END 10\n").unwrap();
        let stats = read_reply(&control).unwrap();
        let w: Vec<&str> = stats.split_whitespace().collect();
        assert_eq!(w[..4], ["STATS", "9", "1", "1"], "{stats}");
        let jitter: f64 = w[4].parse().unwrap();
        assert!(jitter < 5e6, "{stats}");
        stop.cancel();
    }

    #[test]
    fn unknown_tests_and_extra_clients_are_refused() {
        let (addr, stop) = server(1);
        let err = start_test(addr, "exec rm -rf /", T).unwrap_err().to_string();
        assert!(err.contains("unknown test"), "{err}");
        std::thread::sleep(Duration::from_millis(50));
        let (_held, _) = start_test(addr, "echo 8", T).unwrap();
        let err = start_test(addr, "echo 8", T).unwrap_err().to_string();
        assert!(err.contains("busy"), "{err}");
        stop.cancel();
    }
}
