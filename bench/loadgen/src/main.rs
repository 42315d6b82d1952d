//! `sio-cluster-loadgen`: a load generator for Socket.IO clusters that
//! implement `shared/demo-contract.md` (ours: `sio-cluster-host demo`, or the
//! Node reference in bench/node-ref), cheap enough per delivery that the
//! harness is not the bottleneck on a small machine, and the plot of
//! bench/compare.mjs results.
//!
//! * `run`: the workload, flags and JSON report of bench/load.mjs.
//! * `plot`: deliveries/s and p99 latency against clients, one line per cluster.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod plot;
mod proto;
mod run;
mod sys;

/// Load generator for sio-cluster (Engine.IO v4 / Socket.IO v5 over WebSocket).
#[derive(Debug, Parser)]
#[command(name = "sio-cluster-loadgen", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Drive a cluster: C clients in R rooms, S senders emit `to`, receivers
    /// measure deliveries and latency (bench/load.mjs's workload and JSON report).
    ///
    /// Output: the JSON report on stdout (unless --quiet), then one human line.
    /// Exit status: 0 on success, 1 when the run failed, 2 on bad arguments.
    Run(run::RunArgs),
    /// Plot bench/compare.mjs results: deliveries/s and p99 latency against clients.
    Plot(plot::PlotArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Run(args) => {
            if let Err(msg) = args.validate() {
                eprintln!("loadgen: {msg}");
                return ExitCode::from(2);
            }
            if let Some(limit) = sys::raise_fd_limit()
                && limit < u64::from(args.clients) + 64
            {
                eprintln!(
                    "loadgen: warning: the open-file limit ({limit}) is below --clients {}; raise it (ulimit -n)",
                    args.clients
                );
            }
            let mut builder = if args.threads == 0 {
                tokio::runtime::Builder::new_current_thread()
            } else {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                b.worker_threads(usize::from(args.threads));
                b
            };
            let rt = match builder.enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("loadgen: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(run::run(args)) {
                Ok(()) => {
                    // Client tasks are done; do not wait for lingering sockets.
                    rt.shutdown_background();
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("loadgen: {e:#}");
                    rt.shutdown_background();
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Plot(args) => match plot::plot(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("loadgen plot: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}
