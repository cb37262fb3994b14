//! Headless Chromium for the console's end-to-end tests and its bench: a
//! `chromedriver` on a free loopback port, one WebDriver session through it
//! (fantoccini), and blocking helpers, so that tests stay plain sync
//! `#[test]`s like the rest of `tests/common`. Dropping a [`Browser`] (also
//! when a test panics) ends the session and kills chromedriver and whatever
//! browser processes are left in its process group.
//!
//! Chromium is `/usr/bin/chromium` unless `STACKPIPE_CHROMIUM` names another;
//! `chromedriver` is looked up on PATH. `.ci/run` installs both (Debian's
//! `chromium` and `chromium-driver`); nothing is downloaded here.

use std::fs::File;
use std::future::Future;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// How long `click`, `fill` and `text` wait for their element to appear.
pub const ELEMENT_WAIT: Duration = Duration::from_secs(10);
/// How long chromedriver has to answer `/status` ready.
const DRIVER_START: Duration = Duration::from_secs(20);
/// How long the browser has to start and open the session.
const SESSION_START: Duration = Duration::from_secs(60);
/// Between two tries of a poll.
const POLL: Duration = Duration::from_millis(25);

/// The flags every headless Chromium of the suite runs with: no sandbox
/// (the tests run as root), and none of the background traffic a fresh
/// profile would otherwise start (there is no network here but loopback).
const CHROMIUM_FLAGS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1400,900",
];

/// Where `screenshot` writes its pictures, for a developer to look at.
pub fn screenshot_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target/console-screenshots"))
}

