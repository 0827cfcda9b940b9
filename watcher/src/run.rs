//! `watcher run` and `watcher serve`: the runner over a session.

use std::{path::Path, slice};

use watcher_core::{
    config,
    runner::{self, Engine, JobSpec},
    settings::Shared,
};

use crate::session::{self, Options};

/// `watcher run`: one job, no reload; `once`: exit after the first run.
pub async fn run(job: JobSpec, shared: Shared, once: bool, options: Options) -> anyhow::Result<()> {
    runner::check_actions(slice::from_ref(&job))?;
    let plan = runner::plan(slice::from_ref(&job), &shared);
    let session = session::start(&plan, options)?;
    let metrics = session.metrics().cloned();
    let mut engine = Engine::new(session, plan, vec![job]);
    if let Some(metrics) = &metrics {
        engine.count_into(metrics);
    }
    engine.once = once;
    engine.run(None).await
}

/// `watcher serve`: every job of a configuration; SIGHUP reloads it.
pub async fn serve(path: &Path, options: Options) -> anyhow::Result<()> {
    let config = config::load(path, &|_| false)?;
    runner::check_actions(&config.jobs)?;
    let plan = runner::plan(&config.jobs, &config.shared);
    // --metrics, else the configuration's.
    let (cli_metrics, file_metrics) = (options.metrics, config.metrics);
    let options = Options {
        metrics: options.metrics.or(config.metrics),
        ..options
    };
    let session = session::start(&plan, options)?;
    let metrics = session.metrics().cloned();
    let names: Vec<&str> = config.jobs.iter().map(|j| j.name.as_str()).collect();
    tracing::info!(
        "{} {} from {}: {}",
        names.len(),
        if names.len() == 1 { "watch" } else { "watches" },
        path.display(),
        names.join(", ")
    );
    let mut engine = Engine::new(session, plan, config.jobs);
    if let Some(metrics) = &metrics {
        engine.count_into(metrics);
    }
    let mut read = |gone: &dyn Fn(&Path) -> bool| {
        let config = config::load(path, gone)?;
        if cli_metrics.is_none() && config.metrics != file_metrics {
            tracing::warn!("a new metrics address takes effect at the next start, not at a reload");
        }
        Ok((config.jobs, config.shared))
    };
    engine.run(Some(&mut read)).await
}
