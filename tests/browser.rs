//! The waking page in a real browser: Debian's headless Chromium, driven by
//! chromedriver over WebDriver, opens a sleeping namespace's host through the
//! `siesta proxy` process, sees "Waking up", and with no action ends on the
//! app's own answer once the controller has woken the namespace.
//!
//! Chromium does background networking, so it and chromedriver run in a
//! network namespace of their own holding only loopback and one veth pair to
//! this host (no route anywhere else): no traffic can leave the machine. The
//! proxy listens on the host's end of the pair; Chromium resolves the app's
//! host name to it (`--host-resolver-rules`), and this test talks WebDriver to
//! chromedriver on the other end.
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use siesta_test_kit::*;

const SIESTA: &str = env!("CARGO_BIN_EXE_siesta");
const GROUP: &str = "browser";
const HOST: &str = "app.browser.test";

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace with loopback and a veth pair to this host, removed
/// (with its end of the pair) when dropped.
struct Netns {
    name: String,
    host: String,
    inside: String,
}

impl Netns {
    fn new() -> Netns {
        let id = std::process::id() % 10_000;
        let name = format!("siesta-browser-{id}");
        let (outer, inner) = (format!("sbr{id}h"), format!("sbr{id}b"));
        let net = 100 + id % 150;
        let (host, inside) = (format!("10.213.{net}.1"), format!("10.213.{net}.2"));
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run(&["ip", "netns", "add", &name]);
        run(&[
            "ip", "link", "add", &outer, "type", "veth", "peer", "name", &inner,
        ]);
        run(&["ip", "link", "set", &inner, "netns", &name]);
        run(&["ip", "addr", "add", &format!("{host}/30"), "dev", &outer]);
        run(&["ip", "link", "set", &outer, "up"]);
        let inside_cidr = format!("{inside}/30");
        for cmd in [
            vec!["ip", "link", "set", "lo", "up"],
            vec!["ip", "addr", "add", &inside_cidr, "dev", &inner],
            vec!["ip", "link", "set", &inner, "up"],
        ] {
            let mut args = vec!["ip", "netns", "exec", &name];
            args.extend(cmd);
            run(&args);
        }
        Netns { name, host, inside }
    }

    fn spawn(&self, args: &[&str]) -> Child {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a process in the network namespace")
    }

    /// The routes inside: nothing beyond the pair's own /30.
    fn routes(&self) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "ip", "route"])
            .output()
            .expect("ip route");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A WebDriver request to chromedriver: the answer's `value`.
fn webdriver(base: &str, method: &str, path: &str, body: Option<Value>) -> Value {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "60", "-X", method]);
    if let Some(b) = body {
        cmd.args(["-H", "content-type: application/json", "-d", &b.to_string()]);
    }
    let out = cmd.arg(format!("{base}{path}")).output().expect("run curl");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v["value"].clone()
}

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_sees_the_waking_page_then_the_app_with_no_action() {
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "Debian's chromium and chromium-driver are needed (tests/deps.sh installs them)"
    );
    let c = client().await;
    let ctl = Siesta::controller(SIESTA, GROUP, &[]);
    ctl.wait_ready().await;
    let ns = namespace(&c, "browser", GROUP, MANUAL).await;
    create(&c, &ns, &workload("web").replicas(1).deployment()).await;
    sleep_and_wait(&c, &ns).await;

    let net = Netns::new();
    assert!(
        !net.routes().contains("default"),
        "the browser's namespace has no route out: {}",
        net.routes()
    );
    let upstream = backend().await;
    let port = free_port();
    let listen = format!("{}:{port}", net.host);
    let _proxy = Siesta::proxy_with_route(SIESTA, &listen, HOST, upstream, &ns).await;

    let _driver = Driver(net.spawn(&[
        "chromedriver",
        "--port=9515",
        &format!("--allowed-ips={}", net.host),
        "--allowed-origins=*",
    ]));
    let base = format!("http://{}:9515", net.inside);
    eventually("chromedriver answers", Duration::from_secs(20), || {
        let ready = webdriver(&base, "GET", "/status", None)["ready"] == true;
        async move { ready }
    })
    .await;
    let profile = tempfile::tempdir().expect("browser profile");
    let session = webdriver(
        &base,
        "POST",
        "/session",
        Some(json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    "--window-size=900,600",
                    format!("--user-data-dir={}", profile.path().display()),
                    format!("--host-resolver-rules=MAP {HOST} {}", net.host),
                ]
            }
        }}})),
    );
    let id = session["sessionId"]
        .as_str()
        .unwrap_or_else(|| panic!("no WebDriver session: {session}"))
        .to_string();
    let url = format!("http://{HOST}:{port}/");
    webdriver(
        &base,
        "POST",
        &format!("/session/{id}/url"),
        Some(json!({ "url": url })),
    );

    // The first load is the waking page (and the request that wakes it).
    let title = webdriver(&base, "GET", &format!("/session/{id}/title"), None);
    assert!(
        title.as_str().is_some_and(|t| t.starts_with("Waking up")),
        "first page title: {title}"
    );
    let shot = webdriver(&base, "GET", &format!("/session/{id}/screenshot"), None);
    let png = shot.as_str().map(base64_decode).unwrap_or_default();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("wake-page.png");
    std::fs::write(&out, &png).expect("write the screenshot");
    eprintln!("waking page screenshot: {}", out.display());

    // No action: the page reloads itself and ends on the app's answer.
    eventually("the app's own page", Duration::from_secs(90), || {
        let page = webdriver(&base, "GET", &format!("/session/{id}/source"), None);
        let page = page.as_str().unwrap_or_default().to_string();
        async move { page.contains("hello") && !page.contains("Waking up") }
    })
    .await;
    let now = webdriver(&base, "GET", &format!("/session/{id}/url"), None);
    assert_eq!(now.as_str(), Some(url.as_str()), "still the address typed");
    assert_state(&c, &ns, "awake", "http").await;
    webdriver(&base, "DELETE", &format!("/session/{id}"), None);
    remove_namespace(&c, &ns).await;
}

fn base64_decode(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