/// A headless Chromium driven through its own chromedriver.
pub struct Browser {
    runtime: tokio::runtime::Runtime,
    /// `None` once closed.
    client: Option<Client>,
    /// The chromedriver process; the leader of its own process group, which
    /// the browser processes it starts join.
    driver: Option<Child>,
    /// chromedriver's stdout and stderr, read back into panic messages.
    driver_log: PathBuf,
    /// The browser profile (`--user-data-dir`) and the driver's log: fresh for each browser.
    _dir: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session; panics, with
    /// chromedriver's output, when either cannot start.
    pub fn start() -> Browser {
        let dir = tempfile::tempdir().expect("a temp dir for the browser");
        let profile = dir.path().join("profile");
        let driver_log = dir.path().join("chromedriver.log");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
        let (driver, port) = start_driver(&driver_log);
        let mut browser = Browser { runtime, client: None, driver: Some(driver), driver_log, _dir: dir };

        let binary = std::env::var("STACKPIPE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_string());
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| f.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": binary, "args": args },
        });
        let serde_json::Value::Object(capabilities) = capabilities else { unreachable!("an object literal") };
        let mut builder = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        builder.capabilities(capabilities);
        let webdriver = format!("http://127.0.0.1:{port}");
        let connected = browser.block(async { tokio::time::timeout(SESSION_START, builder.connect(&webdriver)).await });
        match connected {
            Ok(Ok(client)) => browser.client = Some(client),
            Ok(Err(e)) => panic!("no browser session ({binary}): {e}\nchromedriver said:\n{}", browser.driver_output()),
            Err(_) => panic!(
                "no browser session ({binary}) within {SESSION_START:?}\nchromedriver said:\n{}",
                browser.driver_output()
            ),
        }
        browser
    }

    fn block<T>(&self, f: impl Future<Output = T>) -> T {
        self.runtime.block_on(f)
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("the browser is closed")
    }

    /// What chromedriver printed so far (its last 8 KB).
    pub fn driver_output(&self) -> String {
        tail(&std::fs::read_to_string(&self.driver_log).unwrap_or_default(), 8192)
    }

    /// Navigates to `url` and waits for its load to end.
    pub fn goto(&self, url: &str) {
        if let Err(e) = self.block(self.client().goto(url)) {
            panic!("cannot open {url}: {e}");
        }
    }

    /// The URL the page is at.
    pub fn url(&self) -> String {
        match self.block(self.client().current_url()) {
            Ok(u) => u.to_string(),
            Err(e) => panic!("no current URL: {e}"),
        }
    }

    /// Where the page is, for messages: its URL (or why that is unknown)
    /// and the start of what the page shows.
    fn location(&self) -> String {
        let Some(client) = self.client.as_ref() else { return "(closed)".to_string() };
        let url = match self.block(client.current_url()) {
            Ok(u) => u.to_string(),
            Err(e) => format!("(no URL: {e})"),
        };
        let shown = self
            .block(client.execute("return (document.body && document.body.innerText || '').slice(0, 600);", vec![]))
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        format!("{url}, showing:\n{shown}")
    }

    /// Reloads the page and waits for its load to end.
    pub fn reload(&self) {
        if let Err(e) = self.block(self.client().refresh()) {
            panic!("cannot reload {}: {e}", self.location());
        }
    }

    /// Whether an element matches `css` now.
    pub fn exists(&self, css: &str) -> bool {
        self.block(self.client().find(Locator::Css(css))).is_ok()
    }

    /// How many elements match `css` now.
    pub fn count(&self, css: &str) -> usize {
        match self.block(self.client().find_all(Locator::Css(css))) {
            Ok(all) => all.len(),
            Err(e) => panic!("cannot look for {css}: {e}"),
        }
    }

    /// Waits until an element matches `css`; panics after `timeout`.
    pub fn wait_for(&self, css: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.exists(css) {
            if Instant::now() >= deadline {
                panic!("no element {css} after {timeout:?} on {}", self.location());
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until the JavaScript expression `expr` is `true`; how long it
    /// took. Panics after `timeout`, saying `what` and the last value.
    pub fn wait_until(&self, expr: &str, timeout: Duration, what: &str) -> Duration {
        let script = format!("return ({expr});");
        let start = Instant::now();
        loop {
            let last = match self.block(self.client().execute(&script, vec![])) {
                Ok(Value::Bool(true)) => return start.elapsed(),
                Ok(v) => v.to_string(),
                Err(e) => format!("an error: {e}"),
            };
            if start.elapsed() >= timeout {
                panic!("timed out after {timeout:?} waiting for {what}: `{expr}` was {last} on {}", self.location());
            }
            std::thread::sleep(POLL);
        }
    }

    /// Runs `script` (a function body: `return` gives its value; `arguments`
    /// are `args`) in the page; its value.
    pub fn js(&self, script: &str, args: Vec<Value>) -> Value {
        match self.block(self.client().execute(script, args)) {
            Ok(v) => v,
            Err(e) => panic!("the script failed: {e}\n{script}"),
        }
    }

    /// Runs `script` in the page as an async script: it ends by calling
    /// `arguments[arguments.length - 1]` with its value.
    pub fn js_async(&self, script: &str, args: Vec<Value>) -> Value {
        match self.block(self.client().execute_async(script, args)) {
            Ok(v) => v,
            Err(e) => panic!("the async script failed: {e}\n{script}"),
        }
    }

    /// The element `css`, once it exists (waiting up to [`ELEMENT_WAIT`]).
    fn element(&self, css: &str) -> fantoccini::elements::Element {
        self.wait_for(css, ELEMENT_WAIT);
        match self.block(self.client().find(Locator::Css(css))) {
            Ok(e) => e,
            Err(e) => panic!("no element {css}: {e}"),
        }
    }

    /// Does `act` on the element `css` once it exists. A page that
    /// renders the element again between finding and acting leaves the
    /// found one stale: it is found again and `act` tried again.
    fn on_element<T, F>(&self, css: &str, what: &str, act: impl Fn(fantoccini::elements::Element) -> F) -> T
    where
        F: Future<Output = Result<T, fantoccini::error::CmdError>>,
    {
        let deadline = Instant::now() + ELEMENT_WAIT;
        loop {
            let element = self.element(css);
            match self.block(act(element)) {
                Ok(v) => return v,
                Err(e) if e.to_string().contains("stale element") && Instant::now() < deadline => std::thread::sleep(POLL),
                Err(e) => panic!("cannot {what} {css}: {e}"),
            }
        }
    }

    /// Clicks the element `css` (once it exists).
    pub fn click(&self, css: &str) {
        self.on_element(css, "click", |e| async move { e.click().await.map(|_| ()) })
    }

    /// Types `text` into the field `css` (once it exists) in place of what it held.
    pub fn fill(&self, css: &str, text: &str) {
        self.on_element(css, "type into", |e| async move {
            e.clear().await?;
            e.send_keys(text).await
        })
    }

    /// Sends `keys` to the element `css` (once it exists) as typed, after
    /// what it holds: WebDriver's key codes (`\u{E007}` Enter, `\u{E004}`
    /// Tab, `\u{E00C}` Escape) press those keys.
    pub fn press(&self, css: &str, keys: &str) {
        self.on_element(css, "send keys to", |e| async move { e.send_keys(keys).await })
    }

    /// The rendered text of the element `css` (once it exists).
    pub fn text(&self, css: &str) -> String {
        self.on_element(css, "read the text of", |e| async move { e.text().await })
    }

    /// Logs in to the stackpipe server at `base` (its origin, no trailing
    /// slash) with `token`, the way the console does: a POST of the token to
    /// `/api/v1/session` from a page of that origin sets the session cookie.
    /// The session's JSON (user, role, csrf).
    pub fn login(&self, base: &str, token: &str) -> Value {
        if !self.url().starts_with(base) {
            self.goto(&format!("{base}/healthz"));
        }
        let answer = self.js_async(
            "const done = arguments[arguments.length - 1];
             fetch('/api/v1/session', {method: 'POST', headers: {'content-type': 'application/json'},
                                       body: JSON.stringify({token: arguments[0]})})
               .then(async r => done({status: r.status, body: await r.json().catch(() => null)}))
               .catch(e => done({status: 0, body: String(e)}));",
            vec![json!(token)],
        );
        assert_eq!(answer["status"], 200, "logging in at {base} failed: {answer}");
        answer["body"].clone()
    }

    /// Writes a PNG of the window to `target/console-screenshots/NAME.png`; its path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let png = match self.block(self.client().screenshot()) {
            Ok(png) => png,
            Err(e) => panic!("no screenshot {name}: {e}"),
        };
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot make {}: {e}", dir.display()));
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }

    /// Ends the session and chromedriver (dropping the browser does the same).
    pub fn close(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        if let Some(client) = self.client.take() {
            // The session's end closes the browser; bounded, as a hung browser
            // must not hang a test that is already failing.
            let _ = self.runtime.block_on(async { tokio::time::timeout(Duration::from_secs(10), client.close()).await });
        }
        if let Some(mut driver) = self.driver.take() {
            kill_group(&mut driver);
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// Kills `child` and its process group (of which it is the leader), and reaps it.
fn kill_group(child: &mut Child) {
    // SAFETY: kill(2) of the process group this child leads (it was spawned
    // with process_group(0), so its pid is the group's id).
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    let _ = child.kill();
    let _ = child.wait();
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    listener.local_addr().expect("its address").port()
}

/// Starts chromedriver on a free port and waits for it to answer ready;
/// the process and the port. Tries other ports when one was taken meanwhile.
fn start_driver(log: &std::path::Path) -> (Child, u16) {
    let deadline = Instant::now() + DRIVER_START;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    let mut tries = 0;
    loop {
        tries += 1;
        let port = free_port();
        let out = File::create(log).expect("chromedriver's log file");
        let err = out.try_clone().expect("chromedriver's log file");
        let spawned = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Its own process group: the browser it starts is in it too,
            // so that one kill ends them all (see `kill_group`).
            .process_group(0)
            .spawn();
        let mut driver = match spawned {
            Ok(d) => d,
            Err(e) => panic!(
                "cannot start chromedriver: {e} (install Debian's chromium and chromium-driver, as .ci/run does)"
            ),
        };
        loop {
            if let Ok(Some(status)) = driver.try_wait() {
                let said = tail(&std::fs::read_to_string(log).unwrap_or_default(), 8192);
                // The port may have been taken between our probe and its bind.
                if tries < 5 && Instant::now() < deadline {
                    break;
                }
                panic!("chromedriver exited ({status}) before it was ready on port {port}; it said:\n{said}");
            }
            let ready = agent
                .get(format!("http://127.0.0.1:{port}/status"))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_to_string().ok())
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .is_some_and(|doc| doc["value"]["ready"] == true);
            if ready {
                return (driver, port);
            }
            if Instant::now() >= deadline {
                kill_group(&mut driver);
                let said = tail(&std::fs::read_to_string(log).unwrap_or_default(), 8192);
                panic!("chromedriver on port {port} was not ready after {DRIVER_START:?}; it said:\n{said}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The last `max` bytes of `text` (at a character boundary).
fn tail(text: &str, max: usize) -> String {
    let mut from = text.len().saturating_sub(max);
    while !text.is_char_boundary(from) {
        from += 1;
    }
    text[from..].to_string()
}
