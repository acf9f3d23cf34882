//! Headless Chromium driven through chromedriver (WebDriver), for the
//! browser tests of the web UI.
//!
//! Each [`Browser`] starts its own chromedriver on a free loopback port and
//! its own Chromium with a temporary profile, and kills both when dropped.
//! The calls are blocking (a private current-thread runtime runs the
//! WebDriver client) so the tests read like the other integration tests,
//! which use blocking HTTP. A missing `chromium` or `chromedriver` is a
//! failure with a message saying what to install, never a skip.
//!
//! Reads go through small scripts run in the page (`textContent`, attribute
//! values): one round trip each and no stale-element races while the UI
//! re-renders on a blocking-query update. Clicks and typing go through
//! WebDriver's element commands, so they are real user input events.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

/// How long a test waits for something a user should see. The UI aims at
/// well under a second; the margin is for a loaded two-core CI machine.
pub const PRESENCE: Duration = Duration::from_secs(10);

const CHROMIUM: &str = "chromium";
const CHROMEDRIVER: &str = "chromedriver";

/// The path of `tool` on `PATH`, or a panic naming the Debian package.
fn require(tool: &str, package: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .expect("run sh");
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || path.is_empty() {
        panic!(
            "missing required tool: {tool} (Debian package {package}); \
             scripts/test installs it, or run `apt-get install chromium chromium-driver`"
        );
    }
    path
}

pub struct Browser {
    rt: tokio::runtime::Runtime,
    client: Option<Client>,
    driver: Option<Child>,
    _profile: tempfile::TempDir,
    driver_log: std::path::PathBuf,
}

/// Browser window options.
pub struct Options {
    pub width: u32,
    pub height: u32,
    /// Ask pages for the dark colour scheme (`prefers-color-scheme: dark`).
    pub dark: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            width: 1280,
            height: 900,
            dark: false,
        }
    }
}

impl Browser {
    /// Chromium at 1280×900 in the light scheme.
    pub fn start() -> Browser {
        Self::start_with(Options::default())
    }

