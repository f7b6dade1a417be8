//! `eventual verify ID --prefix P --scheme S --secret-env VAR`: sets a signature verifier on a
//! running sink (`PUT /verifiers/{id}`). The secret is read from an environment variable or from
//! stdin (`--secret-stdin`), not the command line, where `ps` would show it.

use std::{io::Read as _, process::ExitCode};

use super::Target;

#[derive(Debug, clap::Args)]
pub(crate) struct VerifyArgs {
    /// The verifier's id.
    id: String,
    /// Keys it covers (the longest matching prefix applies).
    #[arg(long)]
    prefix: String,
    /// github, stripe, standard-webhooks, slack, shopify or hmac-sha256.
    #[arg(long)]
    scheme: String,
    /// The environment variable holding the secret.
    #[arg(long, conflicts_with = "secret_stdin")]
    secret_env: Option<String>,
    /// Read the secret from stdin (its first line).
    #[arg(long)]
    secret_stdin: bool,
    /// Timestamp tolerance (default 5m).
    #[arg(long)]
    tolerance: Option<String>,
    /// Answer invalid signatures 401 (still recorded).
    #[arg(long)]
    reject: bool,
    /// hmac-sha256: the header carrying the signature.
    #[arg(long)]
    header: Option<String>,
    /// hmac-sha256: hex or base64.
    #[arg(long)]
    encoding: Option<String>,
    /// hmac-sha256: text before the signature, e.g. `sha256=`.
    #[arg(long)]
    signature_prefix: Option<String>,
    #[command(flatten)]
    target: Target,
}

fn secret(args: &VerifyArgs) -> Result<String, String> {
    if let Some(var) = &args.secret_env {
        return std::env::var(var)
            .map_err(|_| format!("the environment variable {var} is not set"));
    }
    if args.secret_stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("reading the secret from stdin: {e}"))?;
        return Ok(text.lines().next().unwrap_or_default().to_owned());
    }
    Err("give the secret with --secret-env VAR or --secret-stdin".into())
}

/// Sets the verifier; prints `verifier ID set` on stdout.
pub(crate) async fn verify(args: VerifyArgs) -> ExitCode {
    let secret = match secret(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut client = sink::Client::new(&args.target.url);
    if let Some(t) = &args.target.token {
        client = client.with_token(t);
    }
    let verifier = sink::NewVerifier {
        prefix: args.prefix.clone(),
        scheme: args.scheme.clone(),
        secret,
        tolerance: args.tolerance.clone(),
        reject: args.reject,
        header: args.header.clone(),
        encoding: args.encoding.clone(),
        signature_prefix: args.signature_prefix.clone(),
    };
    match client.verify(&args.id, &verifier).await {
        Ok(()) => {
            println!("verifier {} set", args.id);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
