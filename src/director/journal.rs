//! Log output: tracing to stderr, with sd-daemon priority prefixes (`<3>` error, `<4>`
//! warning, `<6>` info, `<7>` debug; sd-daemon(3)) and no timestamps when stderr is
//! the systemd journal (`$JOURNAL_STREAM` names stderr's device and inode, see
//! systemd.exec(5)), so `journalctl -p warning -u uvs` filters by level. Elsewhere:
//! tracing-subscriber's usual lines.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{FmtContext, format};
use tracing_subscriber::registry::LookupSpan;

/// sd-daemon(3)'s priority of a tracing level (syslog's numbers).
pub fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// Whether stderr is the journal: `$JOURNAL_STREAM` is `DEV:INODE` of stderr.
pub fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    match std::fs::metadata("/proc/self/fd/2") {
        Ok(m) => dev.parse() == Ok(m.dev()) && ino.parse() == Ok(m.ino()),
        Err(_) => false,
    }
}

/// A formatter that prefixes each line with its sd-daemon priority.
pub struct Prioritised<F>(pub F);

impl<S, N, F> FormatEvent<S, N> for Prioritised<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut w: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        write!(w, "<{}>", priority(event.metadata().level()))?;
        self.0.format_event(ctx, w, event)
    }
}

/// Install the global subscriber: level from `$UVS_LOG` (default `warn`, and `info` for
/// keepalived's transitions), on stderr.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("UVS_LOG")
        .unwrap_or_else(|_| "warn,uvs::keepalived=info,uvs::director::vipwatch=info".into());
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if stderr_is_journal() {
        // The journal stamps each line itself.
        let f = format().without_time().with_ansi(false).with_target(false);
        b.with_ansi(false).event_format(Prioritised(f)).init();
    } else {
        b.init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_their_priority() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let w = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_writer(move || w.clone())
            .with_ansi(false)
            .with_max_level(Level::DEBUG)
            .event_format(Prioritised(format().without_time().with_ansi(false).with_target(false)))
            .finish();
        tracing::subscriber::with_default(sub, || {
            tracing::error!("e");
            tracing::warn!("w");
            tracing::info!("i");
            tracing::debug!("d");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text, "<3>ERROR e\n<4> WARN w\n<6> INFO i\n<7>DEBUG d\n");
        // Not the journal without $JOURNAL_STREAM naming stderr.
        assert!(!stderr_is_journal() || std::env::var_os("JOURNAL_STREAM").is_some());
    }
}
