//! Write realistic audit JSON lines for `siesta audit replay`:
//! `cargo run --release --example gen_audit -- /tmp/audit-300mb.log 300`
//! (path, then size in MB; default 300). Never commit the output.
use std::io::Write;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .unwrap_or_else(|| "/tmp/siesta-audit-bench.log".into());
    let megabytes: usize = args.next().and_then(|m| m.parse().ok()).unwrap_or(300);
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
    let mut generator = siesta::audit::synthetic::Generator::new(42);
    for _ in 0..megabytes {
        out.write_all(&generator.lines(1 << 20))?;
    }
    out.flush()?;
    eprintln!("wrote {path}");
    Ok(())
}
