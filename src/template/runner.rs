//! The render loop, as consul-template's runner runs it
//! (`manager/runner.go`). Every pass executes each template against the
//! data watched so far; the dependencies a template used are watched
//! (one watch per distinct query across all templates), and a template
//! whose data is not all there yet is skipped. A template that renders
//! writes its destination only when the content changed, and then its
//! command runs, after the pass, in template order, each distinct command
//! once. Once every template has rendered, `wait` quiescence applies: a
//! change starts a `min` timer that later changes push back, never past
//! `max` after the first. `-once` renders everything once and exits.
//!
//! Failures end the process with consul-template's exit codes: a command
//! that exits non-zero or outlives its timeout, a watch that exhausted its
//! retries, or a template error (unless `error_fatal = false`, which logs
//! it and keeps the old output) is a runner error (14); an interrupt is
//! 12; in exec mode the child's exit code is the process's. The reload
//! signal re-reads the configuration and templates, keeping the running
//! ones when the new ones do not parse.

use super::config::{Config, ExecConfig, TemplateConfig, Wait};
use super::deps::Dependency;
use super::engine::{Delims, Options, Template, Value};
use super::funcs::{is_function, Brain, Render};
use super::render::{render, Outcome, Target};
use super::watch::{Update, Watcher};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub const EXIT_OK: i32 = 0;
pub const EXIT_INTERRUPT: i32 = 12;
pub const EXIT_RUNNER: i32 = 14;
pub const EXIT_CONFIG: i32 = 15;

/// Why the runner stopped, with the process exit code.
#[derive(Debug)]
pub struct Stop {
    pub code: i32,
    pub error: Option<String>,
}

impl Stop {
    fn ok() -> Stop {
        Stop {
            code: EXIT_OK,
            error: None,
        }
    }

    fn runner(error: String) -> Stop {
        Stop {
            code: EXIT_RUNNER,
            error: Some(error),
        }
    }
}

/// Events from outside the data: signals and the supervised child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// SIGINT or SIGTERM: stop now.
    Interrupt,
    /// The reload signal: re-read the configuration and templates.
    Reload,
    /// Any other signal, passed on to the exec child.
    Forward(i32),
}

/// A template with its parsed source.
struct Loaded {
    config: TemplateConfig,
    template: Template,
    /// Whether it has rendered at least once (its content was current).
    rendered: bool,
    /// The dependencies its last successful execution used.
    used: BTreeSet<Dependency>,
}

/// A pending quiescence: render when `at` passes.
struct Quiet {
    at: Instant,
    deadline: Instant,
    min: Duration,
}

impl Quiet {
    fn new(w: Wait) -> Quiet {
        let now = Instant::now();
        Quiet {
            at: now + w.min,
            deadline: now + w.max,
            min: w.min,
        }
    }

    /// A later change pushes the timer back, never past the deadline.
    fn tick(&mut self) {
        self.at = (Instant::now() + self.min).min(self.deadline);
    }
}

/// How errors name a template: its source file, or `(dynamic)`.
fn source_name(t: &TemplateConfig) -> String {
    t.source
        .as_ref()
        .map(|s| s.display().to_string())
        .unwrap_or_else(|| "(dynamic)".into())
}

/// Reads and parses a template's source with the template's delimiters.
pub fn load(config: &TemplateConfig) -> Result<Template, String> {
    let (name, text) = match (&config.source, &config.contents) {
        (Some(path), _) => {
            let text = std::fs::read(path)
                .map_err(|e| format!("failed to read template {}: {e}", path.display()))?;
            (path.display().to_string(), text)
        }
        (None, Some(contents)) => ("(dynamic)".to_string(), contents.clone().into_bytes()),
        (None, None) => return Err("template: missing 'source' or 'contents'".into()),
    };
    let defaults = Delims::default();
    let delims = Delims {
        left: config.left_delimiter.clone().unwrap_or(defaults.left),
        right: config.right_delimiter.clone().unwrap_or(defaults.right),
    };
    Template::parse(&name, &text, &delims, &is_function).map_err(|e| e.to_string())
}

