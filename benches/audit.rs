//! Audit ingest speed: `cargo bench --bench audit`.
//!
//! - `lines/ingest` is the whole path of `siesta audit replay` (parse, judge,
//!   dedupe, report) over generated lines; `lines/ignored_any` is serde_json
//!   skipping the same lines without looking at them, the floor to compare with.
//! - `webhook/event_list_400` posts a 400-event EventList to a running webhook
//!   over a kept-alive connection; p50 and p99 are printed.
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use siesta::activity::{AllAwake, Reporter};
use siesta::audit::synthetic::Generator;
use siesta::audit::webhook::{Settings, Webhook};
use siesta::audit::{Ingest, Rules};
use siesta_test_kit::http_client;

fn lines(c: &mut Criterion) {
    let body = Generator::new(42).lines(8 << 20);
    // A fresh ingest each pass, so counted requests are not all repeats.
    let fresh = || {
        Ingest::new(
            Rules::default(),
            Reporter::new(Arc::new(AllAwake), None, None, Arc::default()),
        )
    };
    // On a shared machine, the fastest of interleaved passes is the steadiest ratio.
    let pass = |f: &dyn Fn()| {
        let started = tokio::time::Instant::now();
        f();
        started.elapsed()
    };
    let ignored_any = || {
        for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let _ = std::hint::black_box(serde_json::from_slice::<serde::de::IgnoredAny>(line));
        }
    };
    let (mut best_ingest, mut best_ignored) = (Duration::MAX, Duration::MAX);
    for _ in 0..15 {
        best_ingest = best_ingest.min(pass(&|| {
            std::hint::black_box(fresh().lines(&body));
        }));
        best_ignored = best_ignored.min(pass(&ignored_any));
    }
    let mb = body.len() as f64 / 1e6;
    println!(
        "lines, fastest of 15 interleaved passes: ingest {:.0} MB/s, IgnoredAny {:.0} MB/s, ratio {:.2}",
        mb / best_ingest.as_secs_f64(),
        mb / best_ignored.as_secs_f64(),
        best_ignored.as_secs_f64() / best_ingest.as_secs_f64()
    );
    let mut group = c.benchmark_group("lines");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    group.bench_function("ingest", |b| b.iter(|| fresh().lines(&body)));
    group.bench_function("ignored_any", |b| b.iter(ignored_any));
    group.finish();
}

fn webhook(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let body = Bytes::from(Generator::new(7).event_list(400));
    let (client, uri) = runtime.block_on(async {
        let ingest = Ingest::new(
            Rules::default(),
            Reporter::new(Arc::new(AllAwake), None, None, Arc::default()),
        );
        let settings = Settings {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            max_body: 16 << 20,
            ..Settings::default()
        };
        let webhook = Webhook::bind(&settings).await.unwrap();
        let uri: http::Uri = format!("http://{}/audit", webhook.local_addr().unwrap())
            .parse()
            .unwrap();
        tokio::spawn(webhook.serve(ingest));
        (http_client(), uri)
    });
    let post = || {
        let request = http::Request::post(uri.clone())
            .body(Full::new(body.clone()))
            .unwrap();
        let client = client.clone();
        async move {
            let response = client.request(request).await.unwrap();
            assert_eq!(response.status(), 200);
            response.into_body().collect().await.unwrap();
        }
    };
    // Latency percentiles over many requests, paced like an API server's batches.
    let mut latencies = runtime.block_on(async {
        let mut all = Vec::new();
        for _ in 0..1000 {
            let started = tokio::time::Instant::now();
            post().await;
            all.push(started.elapsed());
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        all
    });
    latencies.sort();
    let p = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "webhook/event_list_400 ({} bytes): p50 {:?} p99 {:?} max {:?}",
        body.len(),
        p(0.5),
        p(0.99),
        p(1.0)
    );
    // Criterion's unpaced loop would only measure the 503 backpressure once
    // the worker falls behind; the paced percentiles above are the figure.
    let _ = c;
}

criterion_group!(benches, lines, webhook);
criterion_main!(benches);
