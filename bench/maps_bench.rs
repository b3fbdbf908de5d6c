//! Lookup-table benchmark (run by bench/maps.sh; built as the `maps_bench` example of the
//! `postern` crate): for one `type:/path.cf` table and one key it measures, on one thread,
//! (1) cached lookups/s (`postern_map_cache_ttl` > 0, the key already cached),
//! (2) uncached lookups/s through `Maps` (escaping, `%` expansion, pool, result assembly), and
//! (3) a bare sqlx loop running the same expanded SQL text on a one-connection pool of its own.
//! Prints one line per measurement. Not a test: no assertions beyond "the key is found".
//!
//! usage: maps_bench SPEC KEY URL SQL [SECONDS]

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use postern::maps::Maps;

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// Runs `f` repeatedly for `secs` seconds; returns (iterations, elapsed).
async fn run_for<F, Fut>(secs: f64, mut f: F) -> anyhow::Result<(u64, Duration)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let start = Instant::now();
    let limit = Duration::from_secs_f64(secs);
    let mut n = 0u64;
    while start.elapsed() < limit {
        // Check the clock every 1000 calls: Instant::now() costs as much as a cached lookup.
        for _ in 0..1000 {
            f().await?;
        }
        n += 1000;
    }
    Ok((n, start.elapsed()))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [spec, key, url, sql, rest @ ..] = args.as_slice() else {
        bail!("usage: maps_bench SPEC KEY URL SQL [SECONDS]");
    };
    let secs: f64 = rest
        .first()
        .map_or(Ok(3.0), |s| s.parse())
        .context("SECONDS")?;
    // One worker thread: "on one core".
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("runtime")?;
    rt.block_on(async {
        let cached = Maps::with_cache(Path::new("/"), Duration::from_secs(3600));
        let t = cached.open(spec).context("open cached")?;
        let want = t
            .lookup(key)
            .await
            .context("first lookup")?
            .context("the key is not found")?;
        let tr: &postern::maps::Table = &t;
        let (n, d) = run_for(secs, || async move {
            tr.lookup(key).await?;
            Ok(())
        })
        .await?;
        println!("{spec}: cached lookups   {:>12.0}/s  ({want})", rate(n, d));

        let uncached = Maps::with_cache(Path::new("/"), Duration::ZERO);
        let t = uncached.open(spec).context("open uncached")?;
        let tr: &postern::maps::Table = &t;
        let (n, d) = run_for(secs / 3.0, || async move {
            tr.lookup(key).await?;
            Ok(())
        })
        .await?;
        let maps_rate = rate(n, d);
        println!("{spec}: uncached lookups {maps_rate:>12.0}/s");

        let (n, d) = if url.starts_with("mysql:") {
            let pool = sqlx::mysql::MySqlPoolOptions::new()
                .max_connections(1)
                .connect(url)
                .await
                .context("connect")?;
            let p = &pool;
            run_for(secs / 3.0, || async move {
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
                    .fetch_all(p)
                    .await?;
                Ok(())
            })
            .await?
        } else {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(url)
                .await
                .context("connect")?;
            let p = &pool;
            run_for(secs / 3.0, || async move {
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
                    .fetch_all(p)
                    .await?;
                Ok(())
            })
            .await?
        };
        let bare = rate(n, d);
        println!(
            "{spec}: bare sqlx loop   {bare:>12.0}/s  (uncached Maps = {:.2}x the bare loop's time)",
            bare / maps_rate
        );
        Ok(())
    })
}
