//! `cargo run -p tenant-api`: the example API on `TENANT_API_BIND` (default
//! 127.0.0.1:8081), on axum, or on actix-web with `TENANT_API_FRAMEWORK=actix`.
//! See the crate documentation and README "Protect your API".

use tenant_api::{Settings, actix_app, axum_app};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    let bind = std::env::var("TENANT_API_BIND").unwrap_or_else(|_| "127.0.0.1:8081".to_owned());
    let framework = std::env::var("TENANT_API_FRAMEWORK").unwrap_or_else(|_| "axum".to_owned());
    let verifier = settings.verifier().await?;
    let listener = std::net::TcpListener::bind(&bind)
        .map_err(|e| anyhow::anyhow!("TENANT_API_BIND: cannot listen on {bind}: {e}"))?;
    println!(
        "tenant-api ({framework}) on http://{} for {} (audience {})",
        listener.local_addr()?,
        settings.issuer,
        settings.audience
    );
    match framework.as_str() {
        "axum" => axum_app::serve(listener, verifier).await?,
        "actix" | "actix-web" => {
            let server = actix_app::serve(listener, verifier)?;
            let handle = server.handle();
            tokio::spawn(async move {
                let _ = tokio::signal::ctrl_c().await;
                handle.stop(true).await;
            });
            server.await?
        }
        other => anyhow::bail!("TENANT_API_FRAMEWORK is {other:?}: axum or actix"),
    }
    Ok(())
}
