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
    lab::{Exercise, Lab, exercises, tracer::LabTracer},
    render::lab as view,
};

pub fn run(args: &LabArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        LabCommand::List => {
            let mut out = io::stdout().lock();
            for e in exercises::EXERCISES {
                writeln!(out, "{:<20} {}", e.name, e.teaches)?;
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
                        return Err(UsageError(format!(
                            "no exercise '{name}'; one of: {}, or all (see 'sockstat lab list')",
                            exercises::names().join(", ")
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
    let mut failed = 0;
    for ex in chosen {
        lab.restart();
        let outcome = (ex.run)(&mut lab);
        let mut out = io::stdout().lock();
        match outcome {
            Ok(outcome) => {
                if !outcome.passed() {
                    failed += 1;
                }
                if json {
                    serde_json::to_writer(&mut out, &view::json(ex, &outcome))?;
                    writeln!(out)?;
                } else {
                    view::write_text(&mut out, ex, &outcome, color)?;
                }
            }
            Err(e) => {
                failed += 1;
                if json {
                    serde_json::to_writer(
                        &mut out,
                        &serde_json::json!({"name": ex.name, "passed": false, "failure": e.to_string()}),
                    )?;
                    writeln!(out)?;
                } else {
                    writeln!(out, "FAIL {}: {e}\n", ex.name)?;
                }
            }
        }
        out.flush()?;
    }
    if chosen.len() > 1 && !json {
        println!(
            "{} of {} exercises passed",
            chosen.len() - failed,
            chosen.len()
        );
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
