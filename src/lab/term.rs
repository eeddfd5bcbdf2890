//! Terminal output for the lab: colour only on a TTY and without NO_COLOR, and a
//! progress bar for the requests (plain lines when not a TTY).

use std::io::{IsTerminal, Write};

#[derive(Debug, Clone, Copy)]
pub struct Term {
    pub color: bool,
    pub tty: bool,
}

impl Term {
    pub fn detect() -> Term {
        let tty = std::io::stdout().is_terminal();
        Term {
            color: tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
            tty,
        }
    }
    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    pub fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
    pub fn green(&self, s: &str) -> String {
        self.paint("32", s)
    }
    pub fn red(&self, s: &str) -> String {
        self.paint("31", s)
    }
    pub fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
    /// A section heading.
    pub fn section(&self, s: &str) {
        println!("\n{}", self.bold(&format!("== {s}")));
    }
    /// A step heading.
    pub fn step(&self, s: &str) {
        println!("{}", self.bold(&format!("-- {s}")));
    }
    /// Redraw the progress bar (TTY only).
    pub fn progress(&self, done: usize, total: usize) {
        if !self.tty || total == 0 {
            return;
        }
        let width = 30;
        let filled = done * width / total;
        print!(
            "\r  [{}{}] {done}/{total}",
            "#".repeat(filled),
            ".".repeat(width - filled)
        );
        let _ = std::io::stdout().flush();
        if done == total {
            print!("\r{}\r", " ".repeat(width + 16));
        }
    }
}