pub struct Runner {
    config: Config,
    templates: Vec<Option<Loaded>>,
    brain: Brain,
    watcher: Watcher,
    updates: mpsc::UnboundedReceiver<Update>,
    quiet: Vec<Option<Quiet>>,
    child: Option<tokio::process::Child>,
    dry: Box<dyn std::io::Write + Send>,
}

impl Runner {
    pub fn new(
        config: Config,
        watcher: Watcher,
        updates: mpsc::UnboundedReceiver<Update>,
        dry: Box<dyn std::io::Write + Send>,
    ) -> Runner {
        let n = config.templates.len();
        Runner {
            templates: (0..n).map(|_| None).collect(),
            quiet: (0..n).map(|_| None).collect(),
            config,
            brain: Brain::default(),
            watcher,
            updates,
            child: None,
            dry,
        }
    }

    /// Parses every template (a failure is fatal, as consul-template's
    /// first render of an unparsable template is).
    fn load_all(&mut self) -> Result<(), Stop> {
        for (i, t) in self.config.templates.iter().enumerate() {
            let template = load(t).map_err(Stop::runner)?;
            self.templates[i] = Some(Loaded {
                config: t.clone(),
                template,
                rendered: false,
                used: BTreeSet::new(),
            });
        }
        Ok(())
    }

    /// Runs until done (`-once`), a failure, or an interrupt.
    pub async fn run(
        mut self,
        mut events: mpsc::UnboundedReceiver<Event>,
        reload: impl Fn() -> Result<Config, String>,
    ) -> Stop {
        if let Err(stop) = self.load_all() {
            return stop;
        }
        let stop = self.main_loop(&mut events, &reload).await;
        self.watcher.stop();
        stop
    }

    async fn main_loop(
        &mut self,
        events: &mut mpsc::UnboundedReceiver<Event>,
        reload: &impl Fn() -> Result<Config, String>,
    ) -> Stop {
        let mut quiescence_run: Option<usize> = None;
        loop {
            if let Err(stop) = self.pass(quiescence_run.take()).await {
                return stop;
            }
            if self.all_rendered() {
                if let Some(stop) = self.after_all_rendered().await {
                    return stop;
                }
            }
            let next_quiet = self
                .quiet
                .iter()
                .enumerate()
                .filter_map(|(i, q)| q.as_ref().map(|q| (i, q.at)))
                .min_by_key(|(_, at)| *at);
            let sleep_until = next_quiet.map(|(_, at)| tokio::time::Instant::from_std(at));
            tokio::select! {
                update = self.updates.recv() => {
                    let Some(update) = update else {
                        return Stop::runner("the watcher stopped".into());
                    };
                    if let Err(stop) = self.receive(update) {
                        return stop;
                    }
                    // Take everything that has arrived before rendering again.
                    while let Ok(update) = self.updates.try_recv() {
                        if let Err(stop) = self.receive(update) {
                            return stop;
                        }
                    }
                }
                _ = sleep_or_forever(sleep_until) => {
                    if let Some((i, _)) = next_quiet {
                        tracing::debug!("(runner) received template {} from quiescence", self.display(i));
                        self.quiet[i] = None;
                        quiescence_run = Some(i);
                    }
                }
                event = events.recv() => match event {
                    Some(Event::Interrupt) | None => {
                        eprintln!("Cleaning up...");
                        self.stop_child().await;
                        return Stop { code: EXIT_INTERRUPT, error: None };
                    }
                    Some(Event::Reload) => {
                        eprintln!("Reloading configuration...");
                        self.reload(reload);
                    }
                    Some(Event::Forward(sig)) => self.signal_child(sig),
                },
                code = wait_child(&mut self.child) => {
                    tracing::info!("(runner) child process exited");
                    self.child = None;
                    return Stop {
                        code,
                        error: (code != 0).then(|| format!("child process exited with code {code}")),
                    };
                }
            }
        }
    }

    fn display(&self, i: usize) -> String {
        self.config.templates[i].display()
    }

