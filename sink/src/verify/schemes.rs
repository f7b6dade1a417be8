//! The signature schemes: what each signs, where it puts the signature and how it is encoded.
//! Every comparison is HMAC-SHA256's constant-time `verify_slice`.

use std::time::Duration;

use axum::http::HeaderMap;
use base64::Engine as _;
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;

/// Why a signature did not verify (the record's `signature.reason`).
pub(crate) type Failure = String;

/// The MAC of `parts` (concatenated) under `key`.
fn mac(key: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
    // HMAC takes a key of any length.
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    for p in parts {
        m.update(p);
    }
    m
}

/// Whether `tag` is the MAC of `parts` under `key` (constant time).
fn matches(key: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
    mac(key, parts).verify_slice(tag).is_ok()
}

/// The MAC of `parts`, as bytes (to sign in tests).
#[cfg(test)]
pub(crate) fn sign(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    mac(key, parts).finalize().into_bytes().to_vec()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, Failure> {
    let value = headers
        .get(name)
        .ok_or_else(|| format!("missing header {name}"))?;
    value
        .to_str()
        .map(str::trim)
        .map_err(|_| format!("bad format: header {name} is not ASCII text"))
}

pub(crate) fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
pub(crate) fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_b64(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// A timestamp in seconds since the epoch, within `tolerance` of `now` (either side).
fn fresh(ts: &str, now: i64, tolerance: Duration) -> Result<(), Failure> {
    let t: i64 = ts
        .parse()
        .map_err(|_| format!("bad format: timestamp {ts:?} is not whole seconds"))?;
    let tol = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    if (now - t).abs() > tol {
        return Err(format!(
            "timestamp outside tolerance: {t} is {}s from the sink's clock (tolerance {}s)",
            now - t,
            tol
        ));
    }
    Ok(())
}

const MISMATCH: &str = "mismatch: the signature is not the HMAC of this body";

/// GitHub: `X-Hub-Signature-256: sha256=<hex HMAC of the body>`.
pub(crate) fn github(secret: &[u8], headers: &HeaderMap, body: &[u8]) -> Result<(), Failure> {
    hmac_header(
        secret,
        headers,
        body,
        "x-hub-signature-256",
        Encoding::Hex,
        Some("sha256="),
    )
}

/// Shopify: `X-Shopify-Hmac-Sha256: <base64 HMAC of the body>`.
pub(crate) fn shopify(secret: &[u8], headers: &HeaderMap, body: &[u8]) -> Result<(), Failure> {
    hmac_header(
        secret,
        headers,
        body,
        "x-shopify-hmac-sha256",
        Encoding::Base64,
        None,
    )
}

/// How a plain HMAC is written in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// Lower- or upper-case hex.
    Hex,
    /// Standard base64.
    Base64,
}

/// `hmac-sha256`: `<header>: [prefix]<hex|base64 HMAC of the body>`.
pub(crate) fn hmac_header(
    secret: &[u8],
    headers: &HeaderMap,
    body: &[u8],
    name: &str,
    encoding: Encoding,
    prefix: Option<&str>,
) -> Result<(), Failure> {
    let value = header(headers, name)?;
    let value = match prefix {
        Some(p) => value
            .strip_prefix(p)
            .ok_or_else(|| format!("bad format: header {name} does not start with {p:?}"))?,
        None => value,
    };
    let tag = match encoding {
        Encoding::Hex => decode_hex(value),
        Encoding::Base64 => decode_b64(value),
    }
    .ok_or_else(|| format!("bad format: header {name} is not {encoding:?}").to_lowercase())?;
    if matches(secret, &[body], &tag) {
        Ok(())
    } else {
        Err(MISMATCH.into())
    }
}

/// Stripe: `Stripe-Signature: t=<ts>,v1=<hex HMAC of "{t}.{body}">[,v1=…]`; any `v1` may match.
pub(crate) fn stripe(
    secret: &[u8],
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<(), Failure> {
    let value = header(headers, "stripe-signature")?;
    let mut ts = None;
    let mut sigs = Vec::new();
    for item in value.split(',') {
        match item.trim().split_once('=') {
            Some(("t", t)) => ts = Some(t),
            Some(("v1", s)) => sigs.push(s),
            _ => {}
        }
    }
    let ts = ts.ok_or("bad format: Stripe-Signature has no t=")?;
    if sigs.is_empty() {
        return Err("bad format: Stripe-Signature has no v1= signature".into());
    }
    let signed = sigs
        .iter()
        .filter_map(|s| decode_hex(s))
        .any(|tag| matches(secret, &[ts.as_bytes(), b".", body], &tag));
    if !signed {
        return Err(MISMATCH.into());
    }
    fresh(ts, now, tolerance)
}

/// Slack: `X-Slack-Signature: v0=<hex HMAC of "v0:{ts}:{body}">`,
/// `X-Slack-Request-Timestamp: <ts>`.
pub(crate) fn slack(
    secret: &[u8],
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<(), Failure> {
    let ts = header(headers, "x-slack-request-timestamp")?;
    let sig = header(headers, "x-slack-signature")?;
    let tag = sig
        .strip_prefix("v0=")
        .and_then(decode_hex)
        .ok_or("bad format: X-Slack-Signature is not v0=<hex>")?;
    if !matches(secret, &[b"v0:", ts.as_bytes(), b":", body], &tag) {
        return Err(MISMATCH.into());
    }
    fresh(ts, now, tolerance)
}

/// Standard Webhooks (as Svix): `webhook-signature: v1,<base64 HMAC of "{id}.{ts}.{body}">`
/// entries separated by spaces, any may match; the key is the base64 after `whsec_`.
pub(crate) fn standard_webhooks(
    key: &[u8],
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<(), Failure> {
    let id = header(headers, "webhook-id")?;
    let ts = header(headers, "webhook-timestamp")?;
    let sig = header(headers, "webhook-signature")?;
    let tags: Vec<Vec<u8>> = sig
        .split(' ')
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(decode_b64)
        .collect();
    if tags.is_empty() {
        return Err("bad format: webhook-signature has no v1,<base64> entry".into());
    }
    let parts: [&[u8]; 5] = [id.as_bytes(), b".", ts.as_bytes(), b".", body];
    if !tags.iter().any(|tag| matches(key, &parts, tag)) {
        return Err(MISMATCH.into());
    }
    fresh(ts, now, tolerance)
}

/// The key of a Standard Webhooks secret: the base64 after an optional `whsec_`.
pub(crate) fn standard_webhooks_key(secret: &str) -> Option<Vec<u8>> {
    decode_b64(secret.strip_prefix("whsec_").unwrap_or(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    const FIVE_MIN: Duration = Duration::from_secs(300);

    #[test]
    fn github_documented_vector() {
        // From GitHub's "Validating webhook deliveries": secret "It's a Secret to Everybody",
        // payload "Hello, World!".
        let h = headers(&[(
            "x-hub-signature-256",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        )]);
        assert_eq!(
            github(b"It's a Secret to Everybody", &h, b"Hello, World!"),
            Ok(())
        );
        let err = github(b"It's a Secret to Everybody", &h, b"Hello, World?").unwrap_err();
        assert!(err.starts_with("mismatch"), "{err}");
        let err = github(b"x", &HeaderMap::new(), b"").unwrap_err();
        assert!(err.starts_with("missing header"), "{err}");
        let bad = headers(&[("x-hub-signature-256", "757107ea")]);
        assert!(
            github(b"x", &bad, b"")
                .unwrap_err()
                .starts_with("bad format")
        );
    }

    #[test]
    fn standard_webhooks_svix_vector() {
        // The example of the Standard Webhooks / Svix libraries' tests.
        let key = standard_webhooks_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let h = headers(&[
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", "1614265330"),
            (
                "webhook-signature",
                "v1,bogus v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
        ]);
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            standard_webhooks(&key, &h, body, 1614265330, FIVE_MIN),
            Ok(())
        );
        let err = standard_webhooks(&key, &h, body, 1614265330 + 301, FIVE_MIN).unwrap_err();
        assert!(err.starts_with("timestamp outside tolerance"), "{err}");
        let err = standard_webhooks(&key, &h, br#"{"test": 2432232315}"#, 1614265330, FIVE_MIN)
            .unwrap_err();
        assert!(err.starts_with("mismatch"), "{err}");
    }

    #[test]
    fn stripe_and_slack_sign_the_timestamp() {
        let body = b"{\"a\":1}";
        let sig = encode_hex(&sign(b"whsec_s", &[b"1700000000", b".", body]));
        let h = headers(&[("stripe-signature", &format!("t=1700000000,v1=00,v1={sig}"))]);
        assert_eq!(stripe(b"whsec_s", &h, body, 1700000100, FIVE_MIN), Ok(()));
        assert!(
            stripe(b"whsec_s", &h, body, 1700000400, FIVE_MIN)
                .unwrap_err()
                .starts_with("timestamp outside tolerance")
        );
        assert!(
            stripe(b"other", &h, body, 1700000000, FIVE_MIN)
                .unwrap_err()
                .starts_with("mismatch")
        );

        // Slack's documented example ("Verifying requests from Slack").
        let slack_body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let h = headers(&[
            ("x-slack-request-timestamp", "1531420618"),
            (
                "x-slack-signature",
                "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
            ),
        ]);
        let secret = b"8f742231b10e8888abcd99yyyzzz85a5";
        assert_eq!(slack(secret, &h, slack_body, 1531420618, FIVE_MIN), Ok(()));
        assert!(slack(secret, &h, slack_body, 1531420618 + 3600, FIVE_MIN).is_err());
    }

    #[test]
    fn shopify_and_plain_hmac() {
        let body = b"{\"id\":1}";
        let b64 = base64::engine::general_purpose::STANDARD.encode(sign(b"k", &[body]));
        let h = headers(&[("x-shopify-hmac-sha256", &b64)]);
        assert_eq!(shopify(b"k", &h, body), Ok(()));
        assert!(shopify(b"k", &h, b"{\"id\":2}").is_err());
        let hex = encode_hex(&sign(b"k", &[body]));
        let h = headers(&[("x-sig", &format!("sha256={hex}"))]);
        assert_eq!(
            hmac_header(b"k", &h, body, "x-sig", Encoding::Hex, Some("sha256=")),
            Ok(())
        );
        assert!(
            hmac_header(b"k", &h, body, "x-sig", Encoding::Hex, None)
                .unwrap_err()
                .starts_with("bad format")
        );
    }
}
