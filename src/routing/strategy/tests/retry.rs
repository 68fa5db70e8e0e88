//! Retries of one leaf: which statuses, how many, how long to wait.

use super::*;

fn retrying(retry: Value) -> JsonTree {
    tree(json!({"provider": "a", "retry": retry}))
}

fn after_429(wait_ms: u64) -> Outcome {
    Outcome::Status {
        code: 429,
        retry_after: Some(Duration::from_millis(wait_ms)),
    }
}

fn step(w: &mut Walk, t: &JsonTree, outcome: Outcome) -> Next {
    w.next(t, outcome, &env(), Instant::now(), BASE, 16, &mut || 0.0)
}

fn start(t: &JsonTree) -> Walk {
    Walk::start(t, &env(), Instant::now(), &mut || 0.0)
        .unwrap()
        .0
}

fn retry(ms: u64) -> Next {
    Next::Retry {
        leaf: LeafId(0),
        after: Duration::from_millis(ms),
    }
}

#[test]
fn retries_listed_codes_up_to_attempts_with_backoff() {
    let t = retrying(json!({"attempts": 2}));
    let mut w = start(&t);
    // Jitter 0: half of base * 2^(n-1).
    assert_eq!(step(&mut w, &t, status(500)), retry(50));
    assert_eq!(step(&mut w, &t, Outcome::ConnectError), retry(100));
    assert_eq!(w.retries(), 2);
    assert_eq!(step(&mut w, &t, status(500)), Next::Done);
    assert_eq!(w.retries(), 2);
}

#[test]
fn unlisted_codes_are_not_retried() {
    let t = retrying(json!({"attempts": 3, "on_status_codes": [503, 408]}));
    let mut w = start(&t);
    assert_eq!(step(&mut w, &t, status(500)), Next::Done);
    let mut w = start(&t);
    assert_eq!(step(&mut w, &t, Outcome::Timeout), retry(50));
    assert_eq!(step(&mut w, &t, status(200)), Next::Done);
    // The default codes leave out 408 (a timeout) and list 502 (an I/O error).
    let d = retrying(json!({"attempts": 3}));
    let mut w = start(&d);
    assert_eq!(step(&mut w, &d, Outcome::Timeout), Next::Done);
    let mut w = start(&d);
    assert_eq!(step(&mut w, &d, Outcome::Error), retry(50));
    let none = retrying(json!({"attempts": 0}));
    let mut w = start(&none);
    assert_eq!(step(&mut w, &none, status(429)), Next::Done);
}

#[test]
fn retry_after_is_honoured_and_capped() {
    let t = retrying(json!({"attempts": 5, "use_retry_after_header": true}));
    let mut w = start(&t);
    assert_eq!(step(&mut w, &t, after_429(1500)), retry(1500));
    assert_eq!(step(&mut w, &t, after_429(40_000)), retry(40_000));
    assert_eq!(w.waited(), Duration::from_millis(41_500));
    // 41.5 s + 20 s would pass the 60 s cap: no retry, the answer stands.
    assert_eq!(step(&mut w, &t, after_429(20_000)), Next::Done);
    assert_eq!(w.waited(), Duration::from_millis(41_500));
    // Exactly up to the cap is allowed.
    let mut w = start(&t);
    assert_eq!(step(&mut w, &t, after_429(41_500)), retry(41_500));
    assert_eq!(step(&mut w, &t, after_429(18_500)), retry(18_500));
    // A single wait of 60 s or more is never honoured.
    let mut w = start(&t);
    assert_eq!(step(&mut w, &t, after_429(60_000)), Next::Done);
}

#[test]
fn retry_after_only_for_429_and_503_when_enabled() {
    let on = retrying(json!({"attempts": 2, "use_retry_after_headers": true}));
    let mut w = start(&on);
    let answer = |code| Outcome::Status {
        code,
        retry_after: Some(Duration::from_secs(2)),
    };
    assert_eq!(step(&mut w, &on, answer(503)), retry(2000));
    assert_eq!(step(&mut w, &on, answer(500)), retry(100));
    let off = retrying(json!({"attempts": 2}));
    let mut w = start(&off);
    assert_eq!(step(&mut w, &off, answer(429)), retry(50));
    assert_eq!(w.waited(), Duration::ZERO);
    // Without the header, back-off.
    let mut w = start(&on);
    assert_eq!(step(&mut w, &on, status(429)), retry(50));
}

#[test]
fn capped_retry_after_still_falls_back() {
    let t = tree(json!({
        "strategy": {"mode": "fallback"},
        "retry": {"attempts": 2, "use_retry_after_header": true},
        "targets": [{}, {}]
    }));
    let mut w = start(&t);
    assert_eq!(
        step(&mut w, &t, after_429(90_000)),
        Next::Fallback { leaf: LeafId(1) }
    );
}

#[test]
fn backoff_values() {
    let s = Duration::from_secs(1);
    assert_eq!(backoff(1, s, 0.0), Duration::from_millis(500));
    assert_eq!(backoff(1, s, 1.0), Duration::from_secs(1));
    assert_eq!(backoff(3, s, 0.5), Duration::from_secs(3));
    assert_eq!(backoff(5, s, 1.0), Duration::from_secs(16));
    assert_eq!(backoff(6, s, 1.0), Duration::from_secs(30));
    assert_eq!(backoff(6, s, 0.0), Duration::from_secs(15));
    assert_eq!(backoff(100, s, 1.0), Duration::from_secs(30));
    assert_eq!(backoff(0, s, 1.0), Duration::from_secs(1));
    assert_eq!(backoff(2, s, -3.0), Duration::from_secs(1));
    assert_eq!(backoff(2, s, 9.0), Duration::from_secs(2));
    assert_eq!(backoff(2, s, f64::NAN), Duration::from_secs(2));
    assert_eq!(backoff(9, Duration::ZERO, 1.0), Duration::ZERO);
}

#[test]
fn retry_after_headers() {
    let parse = |headers: &[(&'static str, &'static str)]| {
        let h = headers.to_vec();
        retry_after(move |name| h.iter().find(|(k, _)| *k == name).map(|(_, v)| *v))
    };
    let ms = Duration::from_millis;
    assert_eq!(parse(&[]), None);
    assert_eq!(parse(&[("retry-after-ms", "1500")]), Some(ms(1500)));
    assert_eq!(
        parse(&[("retry-after-ms", " 2.5 ")]),
        Some(Duration::from_micros(2500))
    );
    assert_eq!(parse(&[("x-ms-retry-after-ms", "300")]), Some(ms(300)));
    assert_eq!(parse(&[("retry-after", "2")]), Some(ms(2000)));
    assert_eq!(parse(&[("retry-after", "0.25")]), Some(ms(250)));
    assert_eq!(
        parse(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]),
        None
    );
    assert_eq!(parse(&[("retry-after", "-1")]), None);
    let all = [
        ("retry-after", "9"),
        ("x-ms-retry-after-ms", "700"),
        ("retry-after-ms", "100"),
    ];
    assert_eq!(parse(&all), Some(ms(100)));
    assert_eq!(parse(&all[..2]), Some(ms(700)));
    // An unreadable header gives way to the next one.
    assert_eq!(
        parse(&[("retry-after-ms", "soon"), ("retry-after", "3")]),
        Some(ms(3000))
    );
    assert_eq!(parse(&[("retry-after", "1e400")]), None);
    assert_eq!(
        parse(&[("retry-after", "99999999999999999999999999")]),
        Some(Duration::MAX)
    );
}