    fn receive(&mut self, update: Update) -> Result<(), Stop> {
        match update.data {
            Ok(v) => {
                tracing::debug!("(runner) receiving dependency {}", update.dep);
                self.brain.remember(update.dep, v);
                Ok(())
            }
            Err(e) => {
                tracing::error!("(runner) watcher reported error: {e}");
                Err(Stop::runner(e))
            }
        }
    }

    fn all_rendered(&self) -> bool {
        self.templates
            .iter()
            .all(|t| t.as_ref().is_some_and(|t| t.rendered))
    }

    /// The wait of template `i` (its own, else the global one). Once a
    /// template has rendered, a change to it renders only through its
    /// quiescence timer.
    fn wait_for(&self, i: usize) -> Option<Wait> {
        if self.config.once {
            return None;
        }
        self.config.templates[i]
            .wait
            .or(self.config.wait)
            .filter(|w| !w.is_zero())
    }

    /// Starts the exec child, or in `-once` mode finishes.
    async fn after_all_rendered(&mut self) -> Option<Stop> {
        if let Some(exec) = self.config.exec.clone() {
            if self.child.is_none() {
                match spawn(&exec.command, true) {
                    Ok(child) => {
                        tracing::info!("(runner) supervising child {:?}", exec.command);
                        self.child = Some(child);
                    }
                    Err(e) => {
                        return Some(Stop::runner(format!(
                            "failed to execute command {:?}: {e}",
                            exec.command
                        )))
                    }
                }
                if self.config.once {
                    let code = wait_child(&mut self.child).await;
                    return Some(Stop {
                        code,
                        error: (code != 0)
                            .then(|| format!("child process exited with code {code}")),
                    });
                }
            }
            return None;
        }
        if self.config.once {
            tracing::info!("(runner) once mode and all templates rendered");
            return Some(Stop::ok());
        }
        None
    }

    /// One pass over every template, then the commands of those written.
    async fn pass(&mut self, quiescence_run: Option<usize>) -> Result<(), Stop> {
        let mut commands: Vec<(Vec<String>, Duration, String)> = Vec::new();
        let mut needed: BTreeSet<Dependency> = BTreeSet::new();
        let mut any_written = false;
        for i in 0..self.templates.len() {
            let written = self.run_template(i, quiescence_run, &mut needed)?;
            if written {
                any_written = true;
                let t = &self.config.templates[i];
                if !self.config.dry
                    && !t.command.is_empty()
                    && !commands.iter().any(|c| c.0 == t.command)
                {
                    commands.push((t.command.clone(), t.command_timeout, t.display()));
                }
            }
        }
        for d in self.watcher.retain(&needed) {
            self.brain.forget(&d);
        }
        let mut errors = Vec::new();
        for (command, timeout, from) in commands {
            tracing::info!("(runner) executing command {command:?} from {from}");
            if let Err(e) = run_command(&command, timeout).await {
                errors.push(format!(
                    "failed to execute command {command:?} from {from}: {e}"
                ));
            }
        }
        if any_written {
            if let Some(sig) = self.config.exec.as_ref().and_then(|e| e.reload_signal) {
                self.signal_child(sig);
            }
        }
        if !errors.is_empty() {
            return Err(Stop::runner(errors.join("\n")));
        }
        Ok(())
    }

    /// Executes template `i` and writes it if it is ready; `true` when the
    /// destination was written.
    fn run_template(
        &mut self,
        i: usize,
        quiescence_run: Option<usize>,
        needed: &mut BTreeSet<Dependency>,
    ) -> Result<bool, Stop> {
        if self.templates[i]
            .as_ref()
            .is_none_or(|t| self.config.once && t.rendered)
        {
            return Ok(false);
        }
        let (result, used, missing) = self.execute(i);
        needed.extend(used.iter().cloned());
        let Some(t) = self.templates[i].as_mut() else {
            return Ok(false);
        };
        let output = match result {
            Ok(output) => output,
            // Keep watching what it used before, so that a change in the
            // data renders it again.
            Err(e) => {
                needed.extend(t.used.iter().cloned());
                // An error while data is still missing may come from the
                // zero values standing in for it (`index (service "x") 0`):
                // wait for the data before calling it an error.
                if !missing.is_empty() {
                    tracing::debug!("(runner) {} not ready: {e}", t.config.display());
                    return Ok(false);
                }
                let msg = format!("{}: execute: {e}", source_name(&t.config));
                return self.failed(i, msg);
            }
        };
        t.used = used;
        if !missing.is_empty() {
            tracing::debug!("(runner) missing data for {} dependencies", missing.len());
            for d in &missing {
                tracing::trace!("(runner) missing dependency: {d}");
            }
            return Ok(false);
        }
        if quiescence_run.is_some_and(|q| q != i) || self.defer(i, quiescence_run, &output) {
            return Ok(false);
        }
        self.write(i, &output)
    }

