use clap::{CommandFactory, FromArgMatches};
use netta::app;
use netta::settings::cli::{Cli, Command};

fn main() {
    // One malloc arena per thread would keep freed /proc snapshots as resident
    // memory in each of them; two arenas keep the agent's RSS close to its live data.
    // SAFETY: called before any other thread exists.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
    let matches = Cli::command().get_matches();
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    match &cli.command {
        Some(Command::Completions { shell }) => {
            clap_complete::generate(*shell, &mut Cli::command(), "netta", &mut std::io::stdout());
            return;
        }
        Some(Command::Manpage) => {
            if let Err(e) = clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
                eprintln!("netta: {e}");
                std::process::exit(1);
            }
            return;
        }
        _ => {}
    }
    let explicit = cli.global.config.is_some();
    let path = cli
        .global
        .config
        .clone()
        .unwrap_or_else(|| netta::settings::file::DEFAULT_PATH.into());
    let file_config = match netta::settings::file::Config::load(&path, explicit) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("netta: {e}");
            std::process::exit(2);
        }
    };
    if let Some(c) = &file_config {
        cli.global.apply_config(c, &matches);
    }
    if let Some(path) = &cli.global.rules {
        // Checked before anything starts, so a bad file is a usage error.
        if let Err(e) = netta::detect::Rules::load(path) {
            eprintln!("netta: {e}");
            std::process::exit(2);
        }
    }
    let level = match cli.global.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .target(env_logger::Target::Stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("netta: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = rt.block_on(async {
        match &cli.command {
            Some(Command::Events(a)) => app::events(&cli.global, a).await,
            Some(Command::List(a)) => app::list(&cli.global, a).await,
            Some(Command::Stats(a)) => app::stats(&cli.global, a).await,
            Some(Command::Monitor(a)) => app::monitor(&cli.global, a).await,
            Some(Command::Detect(a)) => app::detect(&cli.global, a).await,
            Some(Command::Export(a)) => app::export(&cli.global, a).await,
            Some(Command::History(a)) => app::history(&cli.global, a).await,
            Some(Command::StoreBench { rows, dir }) => app::store_bench(*rows, dir),
            Some(Command::SeedBench) => app::seed_bench(&cli.global),
            Some(Command::Agent(a)) => app::agent(&cli.global, a, file_config.as_ref()).await,
            Some(Command::Completions { .. } | Command::Manpage) => Ok(()),
            None => app::menu(&cli.global).await,
        }
    });
    // Reader tasks may still be parked on a blocking read of stdin; do not wait.
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    if let Err(e) = result {
        eprintln!("netta: {e:#}");
        std::process::exit(1);
    }
}
