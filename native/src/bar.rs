//! Progress bars on stderr (hidden when stderr is not a terminal, e.g. in CI logs).

use bdaudit_core::progress::Progress;
use indicatif::{ProgressBar, ProgressStyle};

pub struct Bars {
    bar: Option<ProgressBar>,
    quiet: bool,
}

impl Bars {
    pub fn new(quiet: bool) -> Self {
        Bars { bar: None, quiet }
    }
}

impl Progress for Bars {
    fn start(&mut self, stage: &str, total: usize) {
        if self.quiet {
            return;
        }
        let bar = ProgressBar::new(total as u64);
        bar.set_style(
            ProgressStyle::with_template("{prefix:>14} [{bar:30}] {pos}/{len} {msg} ({elapsed}, eta {eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(stage.to_string());
        self.bar = Some(bar);
    }

    fn step(&mut self, loss: Option<f64>) {
        if let Some(bar) = &self.bar {
            if let Some(loss) = loss {
                bar.set_message(format!("loss {loss:.4}"));
            }
            bar.inc(1);
        }
    }

    fn finish(&mut self, summary: &str) {
        if let Some(bar) = self.bar.take() {
            bar.finish_with_message(summary.to_string());
        }
    }
}
