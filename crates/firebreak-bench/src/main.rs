//! `firebreak-bench`: Firebreak's benchmark suite (docs: shared/design/PERFORMANCE.md). A
//! bench, not a test: it runs the release binary as an operator would and prints what it
//! measured next to the ceiling it measured in the same run.
//!
//! `firebreak-bench intake`: N Suricata EVE lines with duplicates, suppression rules and
//! assets, ingested over HTTP NDJSON and with `firebreak ingest`, on SQLite and PostgreSQL;
//! events/s, peak memory, and the ratio to a bare typed `serde_json` parse of the same file.
//!
//! `firebreak-bench scale`: intake and API throughput of 1, 2 and 3 nodes on one PostgreSQL
//! against one SQLite node, side by side.

#![forbid(unsafe_code)]

/// The product's allocator (`firebreak`'s), so that what the bench times in process (FB-6, the
/// intake's parse and normalise) allocates as the product does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod ceiling;
mod datagen;
mod indicators;
mod intake;
mod overload;
mod procfs;
mod scale;
mod ui;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "firebreak-bench",
    about = "Firebreak's benchmarks (PERFORMANCE.md)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Event intake (issue 5, FB-4/FB-5): EVE lines over HTTP NDJSON and `firebreak ingest`.
    Intake(intake::IntakeArgs),
    /// Web UI page times with many tickets and events (issue 7: p95 < 50 ms at 100,000 tickets).
    Ui(ui::UiArgs),
    /// The local indicator store (issue 8: 10,000,000 indicators, < 5 µs per observable,
    /// < 1 GiB).
    Indicators(indicators::IndicatorsArgs),
    /// Ten times the sustainable intake rate on one node (issue 9, G4): responsiveness,
    /// shedding with Retry-After, bounded memory, nothing accepted lost.
    Overload(overload::OverloadArgs),
    /// Scale-out (issue 9): intake and API throughput of 1, 2 and 3 nodes on one PostgreSQL
    /// against one SQLite node, in one run.
    Scale(scale::ScaleArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Intake(args) => intake::run(&args),
        Command::Ui(args) => ui::run(&args),
        Command::Indicators(args) => indicators::run(&args),
        Command::Overload(args) => overload::run(&args),
        Command::Scale(args) => scale::run(&args),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("firebreak-bench: FAILED (see the checks above)");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("firebreak-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}
