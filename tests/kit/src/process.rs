//! `siesta` subprocesses that die with the test: controllers of a test group,
//! proxies, anything else the binary runs.
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{eventually, free_port, http_get};

/// A `siesta` subprocess, killed when dropped and exiting by itself when the
/// test process ends (its standard input closes). `bin` is the binary, which
/// only the siesta package's own tests know: `env!("CARGO_BIN_EXE_siesta")`.
pub struct Siesta {
    pub child: Child,
    pub admin: u16,
    /// Files the process reads for as long as it runs (a routes file).
    files: Vec<tempfile::NamedTempFile>,
}

impl Siesta {
    /// `bin` with these arguments and environment, its admin server on a free port.
    pub fn start(bin: &str, args: &[&str], envs: &[(&str, &str)]) -> Siesta {
        Siesta::start_at(bin, free_port(), args, envs)
    }

    /// Like [`Siesta::start`], its admin server on `admin` (a process that
    /// replaces another, scraped at the same address).
    pub fn start_at(bin: &str, admin: u16, args: &[&str], envs: &[(&str, &str)]) -> Siesta {
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .arg("--admin-listen")
            .arg(format!("127.0.0.1:{admin}"))
            .env("SIESTA_EXIT_WITH_STDIN", "1")
            .env(
                "SIESTA_LOG",
                std::env::var("SIESTA_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start siesta");
        Siesta {
            child,
            admin,
            files: Vec::new(),
        }
    }

    /// A ready `siesta proxy` on `listen` with one route: `host` to the
    /// backend on 127.0.0.1:`upstream`, for `namespace`.
    pub async fn proxy_with_route(
        bin: &str,
        listen: &str,
        host: &str,
        upstream: u16,
        namespace: &str,
    ) -> Siesta {
        let routes = tempfile::NamedTempFile::new().expect("routes file");
        std::fs::write(
            routes.path(),
            format!("routes:\n  - host: {host}\n    upstream: http://127.0.0.1:{upstream}\n    namespace: {namespace}\n"),
        )
        .expect("write routes");
        let path = routes.path().to_str().expect("a UTF-8 path").to_string();
        let mut proxy = Siesta::start(bin, &["proxy", "--routes", &path, "--listen", listen], &[]);
        proxy.files.push(routes);
        proxy.wait_ready().await;
        proxy
    }

    /// A controller managing only namespaces labelled `siesta-test=<group>`.
    pub fn controller(bin: &str, group: &str, extra: &[&str]) -> Siesta {
        let mut args = vec!["--leader-lease-duration", "4s"];
        args.extend_from_slice(extra);
        Siesta::controller_with_env(bin, group, &args, &[])
    }

    /// A controller of a test group redirecting sleeping Services to the
    /// proxy Service `siesta-system/<proxy_service>` on `ports` (`FIRST-LAST`).
    pub fn redirect_controller(bin: &str, group: &str, proxy_service: &str, ports: &str) -> Siesta {
        let service = format!("siesta-system/{proxy_service}");
        let args = ["--proxy-service", &service, "--redirect-ports", ports];
        Siesta::controller(bin, group, &args)
    }

    /// A controller with extra environment (for example another KUBECONFIG).
    pub fn controller_with_env(
        bin: &str,
        group: &str,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Siesta {
        Siesta::controller_at(bin, group, free_port(), extra, envs)
    }

    /// A controller of a test group with its admin server on `admin`.
    pub fn controller_at(
        bin: &str,
        group: &str,
        admin: u16,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Siesta {
        let audit = format!("127.0.0.1:{}", free_port());
        let selector = format!("siesta-test={group}");
        // Each group leads through its own Lease, so test groups running at
        // once never wait for each other.
        let lease_ns = format!("siesta-lease-{group}");
        let mut args = vec!["controller", "--namespace-selector", &selector];
        if !extra.contains(&"--audit-listen") {
            args.extend(["--audit-listen", &audit]);
        }
        if !extra.contains(&"--leader-election-namespace") {
            let _ = Command::new("kubectl")
                .args(["create", "namespace", &lease_ns])
                .output();
            args.extend(["--leader-election-namespace", &lease_ns]);
        }
        args.extend_from_slice(extra);
        Siesta::start_at(bin, admin, &args, envs)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub async fn metrics(&self) -> String {
        http_get(&format!("http://127.0.0.1:{}/metrics", self.admin))
            .await
            .unwrap_or_default()
    }

    pub async fn wait_ready(&self) {
        wait_ready(self.admin).await;
    }
}

impl Drop for Siesta {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Wait until the Siesta process with this admin port answers /readyz.
pub async fn wait_ready(admin: u16) {
    let url = format!("http://127.0.0.1:{admin}/readyz");
    eventually("siesta ready", Duration::from_secs(30), || {
        let url = url.clone();
        async move { http_get(&url).await.is_some() }
    })
    .await;
}
