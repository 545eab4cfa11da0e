//! `cargo run -p web-app`: the example web application on `WEB_APP_BIND`
//! (default 127.0.0.1:8082). See the crate documentation and README
//! "Sign users in to your application".

use web_app::{Settings, WebApp, serve};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    let bind = std::env::var("WEB_APP_BIND").unwrap_or_else(|_| "127.0.0.1:8082".to_owned());
    let listener = std::net::TcpListener::bind(&bind)
        .map_err(|e| anyhow::anyhow!("WEB_APP_BIND: cannot listen on {bind}: {e}"))?;
    println!(
        "web-app on {} (listening on {}), signing in through {}",
        settings.public_url,
        listener.local_addr()?,
        settings.issuer
    );
    let app = WebApp::new(settings).await?;
    let server = serve(listener, app)?;
    let handle = server.handle();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        handle.stop(true).await;
    });
    server.await?;
    Ok(())
}
