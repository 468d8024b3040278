//! Man pages (one per command) and shell completions, from the same clap definitions the
//! binary parses with, so they never drift from it. They are written by a binary of their
//! own, `sockstat-generate` (run by `cargo xtask dist`), so `sockstat` itself carries none of
//! this code: the listing's RSS is mostly the binary's own touched pages.
use std::path::Path;

use anyhow::Context as _;
use clap::CommandFactory as _;
use clap_mangen::{
    Man,
    roff::{Roff, bold, roman},
};

use super::{args::Cli, help};

/// One page per command (sockstat.1, sockstat-trace.1, ...) into `dir`.
pub fn man_pages(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = Cli::command().disable_help_subcommand(true);
    // Gives subcommands their display names (sockstat-trace).
    cmd.build();
    write_pages(&cmd, dir).with_context(|| format!("writing man pages into {}", dir.display()))
}

/// The completion script for `shell`.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    clap_complete::generate(shell, &mut Cli::command(), "sockstat", out);
}

/// The teaching sections of a command's page (the same as its `--help` shows).
fn sections(cmd: &clap::Command) -> &'static [help::Section] {
    match cmd.get_name() {
        "sockstat" => help::LIST,
        "trace" => help::TRACE,
        "top" | "serve" => help::AGENT,
        _ => &[],
    }
}

/// `cmd`'s page and, recursively, its visible subcommands' pages.
fn write_pages(cmd: &clap::Command, dir: &Path) -> std::io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir)?;
    }
    let man = Man::new(cmd.clone())
        .source(format!("sockstat {}", env!("CARGO_PKG_VERSION")))
        .manual("sockstat manual");
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut page)?;
    }
    if cmd.has_subcommands() {
        man.render_subcommands_section(&mut page)?;
    }
    let mut extra = Roff::new();
    help::roff(sections(cmd), &mut extra);
    see_also(cmd, &mut extra);
    extra.to_writer(&mut page)?;
    std::fs::write(dir.join(man.get_filename()), page)
}

/// SEE ALSO: the other pages, and the tools sockstat succeeds.
fn see_also(cmd: &clap::Command, page: &mut Roff) {
    let name = cmd.get_display_name().unwrap_or(cmd.get_name());
    let mut refs: Vec<String> = Vec::new();
    if name != "sockstat" {
        refs.push("sockstat(1)".into());
    }
    refs.extend(
        cmd.get_subcommands()
            .filter(|s| !s.is_hide_set())
            .filter_map(|s| s.get_display_name().map(|n| format!("{n}(1)"))),
    );
    refs.extend(["ss(8)".to_string(), "netstat(8)".to_string()]);
    page.control("SH", ["SEE ALSO"]);
    let mut inlines = Vec::new();
    for (i, r) in refs.iter().enumerate() {
        if i > 0 {
            inlines.push(roman(", "));
        }
        inlines.push(bold(r.as_str()));
    }
    page.text(inlines);
}