    /// Runs template `i` against the data so far, watching every
    /// dependency it used; a dependency not watched yet counts as missing.
    #[allow(clippy::type_complexity)]
    fn execute(
        &mut self,
        i: usize,
    ) -> (
        Result<Vec<u8>, super::engine::Error>,
        BTreeSet<Dependency>,
        BTreeSet<Dependency>,
    ) {
        let Some(t) = self.templates[i].as_ref() else {
            return (Ok(Vec::new()), BTreeSet::new(), BTreeSet::new());
        };
        let opts = Options {
            missing_key_error: t.config.error_on_missing_key,
        };
        let mut r = Render::new(&self.brain);
        let result = t.template.execute(Value::Nil, &mut r, opts);
        let (used, mut missing) = (r.used, r.missing);
        for d in &used {
            if !self.watcher.watching(d) {
                self.watcher.watch(d.clone());
                missing.insert(d.clone());
            }
        }
        (result, used, missing)
    }

    /// A template that failed: fatal unless `error_fatal = false`, when the
    /// error is logged and the old output kept.
    fn failed(&self, i: usize, msg: String) -> Result<bool, Stop> {
        let fatal = self.config.templates[i]
            .error_fatal
            .unwrap_or(self.config.template_error_fatal);
        if fatal {
            return Err(Stop::runner(msg));
        }
        tracing::error!("(runner) {msg}");
        Ok(false)
    }

    /// Whether a rendered template with a wait holds its new content back
    /// for quiescence (starting or pushing back its timer when the content
    /// changed).
    fn defer(&mut self, i: usize, quiescence_run: Option<usize>, output: &[u8]) -> bool {
        let Some(wait) = self.wait_for(i) else {
            return false;
        };
        let Some(t) = self.templates[i].as_ref() else {
            return false;
        };
        if !t.rendered || quiescence_run == Some(i) {
            return false;
        }
        if std::fs::read(&t.config.destination).ok().as_deref() != Some(output) {
            match self.quiet[i].as_mut() {
                Some(q) => q.tick(),
                None => self.quiet[i] = Some(Quiet::new(wait)),
            }
        }
        true
    }

    /// Writes template `i`'s output (or prints it, dry); `true` when written.
    fn write(&mut self, i: usize, output: &[u8]) -> Result<bool, Stop> {
        let Some(t) = self.templates[i].as_mut() else {
            return Ok(false);
        };
        let target = Target {
            path: &t.config.destination,
            perms: t.config.perms,
            backup: t.config.backup,
            create_dest_dirs: t.config.create_dest_dirs,
        };
        let dry: Option<&mut dyn std::io::Write> = if self.config.dry {
            Some(&mut *self.dry)
        } else {
            None
        };
        match render(&target, output, dry) {
            Ok(outcome) => {
                t.rendered = true;
                if outcome == Outcome::Written {
                    tracing::info!("(runner) rendered {}", t.config.display());
                }
                Ok(outcome == Outcome::Written)
            }
            Err(e) => {
                let msg = format!("error rendering {}: {e}", t.config.display());
                self.failed(i, msg)
            }
        }
    }

