//! `eventual stub`, `eventual stubs`: scripted answers on a running sink (`/stubs`).
//!
//! `eventual stub ID --key K --status 503 --times 2` sets a one-response stub; several responses
//! are `--response JSON` repeated; `--delete` removes it. The stub goes to the sink as JSON, so
//! the sink's `422` lists every problem, as for `PUT /stubs/ID`.

use std::process::ExitCode;

use serde_json::{Value, json};

use super::Target;

#[derive(Debug, clap::Args)]
pub(crate) struct StubArgs {
    /// The stub's id.
    id: String,
    /// The one key it answers.
    #[arg(long, conflicts_with = "prefix")]
    key: Option<String>,
    /// Every key starting with this.
    #[arg(long)]
    prefix: Option<String>,
    /// The status answered (100–599).
    #[arg(long, default_value_t = 200)]
    status: u16,
    /// How many callbacks in a row get it.
    #[arg(long, default_value_t = 1)]
    times: u64,
    /// How long the answer is held (at most 60s): 300ms, 2s.
    #[arg(long)]
    delay: Option<String>,
    /// The body: JSON, or else sent as text.
    #[arg(long)]
    body: Option<String>,
    /// A header of the answer, `NAME: VALUE` (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Close the connection without answering.
    #[arg(long = "drop", conflicts_with_all = ["body", "headers"])]
    drop_connection: bool,
    /// A whole response as JSON, e.g. '{"status": 503, "times": 2}' (repeatable, in order;
    /// replaces --status, --times, --delay, --body, --header and --drop).
    #[arg(long = "response", value_name = "JSON", conflicts_with_all = ["status", "times", "delay", "body", "headers", "drop_connection"])]
    responses: Vec<String>,
    /// Past the last response: `last` (default), `cycle` or `default`.
    #[arg(long)]
    then: Option<String>,
    /// Delete the stub instead.
    #[arg(long, conflicts_with_all = ["key", "prefix", "responses", "then"])]
    delete: bool,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, clap::Args)]
pub(crate) struct StubsArgs {
    /// Print `{"stubs": […]}` as `GET /stubs` answers.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    target: Target,
}

fn client(target: &Target) -> sink::Client {
    let client = sink::Client::new(target.url.clone());
    match &target.token {
        Some(token) => client.with_token(token.clone()),
        None => client,
    }
}

fn failed(e: &sink::ClientError) -> ExitCode {
    match e {
        sink::ClientError::Api { code, message, .. } => eprintln!("error: {code}: {message}"),
        other => eprintln!("error: {other}"),
    }
    ExitCode::from(2)
}

/// `eventual stub ID …`: sets the stub and prints it as the sink stored it (or deletes it).
pub(crate) async fn stub(args: StubArgs) -> ExitCode {
    let client = client(&args.target);
    if args.delete {
        return match client.delete_stub(&args.id).await {
            Ok(()) => {
                eprintln!("stub {} deleted", args.id);
                ExitCode::SUCCESS
            }
            Err(e) => failed(&e),
        };
    }
    let body = match stub_json(&args) {
        Ok(body) => body,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    match client.stub(&args.id, &body).await {
        Ok(info) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&info).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(e) => failed(&e),
    }
}

/// The `PUT /stubs/ID` body the flags describe.
fn stub_json(args: &StubArgs) -> Result<Value, String> {
    let mut stub = serde_json::Map::new();
    match (&args.key, &args.prefix) {
        (Some(key), _) => stub.insert("key".into(), json!(key)),
        (None, Some(prefix)) => stub.insert("prefix".into(), json!(prefix)),
        (None, None) => return Err("give --key K or --prefix P (or --delete)".into()),
    };
    let responses = if args.responses.is_empty() {
        let mut one = serde_json::Map::new();
        if args.drop_connection {
            one.insert("drop".into(), json!(true));
        } else {
            one.insert("status".into(), json!(args.status));
        }
        one.insert("times".into(), json!(args.times));
        if let Some(delay) = &args.delay {
            one.insert("delay".into(), json!(delay));
        }
        if let Some(body) = &args.body {
            let body = serde_json::from_str(body).unwrap_or_else(|_| json!(body));
            one.insert("body".into(), body);
        }
        if !args.headers.is_empty() {
            let mut headers = serde_json::Map::new();
            for header in &args.headers {
                let (name, value) = header
                    .split_once(':')
                    .ok_or_else(|| format!("--header {header:?} is not `NAME: VALUE`"))?;
                headers.insert(name.trim().into(), json!(value.trim()));
            }
            one.insert("headers".into(), headers.into());
        }
        vec![Value::Object(one)]
    } else {
        args.responses
            .iter()
            .map(|r| {
                serde_json::from_str(r).map_err(|e| format!("--response {r:?} is not JSON: {e}"))
            })
            .collect::<Result<_, _>>()?
    };
    stub.insert("responses".into(), responses.into());
    if let Some(then) = &args.then {
        stub.insert("then".into(), json!(then));
    }
    Ok(stub.into())
}

/// `eventual stubs`: one line per stub (or `--json`).
pub(crate) async fn stubs(args: StubsArgs) -> ExitCode {
    let stubs = match client(&args.target).stubs().await {
        Ok(stubs) => stubs,
        Err(e) => return failed(&e),
    };
    if args.json {
        let out = json!({ "stubs": stubs });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    for info in &stubs {
        let target = match (&info.stub.key, &info.stub.prefix) {
            (Some(key), _) => format!("key {key}"),
            (None, Some(prefix)) => format!("prefix {prefix}"),
            (None, None) => String::new(),
        };
        let script: Vec<String> = info
            .stub
            .responses
            .iter()
            .map(|r| {
                let mut one = if r.drop {
                    "drop".to_owned()
                } else {
                    r.status.to_string()
                };
                if r.times > 1 {
                    one.push_str(&format!("x{}", r.times));
                }
                if let Some(delay) = r.delay {
                    one.push_str(&format!(" after {}", humantime::format_duration(delay)));
                }
                one
            })
            .collect();
        println!(
            "{}\t{target}\t{} then {}\t{} hits",
            info.id,
            script.join(", "),
            info.stub.then.as_str(),
            info.hits
        );
    }
    ExitCode::SUCCESS
}
