//! The `bdaudit` command line: a thin shell over bdaudit-core that reads files, picks the
//! backend, draws progress bars and writes outputs atomically.

#[cfg(all(feature = "jemalloc", unix, not(target_env = "musl")))]
mod alloc;
mod bar;
#[cfg(feature = "openblas")]
mod blas;
mod commands;
mod files;
mod machine;
mod plot;
mod provenance;

use std::process::ExitCode;

use anyhow::Result;
use burn::tensor::backend::AutodiffBackend;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use commands::{attack, bench, demo, eval, info, predict, purify, scan, train, unlearn};

#[derive(Parser)]
#[command(name = "bdaudit", version, about = "Find and remove backdoors in BERT-family text classifiers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Compute device: cpu (ndarray, default build); flex, wgpu or cuda need those cargo features.
    #[arg(long, global = true, value_enum, default_value = "cpu")]
    device: Device,
    /// Print one JSON object on stdout instead of text.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Poison a data set (BadNets, AddSent) to build a backdoored victim for evaluation.
    Attack(attack::AttackArgs),
    /// Fine-tune a checkpoint on a data set (optionally defended by BTU, or planting an EP backdoor with --ep-trigger) and write a Hugging Face classifier.
    Train(train::TrainArgs),
    /// Remove a backdoor from a downloaded checkpoint with clean data only (PURE, MBTSAD).
    #[command(subcommand)]
    Purify(purify::Method),
    /// Unlearn identified poisoned training rows (RGA; GA and NPO baselines).
    Unlearn(unlearn::UnlearnArgs),
    /// Draw the forget-loss curves of `bdaudit unlearn` reports into one SVG.
    Plot(unlearn::PlotArgs),
    /// Look for signs of a backdoor in a checkpoint (verdict; exit 2 when suspicious) or rank drifted tokens.
    Scan(scan::ScanArgs),
    /// CACC, ASR and PACC of a checkpoint.
    Eval(eval::EvalArgs),
    /// Labels and logits of a checkpoint for each row of a file.
    Predict(predict::PredictArgs),
    /// Poison a built-in data set, train MiniLM on it and show the backdoor.
    Demo(demo::DemoArgs),
    /// Time a forward pass and a training step (compare with scripts/bench).
    Bench(bench::BenchArgs),
    /// The devices this build runs on and the BLAS kernels its CPU backend uses.
    Info,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum Device {
    Cpu,
    Flex,
    Wgpu,
    Cuda,
}

impl Device {
    fn name(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Flex => "flex",
            Device::Wgpu => "wgpu",
            Device::Cuda => "cuda",
        }
    }
}

fn dispatch<B: AutodiffBackend>(command: Command, device: B::Device, json: bool) -> Result<ExitCode> {
    let done = match command {
        // The only command whose exit code carries a result: 2 when the scan is suspicious.
        Command::Scan(args) => return scan::run::<B>(args, device, json),
        Command::Train(args) => train::run::<B>(args, device, json).map(|_| ()),
        Command::Purify(method) => purify::run::<B>(method, device, json),
        Command::Unlearn(args) => unlearn::run::<B>(args, device, json),
        Command::Eval(args) => eval::run::<B::InnerBackend>(args, device, json),
        Command::Predict(args) => predict::run::<B::InnerBackend>(args, device, json),
        Command::Demo(args) => demo::run::<B>(args, device, json),
        Command::Bench(args) => bench::run::<B>(args, device, json),
        Command::Attack(_) | Command::Plot(_) | Command::Info => unreachable!("run by `without_backend`"),
    };
    done.map(|()| ExitCode::SUCCESS)
}

/// Runs the commands that compute nothing on a device, so that any build runs them whatever
/// `--device` names (a CPU build answers `info --device cuda`); hands the others back.
fn without_backend(command: Command, json: bool) -> std::result::Result<Result<()>, Box<Command>> {
    match command {
        Command::Attack(args) => Ok(attack::run(args).map(|written| written.print(json))),
        Command::Plot(args) => Ok(unlearn::plot(args, json)),
        Command::Info => Ok(info::run(json)),
        other => Err(Box::new(other)),
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let command = match without_backend(cli.command, cli.json) {
        Ok(done) => return done.map(|()| ExitCode::SUCCESS),
        Err(command) => *command,
    };
    machine::set_device(cli.device.name());
    match cli.device {
        #[cfg(feature = "cpu")]
        Device::Cpu => dispatch::<burn::backend::Autodiff<burn::backend::NdArray<f32>>>(command, Default::default(), cli.json),
        #[cfg(feature = "flex")]
        Device::Flex => dispatch::<burn::backend::Autodiff<burn::backend::Flex>>(command, Default::default(), cli.json),
        #[cfg(feature = "wgpu")]
        Device::Wgpu => dispatch::<burn::backend::Autodiff<burn::backend::Wgpu>>(command, Default::default(), cli.json),
        #[cfg(feature = "cuda")]
        Device::Cuda => {
            cuda_available()?;
            dispatch::<burn::backend::Autodiff<burn::backend::Cuda>>(command, Default::default(), cli.json)
        }
        #[allow(unreachable_patterns)]
        other => anyhow::bail!("this bdaudit was built without the {other:?} backend: rebuild with `--features {}`", other.name()),
    }
}

/// burn-cuda loads the driver lazily and panics in a worker thread when it is missing: check
/// first so the user gets an error, not a crash.
#[cfg(feature = "cuda")]
fn cuda_available() -> Result<()> {
    // Drivers ship `libcuda.so.1`; the unversioned name exists only with development files.
    let names = ["libcuda.so.1".into(), libloading::library_filename("cuda")];
    let mut last_error = None;
    for name in names {
        // SAFETY: loading the CUDA driver library runs its initialisers, which are sound to run.
        match unsafe { libloading::Library::new(&name) } {
            Ok(_) => return Ok(()),
            Err(e) => last_error = Some(e),
        }
    }
    anyhow::bail!(
        "--device cuda: the NVIDIA driver library (libcuda) cannot be loaded ({}); is a driver installed?",
        last_error.map(|e| e.to_string()).unwrap_or_default()
    )
}

/// The command line, every option taking a negative number as its value (`--lr -1`) so that
/// it reaches the setting's own check, which names the setting and its range: clap would read
/// `-1` as a flag and suggest `-- -1`, which options cannot use.
fn command() -> clap::Command {
    fn negatives(command: clap::Command) -> clap::Command {
        command.mut_args(|arg| arg.allow_negative_numbers(true)).mut_subcommands(negatives)
    }
    negatives(Cli::command())
}

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so `bdaudit scan | head` would panic on its next print once the
    // reader has gone. Like other Unix tools, end quietly instead. Outputs are complete by
    // then: files are written (atomically) before results are printed, and progress goes to
    // stderr.
    #[cfg(unix)]
    // SAFETY: sets the process's disposition for SIGPIPE to the default; no handler of ours runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    #[cfg(feature = "openblas")]
    blas::restart_with_better_kernels();
    // The core turns a panic inside `tokenizers` (a pathological regex in a tokenizer.json)
    // into an error; the default hook would still print it as a crash first.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !bdaudit_core::checkpoint::catching_panic() {
            default_hook(info)
        }
    }));
    // A usage error exits 1 like every other failure, not clap's 2: 2 is scan's "suspicious",
    // and a mistyped option must not read as a verdict in a script that gates on it.
    let cli = match command().try_get_matches().and_then(|m| Cli::from_arg_matches(&m)) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::FAILURE } else { ExitCode::SUCCESS };
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