    /// Re-reads the configuration and every template; the data watched so
    /// far stays. A configuration or template that no longer parses is
    /// logged and the running one kept, so a typo does not take the
    /// process (and the files it maintains) down.
    fn reload(&mut self, reload: &impl Fn() -> Result<Config, String>) {
        let config = match reload() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("(runner) reload failed, keeping the running configuration: {e}");
                return;
            }
        };
        let mut templates = Vec::with_capacity(config.templates.len());
        for t in &config.templates {
            match load(t) {
                Ok(template) => templates.push(Some(Loaded {
                    config: t.clone(),
                    template,
                    rendered: false,
                    used: BTreeSet::new(),
                })),
                Err(e) => {
                    tracing::error!("(runner) reload failed, keeping the running templates: {e}");
                    return;
                }
            }
        }
        // The supervised child keeps running under its original command.
        let exec = self.config.exec.clone();
        self.quiet = (0..templates.len()).map(|_| None).collect();
        self.templates = templates;
        self.config = config;
        self.config.exec = exec;
    }

    fn signal_child(&self, sig: i32) {
        let Some(pid) = self.child.as_ref().and_then(|c| c.id()) else {
            return;
        };
        tracing::debug!("(runner) sending signal {sig} to the child");
        // The child leads its own process group, so that a command wrapped
        // in `sh -c` gets the signal too, as consul-template delivers it.
        // SAFETY: signalling our own child's group, whose id we hold.
        unsafe {
            libc::kill(-(pid as i32), sig);
        }
    }

    async fn stop_child(&mut self) {
        let Some(exec) = self.config.exec.clone() else {
            return;
        };
        let Some(mut child) = self.child.take() else {
            return;
        };
        stop_child(&mut child, &exec).await;
    }
}

async fn stop_child(child: &mut tokio::process::Child, exec: &ExecConfig) {
    if let Some(pid) = child.id() {
        // SAFETY: signalling our own child's process group.
        unsafe {
            libc::kill(-(pid as i32), exec.kill_signal);
        }
    }
    if tokio::time::timeout(exec.kill_timeout, child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

async fn sleep_or_forever(until: Option<tokio::time::Instant>) {
    match until {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The exit code of the supervised child; never resolves without one.
async fn wait_child(child: &mut Option<tokio::process::Child>) -> i32 {
    let Some(c) = child.as_mut() else {
        return std::future::pending().await;
    };
    match c.wait().await {
        Ok(status) => exit_code(status),
        Err(_) => 1,
    }
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// consul-template's command forms: one string with spaces runs under
/// `sh -c`; otherwise the words are the program and its arguments.
fn command(args: &[String]) -> Result<tokio::process::Command, String> {
    match args {
        [line] if line.split_whitespace().count() > 1 => {
            let mut c = tokio::process::Command::new("/bin/sh");
            c.arg("-c").arg(line);
            Ok(c)
        }
        [program, rest @ ..] if !program.trim().is_empty() => {
            let mut c = tokio::process::Command::new(program);
            c.args(rest);
            Ok(c)
        }
        _ => Err("executable file not found in $PATH".into()),
    }
}

fn spawn(args: &[String], supervised: bool) -> Result<tokio::process::Child, String> {
    let mut c = command(args)?;
    c.stdin(std::process::Stdio::null());
    if supervised {
        c.process_group(0);
    } else {
        c.kill_on_drop(true);
    }
    c.spawn().map_err(|e| e.to_string())
}

/// Runs a template's command and waits for it, with consul-template's
/// texts when it fails.
async fn run_command(args: &[String], timeout: Duration) -> Result<(), String> {
    let mut child = spawn(args, false)?;
    let shown = args.join(" ");
    let waited = if timeout.is_zero() {
        Ok(child.wait().await)
    } else {
        tokio::time::timeout(timeout, child.wait()).await
    };
    match waited {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(_)) => Err(format!(
            "child: command exited with a non-zero exit status:\n\n    {shown}\n\nPlease ensure the command exits with a zero (0) exit status to indicate success"
        )),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => {
            let _ = child.kill().await;
            Err(format!(
                "child: command did not exit within time limit ({:?}):\n    {shown}",
                crate::duration::format(timeout)
            ))
        }
    }
}
