//! Progress of long client runs (`produce` from standard input, `consume` into a file): a spinner
//! line on stderr with the count and rate, drawn only when stderr is a terminal, so a pipe or a log
//! file gets nothing extra. Cleared when the run ends.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

/// A progress line, or nothing when stderr is not a terminal or `wanted` is false.
pub struct Progress(Option<ProgressBar>);

impl Progress {
    /// A counter of `what` (e.g. "events produced").
    pub fn new(what: &'static str, wanted: bool) -> Progress {
        if !wanted || !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let style =
            ProgressStyle::with_template("{spinner} {human_pos} {msg} ({per_sec}, {elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
            .with_style(style)
            .with_message(what);
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress(Some(bar))
    }

    pub fn add(&self, n: u64) {
        if let Some(bar) = &self.0 {
            bar.inc(n);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}
