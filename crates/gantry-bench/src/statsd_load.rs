//! `statsd-load`: a paced StatsD load generator for `scripts/bench/statsd`. Sends datagrams
//! of about `--datagram-bytes` over loopback UDP, each beginning with one line of the known,
//! unsampled counter (`--known-key:1|c`), then lines over `--keys` distinct keys: 60 %
//! counters (one in five sampled at `@0.5`), 25 % timers, 10 % gauges, 5 % sets; one key in
//! ten carries a tag (`|#k:v`).
//!
//! Pacing: each sender thread owns a socket (so the kernel's port hashing spreads senders
//! over a server's receive loops, as many clients would) and sends a batch of datagrams per
//! tick against absolute deadlines (sleep to just before the deadline, then spin), so timer
//! slack never accumulates. Only datagrams the kernel accepted are counted; the known
//! counter's line count is therefore exact: one per datagram sent.
//!
//! Output (stdout, one line): `sent_lines=N known_lines=N datagrams=N seconds=F
//! achieved_lps=N`.

use std::fmt::Write as _;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Debug, Args)]
pub struct StatsdLoadArgs {
    /// The StatsD daemon's UDP address (loopback only).
    #[arg(long)]
    addr: SocketAddr,
    /// StatsD lines per second, over all senders.
    #[arg(long)]
    rate: u64,
    /// How long to send.
    #[arg(long)]
    seconds: f64,
    /// The known counter; one unsampled `KEY:1|c` line opens every datagram.
    #[arg(long, default_value = "bench.known")]
    known_key: String,
    /// Distinct keys besides the known counter.
    #[arg(long, default_value_t = 10_000)]
    keys: usize,
    /// Target datagram payload size in bytes.
    #[arg(long, default_value_t = 1_400)]
    datagram_bytes: usize,
    /// Sender threads, one socket each.
    #[arg(long, default_value_t = 2)]
    senders: usize,
    /// Datagrams sent per pacing tick and sender (ticks are at least 1 ms apart).
    #[arg(long, default_value_t = 0)]
    batch: usize,
    /// Distinct datagrams prepared per sender (then reused in a loop).
    #[arg(long, default_value_t = 4_096)]
    pool: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

/// One prepared datagram and the StatsD lines it holds.
struct Datagram {
    bytes: Vec<u8>,
    lines: u64,
}

/// The line body (`name:value|type[|@rate]`) of one random line for key `k`.
fn line_for(k: usize, keys: usize, rng: &mut StdRng, out: &mut String) {
    // Key types by position: 60 % counters, 25 % timers, 10 % gauges, 5 % sets.
    let share = k * 100 / keys.max(1);
    let service = k % 40;
    let endpoint = k / 40;
    if share < 60 {
        let _ = write!(out, "app.svc{service:02}.ep{endpoint:03}.requests:1|c");
        if rng.gen_ratio(1, 5) {
            out.push_str("|@0.5");
        }
    } else if share < 85 {
        let ms: f64 = rng.gen_range(0.5..400.0);
        let _ = write!(
            out,
            "app.svc{service:02}.ep{endpoint:03}.latency:{ms:.1}|ms"
        );
    } else if share < 95 {
        let v: u32 = rng.gen_range(0..10_000);
        let _ = write!(out, "app.svc{service:02}.ep{endpoint:03}.queue_depth:{v}|g");
    } else {
        let user: u32 = rng.gen_range(0..5_000);
        let _ = write!(out, "app.svc{service:02}.ep{endpoint:03}.users:u{user}|s");
    }
    if k.is_multiple_of(10) {
        let _ = write!(out, "|#region:r{}", k % 3);
    }
}

fn build_pool(args: &StatsdLoadArgs, sender: usize) -> Vec<Datagram> {
    let mut rng = StdRng::seed_from_u64(args.seed.wrapping_add(sender as u64 * 7919));
    let known = format!("{}:1|c", args.known_key);
    let mut pool = Vec::with_capacity(args.pool);
    let mut line = String::new();
    for _ in 0..args.pool {
        let mut text = known.clone();
        let mut lines = 1;
        loop {
            line.clear();
            line_for(rng.gen_range(0..args.keys), args.keys, &mut rng, &mut line);
            if text.len() + 1 + line.len() > args.datagram_bytes {
                break;
            }
            text.push('\n');
            text.push_str(&line);
            lines += 1;
        }
        pool.push(Datagram {
            bytes: text.into_bytes(),
            lines,
        });
    }
    pool
}

#[derive(Debug, Default, Clone, Copy)]
struct Sent {
    lines: u64,
    datagrams: u64,
    errors: u64,
}

/// Sleeps until `deadline`: the OS timer for all but the last 200 µs, then a spin.
fn wait_until(deadline: Instant) {
    let now = Instant::now();
    if deadline <= now {
        return;
    }
    let left = deadline - now;
    if left > Duration::from_micros(200) {
        std::thread::sleep(left - Duration::from_micros(200));
    }
    while Instant::now() < deadline {
        std::hint::spin_loop();
    }
}

fn send_loop(
    addr: SocketAddr,
    pool: Arc<Vec<Datagram>>,
    lines_per_sec: f64,
    batch: usize,
    start: Instant,
    end: Instant,
) -> anyhow::Result<Sent> {
    let socket = UdpSocket::bind("127.0.0.1:0").context("cannot open a UDP socket")?;
    socket
        .connect(addr)
        .with_context(|| format!("cannot address {addr}"))?;
    let mut sent = Sent::default();
    let mut next = 0usize;
    // Lines scheduled so far: the deadline of the next batch is when they are due.
    let mut scheduled = 0f64;
    loop {
        let due = start + Duration::from_secs_f64(scheduled / lines_per_sec);
        if due >= end {
            break;
        }
        wait_until(due);
        for _ in 0..batch {
            let d = &pool[next];
            next = (next + 1) % pool.len();
            scheduled += d.lines as f64;
            match socket.send(&d.bytes) {
                Ok(_) => {
                    sent.lines += d.lines;
                    sent.datagrams += 1;
                }
                Err(_) => sent.errors += 1,
            }
        }
    }
    Ok(sent)
}

pub async fn run(args: StatsdLoadArgs) -> anyhow::Result<()> {
    if !args.addr.ip().is_loopback() {
        bail!("--addr must be a loopback address; the benchmark only sends to this machine");
    }
    if args.rate == 0 || args.seconds <= 0.0 || args.senders == 0 || args.pool == 0 {
        bail!("--rate, --seconds, --senders and --pool must be positive");
    }
    let pools: Vec<Arc<Vec<Datagram>>> = (0..args.senders)
        .map(|s| Arc::new(build_pool(&args, s)))
        .collect();
    let mean_lines = pools
        .iter()
        .flat_map(|p| p.iter().map(|d| d.lines))
        .sum::<u64>() as f64
        / (args.pool * args.senders) as f64;
    let per_sender = args.rate as f64 / args.senders as f64;
    // A batch per millisecond at the requested rate, unless set.
    let batch = if args.batch > 0 {
        args.batch
    } else {
        ((per_sender / 1000.0 / mean_lines).ceil() as usize).max(1)
    };
    let start = Instant::now() + Duration::from_millis(20);
    let end = start + Duration::from_secs_f64(args.seconds);
    let addr = args.addr;
    let handles: Vec<_> = pools
        .into_iter()
        .map(|pool| {
            std::thread::spawn(move || send_loop(addr, pool, per_sender, batch, start, end))
        })
        .collect();
    let mut total = Sent::default();
    for handle in handles {
        let sent = tokio::task::spawn_blocking(move || handle.join())
            .await?
            .map_err(|_| anyhow::anyhow!("a sender thread panicked"))??;
        total.lines += sent.lines;
        total.datagrams += sent.datagrams;
        total.errors += sent.errors;
    }
    let seconds = Instant::now()
        .saturating_duration_since(start)
        .as_secs_f64();
    let achieved = total.lines as f64 / seconds.max(1e-9);
    eprintln!(
        "statsd-load: {} lines in {} datagrams ({mean_lines:.1} lines each, {batch} a tick per \
         sender, {} senders) over {seconds:.2} s: {achieved:.0} lines/s of {} asked; {} send errors",
        total.lines, total.datagrams, args.senders, args.rate, total.errors
    );
    println!(
        "sent_lines={} known_lines={} datagrams={} seconds={seconds:.3} achieved_lps={achieved:.0} send_errors={}",
        total.lines, total.datagrams, total.datagrams, total.errors
    );
    Ok(())
}
