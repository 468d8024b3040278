//! `sockstat lab list | run NAME|all [--json] [--slow]`.
use std::{
    io::{self, IsTerminal, Write},
    process::ExitCode,
};

use super::{
    UsageError,
    args::{LabArgs, LabCommand},
};
use crate::{
    ebpf::privilege,
    lab::{Exercise, Lab, LabError, Outcome, course, exercises, tracer::LabTracer},
    render::lab as view,
};

pub fn run(args: &LabArgs) -> anyhow::Result<ExitCode> {
    match args.command.as_ref().unwrap_or(&LabCommand::List) {
        LabCommand::List => {
            let width = crate::render::terminal_width().unwrap_or(100);
            view::write_list(&mut io::stdout().lock(), exercises::EXERCISES, width)?;
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Coverage { json } => {
            let covered = course::coverage(exercises::EXERCISES);
            let mut out = io::stdout().lock();
            if *json {
                view::write_coverage_json(&mut out, &covered)?;
            } else {
                let color = io::stdout().is_terminal();
                let width = crate::render::terminal_width().unwrap_or(100);
                view::write_coverage(&mut out, &covered, color, width)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Run { name, json, slow } => {
            let chosen: Vec<&Exercise> = if name == "all" {
                exercises::EXERCISES.iter().collect()
            } else {
                match exercises::find(name) {
                    Some(e) => vec![e],
                    None => {
                        let names = exercises::names();
                        return Err(UsageError(format!(
                            "no exercise '{name}': 'sockstat lab list' names the {} ({} to {}), or run all",
                            names.len(),
                            names.first().unwrap_or(&""),
                            names.last().unwrap_or(&"")
                        ))
                        .into());
                    }
                }
            };
            // SAFETY: geteuid has no preconditions.
            if unsafe { libc::geteuid() } != 0 {
                return Err(UsageError(
                    "sockstat lab needs root (it creates network namespaces and loads the kernel programs): run it with sudo".to_string(),
                )
                .into());
            }
            if !privilege::can_trace() {
                return Err(UsageError("sockstat lab cannot load BPF programs here".into()).into());
            }
            run_exercises(&chosen, *json, *slow)
        }
    }
}

/// Attempts an exercise may take when the kernel dropped or skipped events during one.
const ATTEMPTS: usize = 3;

/// Runs an exercise. A failure while events were lost or the kernel skipped a run of our
/// programs (another socket's transition re-entered a hook on that CPU) is no evidence
/// against the kernel: the exercise is repeated, and the outcome says so.
fn run_vouched(lab: &mut Lab, ex: &Exercise) -> Result<Outcome, LabError> {
    let mut notes = Vec::new();
    for attempt in 1..=ATTEMPTS {
        lab.tracer.unwatch_all();
        lab.restart();
        let before = lab.tracer.gaps();
        let outcome = (ex.run)(lab);
        lab.tracer.poll();
        let gaps = lab.tracer.gaps() - before;
        let failed = outcome.as_ref().map_or(true, |o| !o.passed());
        if gaps == 0 || !failed || attempt == ATTEMPTS {
            return outcome.map(|mut o| {
                if gaps > 0 {
                    o.notes.push(format!(
                        "{gaps} event(s) were lost or skipped by the kernel during this attempt; what it shows may be incomplete"
                    ));
                }
                o.notes.splice(0..0, notes);
                o
            });
        }
        notes.push(format!(
            "attempt {attempt} was repeated: {gaps} event(s) were lost or skipped by the kernel during it"
        ));
    }
    Err(LabError::Setup("no attempt was made".into()))
}

fn run_exercises(chosen: &[&Exercise], json: bool, slow: bool) -> anyhow::Result<ExitCode> {
    let tracer = LabTracer::start()?;
    // Narration goes to stdout for people, to stderr when stdout carries JSON.
    let narration: Box<dyn Write> = if json {
        Box::new(io::stderr())
    } else {
        Box::new(io::stdout())
    };
    let mut lab = Lab::new(tracer, slow, narration);
    let color = !json && io::stdout().is_terminal();
    // Laid out for the terminal; for a pipe or a file, a common 100.
    let width = crate::render::terminal_width().unwrap_or(100);
    let mut failed = 0;
    for ex in chosen {
        let outcome = run_vouched(&mut lab, ex);
        let mut out = io::stdout().lock();
        match outcome {
            Ok(outcome) => {
                if !outcome.passed() {
                    failed += 1;
                }
                if json {
                    crate::render::json_line(&mut out, &view::json(ex, &outcome))?;
                } else {
                    view::write_text(&mut out, ex, &outcome, color, width)?;
                }
            }
            Err(e) => {
                failed += 1;
                if json {
                    view::write_failure_json(&mut out, ex.name, &e.to_string())?;
                } else {
                    view::write_failure(&mut out, ex.name, &e.to_string())?;
                }
            }
        }
        out.flush()?;
    }
    if chosen.len() > 1 && !json {
        view::write_tally(
            &mut io::stdout().lock(),
            chosen.len() - failed,
            chosen.len(),
        )?;
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
