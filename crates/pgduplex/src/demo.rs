//! `pgduplex demo`.
use std::process::ExitCode;
pub fn run(_args: &crate::cli::DemoArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("demo: not built yet")
}
