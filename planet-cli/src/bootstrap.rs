//! The end of both programs' `main`: a runtime, the program, an exit code.

use std::{error::Error, future::Future, process::ExitCode};

use crate::errors;

/// Runs `program` on a two-worker multi-thread runtime. A failure (or a
/// runtime that cannot start) is logged with its whole chain on one line
/// and exits non-zero.
pub fn run_to_exit<E>(program: impl Future<Output = Result<(), E>>) -> ExitCode
where
    E: Into<Box<dyn Error + Send + Sync>>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            tracing::error!(error = %err, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(program) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{}", one_line(err));
            ExitCode::FAILURE
        }
    }
}

/// The error's chain on one line; for an `anyhow::Error` what `{err:#}` prints.
fn one_line(err: impl Into<Box<dyn Error + Send + Sync>>) -> String {
    errors::chain(&*err.into())
}

#[cfg(test)]
mod tests {
    use std::process::ExitCode;

    #[test]
    fn exit_code_follows_the_result() {
        let ok = super::run_to_exit(async { Ok::<(), std::io::Error>(()) });
        assert_eq!(ok, ExitCode::SUCCESS);
        let failed = super::run_to_exit(async { Err(std::io::Error::other("gone")) });
        assert_eq!(failed, ExitCode::FAILURE);
    }

    #[test]
    fn an_anyhow_chain_reads_as_with_alternate_display() {
        use anyhow::Context as _;
        let err = Err::<(), _>(std::io::Error::other("disk gone"))
            .context("cannot read the config")
            .context("cannot start")
            .unwrap_err();
        let expected = format!("{err:#}");
        assert_eq!(super::one_line(err), expected);
        assert_eq!(expected, "cannot start: cannot read the config: disk gone");
    }
}