    pub fn start_with(opts: Options) -> Browser {
        let chromium = require(CHROMIUM, "chromium");
        let chromedriver = require(CHROMEDRIVER, "chromium-driver");
        let profile = tempfile::tempdir().expect("tempdir");
        let driver_log = profile.path().join("chromedriver.log");
        // chromedriver can only listen on localhost; the port is free right
        // now and the process is ours alone.
        let port = super::free_port();
        let mut cmd = Command::new(&chromedriver);
        cmd.arg(format!("--port={port}"))
            .arg(format!("--log-path={}", driver_log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Its own process group, so that dropping the browser can kill
        // chromedriver and every Chromium process it started, by group id.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let driver = cmd.spawn().expect("spawn chromedriver");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let mut b = Browser {
            rt,
            client: None,
            driver: Some(driver),
            _profile: profile,
            driver_log,
        };
        let url = format!("http://127.0.0.1:{port}");
        let up = super::eventually(Duration::from_secs(20), || {
            super::http_request("GET", &format!("{url}/status"), None, &[])
                .map(|r| r.status == 200)
                .unwrap_or(false)
        });
        assert!(
            up,
            "chromedriver did not start; log:\n{}",
            b.driver_log_text()
        );

        let mut args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--no-first-run".into(),
            "--no-default-browser-check".into(),
            format!("--window-size={},{}", opts.width, opts.height),
            format!(
                "--user-data-dir={}",
                b._profile.path().join("profile").display()
            ),
        ];
        if opts.dark {
            args.push("--force-dark-mode".into());
            args.push("--blink-settings=preferredColorScheme=0".into());
        }
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        });
        let caps = match caps {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        let client = b.rt.block_on(async {
            ClientBuilder::new(HttpConnector::new())
                .capabilities(caps)
                .connect(&url)
                .await
        });
        match client {
            Ok(c) => b.client = Some(c),
            Err(e) => panic!(
                "could not start Chromium through chromedriver: {e}; log:\n{}",
                b.driver_log_text()
            ),
        }
        b.size_viewport(opts.width, opts.height);
        b
    }

    /// `--window-size` sizes the window, browser frame included: grow it
    /// by the frame so that pages (and screenshots) get exactly w×h.
    fn size_viewport(&self, width: u32, height: u32) {
        let frame = self.js(
            "return [outerWidth - innerWidth, outerHeight - innerHeight];",
            vec![],
        );
        let dx = frame[0].as_u64().unwrap_or(0) as u32;
        let dy = frame[1].as_u64().unwrap_or(0) as u32;
        if dx > 0 || dy > 0 {
            self.rt
                .block_on(self.client().set_window_size(width + dx, height + dy))
                .expect("set window size");
        }
    }

    fn driver_log_text(&self) -> String {
        let text = std::fs::read_to_string(&self.driver_log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("browser session")
    }

    pub fn goto(&self, url: &str) {
        self.rt
            .block_on(self.client().goto(url))
            .unwrap_or_else(|e| panic!("goto {url}: {e}"));
    }

    pub fn back(&self) {
        self.rt
            .block_on(self.client().back())
            .expect("history back");
    }

    pub fn refresh(&self) {
        self.rt.block_on(self.client().refresh()).expect("refresh");
    }

    pub fn url(&self) -> String {
        self.rt
            .block_on(self.client().current_url())
            .expect("current url")
            .to_string()
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) in the
    /// page and returns what it returns.
    pub fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.rt
            .block_on(self.client().execute(script, args))
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Runs an asynchronous script: the last argument is the callback.
    pub fn js_async(&self, script: &str, args: Vec<Value>) -> Value {
        self.rt
            .block_on(self.client().execute_async(script, args))
            .unwrap_or_else(|e| panic!("async script failed: {e}\n{script}"))
    }

    /// `textContent` of the first element matching `css`, trimmed; `None`
    /// when there is none.
    pub fn text(&self, css: &str) -> Option<String> {
        let v = self.js(
            "const e = document.querySelector(arguments[0]); \
             return e ? e.textContent.trim() : null;",
            vec![json!(css)],
        );
        v.as_str().map(str::to_string)
    }

    /// An attribute of the first element matching `css`.
    pub fn attr(&self, css: &str, name: &str) -> Option<String> {
        let v = self.js(
            "const e = document.querySelector(arguments[0]); \
             return e ? e.getAttribute(arguments[1]) : null;",
            vec![json!(css), json!(name)],
        );
        v.as_str().map(str::to_string)
    }

    /// A property (`value`, `type`, ...) of the first element matching `css`.
    pub fn prop(&self, css: &str, name: &str) -> Value {
        self.js(
            "const e = document.querySelector(arguments[0]); \
             return e ? e[arguments[1]] : null;",
            vec![json!(css), json!(name)],
        )
    }

    pub fn count(&self, css: &str) -> usize {
        self.js(
            "return document.querySelectorAll(arguments[0]).length;",
            vec![json!(css)],
        )
        .as_u64()
        .unwrap_or(0) as usize
    }

    pub fn exists(&self, css: &str) -> bool {
        self.count(css) > 0
    }

    pub fn title(&self) -> String {
        self.rt.block_on(self.client().title()).expect("title")
    }

    /// What the page shows, for failure messages.
    pub fn describe(&self) -> String {
        let v = self.js(
            "const b = document.body; return location.href + '\\n' + \
             (b ? ('data-page=' + b.dataset.page + ' data-loaded=' + b.dataset.loaded + '\\n' + \
             b.innerText.slice(0, 1500)) : '(no body)');",
            vec![],
        );
        v.as_str().unwrap_or("").to_string()
    }

    /// Polls `check` until it returns `Some`, or panics after `timeout`
    /// saying what was awaited and what the page shows.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Self) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = check(self) {
                return v;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; the page shows:\n{}",
                    self.describe()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the JS expression `expr` is truthy.
    pub fn wait_js(&self, what: &str, expr: &str) {
        let script = format!("return !!({expr});");
        self.wait_for(what, PRESENCE, |b| {
            b.js(&script, vec![]).as_bool().filter(|v| *v)
        });
    }

    /// Waits until an element matches `css`.
    pub fn wait_present(&self, css: &str) {
        self.wait_for(&format!("`{css}` to be present"), PRESENCE, |b| {
            b.exists(css).then_some(())
        });
    }

    /// Waits until no element matches `css`.
    pub fn wait_absent(&self, css: &str) {
        self.wait_for(&format!("`{css}` to be gone"), PRESENCE, |b| {
            (!b.exists(css)).then_some(())
        });
    }

    /// Waits until the trimmed text of `css` equals `want`.
    pub fn wait_text(&self, css: &str, want: &str) {
        self.wait_for(&format!("`{css}` to read {want:?}"), PRESENCE, |b| {
            (b.text(css).as_deref() == Some(want)).then_some(())
        });
    }

    /// Waits until `body[data-page=page][data-loaded=true]`.
    pub fn wait_page(&self, page: &str) {
        self.wait_present(&format!("body[data-page=\"{page}\"][data-loaded=\"true\"]"));
    }

    fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.rt
            .block_on(self.client().find(Locator::Css(css)))
            .unwrap_or_else(|e| panic!("find `{css}`: {e}\n{}", self.describe()))
    }

    /// Clicks the first element matching `css` (waiting for it first).
    pub fn click(&self, css: &str) {
        self.wait_present(css);
        let el = self.find(css);
        self.rt
            .block_on(el.click())
            .unwrap_or_else(|e| panic!("click `{css}`: {e}"));
    }

    /// Types `text` into the element matching `css`, as keystrokes.
    pub fn type_into(&self, css: &str, text: &str) {
        self.wait_present(css);
        let el = self.find(css);
        self.rt
            .block_on(el.send_keys(text))
            .unwrap_or_else(|e| panic!("type into `{css}`: {e}"));
    }

    /// Clears an input or textarea (as a user selecting all and deleting).
    pub fn clear(&self, css: &str) {
        self.wait_present(css);
        let el = self.find(css);
        self.rt
            .block_on(el.clear())
            .unwrap_or_else(|e| panic!("clear `{css}`: {e}"));
    }

    /// Sends keys to whatever has focus (Tab is "\u{e004}").
    pub fn keys(&self, text: &str) {
        let el = self
            .rt
            .block_on(self.client().active_element())
            .expect("active element");
        self.rt.block_on(el.send_keys(text)).expect("send keys");
    }

    pub fn accept_alert(&self) {
        self.wait_for("a confirm() dialog", PRESENCE, |b| {
            b.rt.block_on(b.client().accept_alert()).ok()
        });
    }

    /// Saves a PNG of the viewport.
    pub fn screenshot(&self, path: &Path) {
        let png = self
            .rt
            .block_on(self.client().screenshot())
            .expect("screenshot");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            let _ = self
                .rt
                .block_on(async { tokio::time::timeout(Duration::from_secs(5), c.close()).await });
        }
        if let Some(mut d) = self.driver.take() {
            // The group holds chromedriver and any Chromium it left behind.
            unsafe {
                libc::kill(-(d.id() as i32), libc::SIGKILL);
            }
            let _ = d.kill();
            let _ = d.wait();
        }
    }
}
