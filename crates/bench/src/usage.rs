//! CPU and memory of the processes in a run, read from `/proc` (Linux), so a report can say
//! where the time went: this process, the gateway, PostgreSQL.

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`, 100 on Linux).
const TICKS: f64 = 100.0;

/// CPU seconds of one process: own and (when `children`) its reaped children's.
fn cpu_of(pid: u32, children: bool) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // fields 14..17 of stat (1-based) are utime, stime, cutime, cstime: here 11..14 (0-based)
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let mut ticks = n(11) + n(12);
    if children {
        ticks += n(13) + n(14);
    }
    Some(ticks / TICKS)
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// CPU seconds of a PostgreSQL server: the postmaster, the backends that ended (reaped) and
/// those still running.
pub fn postgres_cpu(postmaster: u32) -> Option<f64> {
    let mut total = cpu_of(postmaster, true)?;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if parent_of(pid) == Some(postmaster) {
            total += cpu_of(pid, false).unwrap_or(0.0);
        }
    }
    Some(total)
}

/// Peak resident memory (VmHWM) of a process, in MiB.
pub fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// What to watch during a run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Watch {
    /// PostgreSQL's postmaster.
    pub postgres: Option<u32>,
    /// A gateway in another process.
    pub gateway: Option<u32>,
}

/// A reading at the start of a run.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    own: f64,
    postgres: Option<f64>,
    gateway: Option<f64>,
}

/// CPU seconds spent during a run and the peak memory of the process that runs kefu.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// This process (the bench: kefu itself in-process, or the HTTP client).
    pub cpu_s: f64,
    /// PostgreSQL.
    pub postgres_cpu_s: Option<f64>,
    /// The gateway process.
    pub gateway_cpu_s: Option<f64>,
    /// Peak RSS of the process running kefu (the gateway's when one is watched).
    pub peak_rss_mb: Option<f64>,
}

impl Watch {
    /// Reads the counters now.
    pub fn mark(&self) -> Mark {
        Mark {
            own: cpu_of(std::process::id(), true).unwrap_or(0.0),
            postgres: self.postgres.and_then(postgres_cpu),
            gateway: self.gateway.and_then(|p| cpu_of(p, true)),
        }
    }

    /// What was spent since `mark`.
    pub fn since(&self, mark: Mark) -> Usage {
        let now = self.mark();
        Usage {
            cpu_s: now.own - mark.own,
            postgres_cpu_s: now.postgres.zip(mark.postgres).map(|(a, b)| a - b),
            gateway_cpu_s: now.gateway.zip(mark.gateway).map(|(a, b)| a - b),
            peak_rss_mb: peak_rss_mb(self.gateway.unwrap_or(std::process::id())),
        }
    }
}
