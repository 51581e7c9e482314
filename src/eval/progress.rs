//! A one-line progress bar on stderr (redrawn at most every 200 ms).

use std::io::Write;
use std::time::{Duration, Instant};

pub struct Progress {
    enabled: bool,
    /// Not a terminal (a log, CI): a plain line per tenth, no redraws.
    plain: bool,
    last_tenth: usize,
    total: usize,
    done: usize,
    started: Instant,
    drawn: Option<Instant>,
}

impl Progress {
    pub fn new(enabled: bool) -> Progress {
        Progress {
            enabled,
            plain: !std::io::IsTerminal::is_terminal(&std::io::stderr()),
            last_tenth: usize::MAX,
            total: 0,
            done: 0,
            started: Instant::now(),
            drawn: None,
        }
    }

    pub fn start(&mut self, total: usize) {
        self.total = total;
        self.done = 0;
        self.started = Instant::now();
        self.draw(true);
    }

    pub fn step(&mut self) {
        self.done += 1;
        self.draw(self.done == self.total);
    }

    pub fn finish(&mut self) {
        if self.enabled && !self.plain {
            eprintln!();
        }
    }

    fn draw(&mut self, force: bool) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if self.plain {
            let tenth = (self.done * 10).checked_div(self.total).unwrap_or(10);
            if tenth != self.last_tenth {
                self.last_tenth = tenth;
                eprintln!("{}", line(self.done, self.total, now - self.started));
            }
            return;
        }
        if !force
            && self
                .drawn
                .is_some_and(|t| now - t < Duration::from_millis(200))
        {
            return;
        }
        self.drawn = Some(now);
        let _ = write!(
            std::io::stderr(),
            "\r{}",
            line(self.done, self.total, now - self.started)
        );
        let _ = std::io::stderr().flush();
    }
}

/// `eval [#######-------------]  7/20 queries  3.2 s  eta 4.6 s`
pub fn line(done: usize, total: usize, elapsed: Duration) -> String {
    const WIDTH: usize = 24;
    let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH);
    let secs = elapsed.as_secs_f64();
    let eta = if done > 0 && done < total {
        format!("  eta {:.1} s", secs / done as f64 * (total - done) as f64)
    } else {
        String::new()
    };
    format!(
        "eval [{}{}] {done:>w$}/{total} queries  {secs:.1} s{eta}",
        "#".repeat(filled),
        "-".repeat(WIDTH - filled),
        w = total.to_string().len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_fills_in_proportion() {
        let l = line(6, 24, Duration::from_secs(3));
        assert!(
            l.starts_with("eval [######------------------]  6/24 queries  3.0 s  eta 9.0 s"),
            "{l}"
        );
        assert!(line(0, 0, Duration::ZERO).contains(&"#".repeat(24)));
    }
}
