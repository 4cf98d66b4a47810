//! The KV store over HTTP, with raw requests against real `raftkv`
//! processes: binary keys and values byte for byte, ETags and conditional
//! writes (412), the size limits (413), range pages, transactions, and the
//! cluster page's command box.

#[allow(dead_code)]
mod common;

use common::http::{Conn, Reply};
use common::procs::ProcCluster;
use raftkv::http::json::{self, Json};
use raftkv::transport::line::base64_decode;

/// Percent-encodes every byte.
fn path_of(key: &[u8]) -> String {
    let escaped: String = key.iter().map(|b| format!("%{b:02X}")).collect();
    format!("/kv/{escaped}")
}

/// Sends one request with extra header lines (each ending in `\r\n`).
fn send(c: &mut Conn, method: &str, path: &str, headers: &str, body: &[u8]) -> Reply {
    let mut bytes = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\n{headers}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    c.send(&bytes);
    c.read_reply(false).expect("a response")
}

fn number(j: &Json, name: &str) -> u64 {
    j.get(name)
        .and_then(Json::as_u64)
        .unwrap_or_else(|| panic!("{name} in {j}"))
}

/// Reads every key under `prefix`, `limit` a page, following `next`.
fn all_pages(c: &mut Conn, prefix: &str, limit: u64) -> (Vec<String>, usize) {
    let (mut keys, mut pages) = (Vec::new(), 0);
    let mut start = String::new();
    loop {
        let path = format!("/kv?prefix={prefix}&limit={limit}{start}");
        let r = c.request("GET", &path, None);
        assert_eq!(r.status, 200, "{}", r.text());
        let page = r.json();
        pages += 1;
        let Some(Json::Array(kvs)) = page.get("kvs") else {
            panic!("{page}")
        };
        for kv in kvs {
            keys.push(kv.get("key").and_then(Json::as_str).unwrap().to_string());
        }
        match (page.get("more"), page.get("next").and_then(Json::as_str)) {
            (Some(Json::Bool(true)), Some(next)) => start = format!("&start={next}"),
            _ => return (keys, pages),
        }
    }
}

/// Reference: RFC 9110 §13.1 (If-Match, If-None-Match), §15.5.13 (412),
/// §15.5.14 (413); etcd's revisions and ranges.
#[test]
fn binary_values_conditional_writes_limits_and_ranges_over_http() {
    let cluster = ProcCluster::start(3, &[]);
    let leader = cluster.wait_for_leader();
    let mut c = Conn::open(&cluster.addr((leader + 1) % 3));

    // Every byte value, line breaks and NUL, in the key and the value.
    let key: Vec<u8> = [b'b', 0, b'\n', b'\r', 0xff, b'/', b' '].to_vec();
    let value: Vec<u8> = (0..=255u8).chain(*b"\r\n\n\0").collect();
    let r = send(&mut c, "PUT", &path_of(&key), "", &value);
    assert_eq!((r.status, r.text()), (200, "{\"ok\":true}\n".to_string()));
    let raw = c.request("GET", &format!("{}?raw", path_of(&key)), None);
    assert_eq!(raw.header("content-type"), Some("application/octet-stream"));
    assert_eq!(raw.body, value, "byte for byte");
    let accept = send(
        &mut c,
        "GET",
        &path_of(&key),
        "Accept: application/octet-stream\r\n",
        b"",
    );
    assert_eq!(accept.body, value);
    let j = c.request("GET", &path_of(&key), None).json();
    let b64 = |name: &str| {
        let text = j.get(name).and_then(Json::as_str).expect(name);
        base64_decode(text.as_bytes()).expect("base64")
    };
    assert_eq!(
        (b64("key_base64"), b64("value_base64")),
        (key.clone(), value)
    );
    let empty = send(&mut c, "PUT", "/kv/empty", "", b"");
    assert_eq!(empty.status, 200);
    let r = c.request("GET", "/kv/empty", None);
    assert_eq!(
        r.text(),
        "{\"key\":\"empty\",\"value\":\"\"}\n",
        "empty is a value"
    );

    // ETag = mod_revision; If-Match wins once, then loses with 412.
    let r = send(&mut c, "PUT", "/kv/config", "", b"v1");
    assert_eq!(r.status, 200);
    let r = c.request("GET", "/kv/config?meta", None);
    let etag = r.header("etag").expect("an ETag").to_string();
    let meta = r.json();
    let rev = number(&meta, "mod_revision");
    assert_eq!(etag, format!("\"{rev}\""));
    assert_eq!(
        (number(&meta, "version"), number(&meta, "create_revision")),
        (1, rev)
    );
    let if_match = format!("If-Match: {etag}\r\n");
    let won = send(&mut c, "PUT", "/kv/config", &if_match, b"v2");
    assert_eq!(won.status, 200, "{}", won.text());
    let new_etag = won.header("etag").expect("the new ETag").to_string();
    assert_eq!(new_etag, format!("\"{}\"", rev + 1));
    let lost = send(&mut c, "PUT", "/kv/config", &if_match, b"v3");
    assert_eq!(lost.status, 412, "{}", lost.text());
    assert_eq!(lost.header("etag"), Some(new_etag.as_str()));
    let lost = lost.json();
    assert_eq!(
        lost.get("error").and_then(Json::as_str),
        Some("PRECONDITION_FAILED")
    );
    assert_eq!(
        number(&lost, "mod_revision"),
        rev + 1,
        "the current revision"
    );
    let r = c.request("GET", "/kv/config", None);
    assert_eq!(
        r.text(),
        "{\"key\":\"config\",\"value\":\"v2\"}\n",
        "the loser wrote nothing"
    );
    let del = send(&mut c, "DELETE", "/kv/config", &if_match, b"");
    assert_eq!(del.status, 412);
    let del = send(
        &mut c,
        "DELETE",
        "/kv/config",
        &format!("If-Match: {new_etag}\r\n"),
        b"",
    );
    assert_eq!(del.status, 200);
    let create = "If-None-Match: *\r\n";
    assert_eq!(send(&mut c, "PUT", "/kv/lock", create, b"me").status, 200);
    let taken = send(&mut c, "PUT", "/kv/lock", create, b"you");
    assert_eq!(taken.status, 412);
    let absent = send(&mut c, "PUT", "/kv/nothing", "If-Match: \"1\"\r\n", b"x");
    assert_eq!(
        (absent.status, number(&absent.json(), "mod_revision")),
        (412, 0)
    );
    assert_eq!(
        send(&mut c, "PUT", "/kv/x", "If-Match: W/\"1\"\r\n", b"x").status,
        400
    );

    // The limits: 1 MiB values pass, one byte more is 413; 1024-byte keys.
    let max = vec![0xa5; 1 << 20];
    assert_eq!(send(&mut c, "PUT", "/kv/max", "", &max).status, 200);
    assert_eq!(c.request("GET", "/kv/max?raw", None).body, max);
    // (The server answers from the headers, and closes without reading the body.)
    let over = (1 << 20) + 1;
    c.send(
        format!("PUT /kv/over HTTP/1.1\r\nHost: test\r\nContent-Length: {over}\r\n\r\n").as_bytes(),
    );
    let r = c.read_reply(false).expect("a response");
    assert_eq!((r.status, r.error_code()), (413, "TOO_LARGE".into()));
    let mut c = Conn::open(&cluster.addr(leader)); // a 413 closes the connection
    let long = format!("/kv/{}", "k".repeat(1025));
    let r = send(&mut c, "PUT", &long, "", b"v");
    assert_eq!((r.status, r.error_code()), (413, "TOO_LARGE".into()));
    assert_eq!(
        send(
            &mut c,
            "PUT",
            &format!("/kv/{}", "k".repeat(1024)),
            "",
            b"v"
        )
        .status,
        200
    );

    // Range pages at every boundary: 25 keys, 10 and 5 and 25 and 26 a page.
    for i in 0..25 {
        let r = send(&mut c, "PUT", &format!("/kv/page/{i:02}"), "", b"v");
        assert_eq!(r.status, 200);
    }
    send(&mut c, "PUT", "/kv/pagf", "", b"just past the prefix");
    let wanted: Vec<String> = (0..25).map(|i| format!("page/{i:02}")).collect();
    for (limit, pages) in [(10, 3), (5, 5), (25, 1), (26, 1), (1, 25)] {
        assert_eq!(
            all_pages(&mut c, "page/", limit),
            (wanted.clone(), pages),
            "limit {limit}"
        );
    }
    let count = c.request("GET", "/kv?prefix=page/&count", None).json();
    assert_eq!(number(&count, "count"), 25);
    let keys = c
        .request("GET", "/kv?start=page/05&end=page/07&keys", None)
        .json();
    let Some(Json::Array(kvs)) = keys.get("kvs") else {
        panic!("{keys}")
    };
    assert_eq!(kvs.len(), 2, "{keys}");
    assert!(
        kvs.iter().all(|kv| kv.get("value").is_none()),
        "keys only: {keys}"
    );
    assert_eq!(c.request("GET", "/kv?frob=1", None).status, 400);

    // Transactions, batches, and the page's command box.
    let txn = br#"{"compare":[{"key":"lock","target":"value","op":"=","value":"me"}],
        "then":[{"op":"put","key":"owner","value":"me"},{"op":"get","key":"lock"}],
        "else":[{"op":"get","key":"lock"}]}"#;
    let r = send(&mut c, "POST", "/txn", "", txn);
    let result = json::parse(&r.text()).expect("JSON");
    assert_eq!(
        result.get("succeeded"),
        Some(&Json::Bool(true)),
        "{}",
        r.text()
    );
    let bad = send(&mut c, "POST", "/txn", "", br#"{"then":[{"op":"frob"}]}"#);
    assert_eq!((bad.status, bad.error_code()), (400, "BAD_REQUEST".into()));
    let batch = br#"{"ops":[{"op":"delete","key":"lock"},{"op":"put","key":"b","value":"1"}]}"#;
    let r = send(&mut c, "POST", "/batch", "", batch);
    assert!(r.text().contains("\"deleted\":true"), "{}", r.text());
    for (line, answer) in [
        ("RANGE prefix=page/ count", "RANGE {"),
        ("GET owner meta", "RANGE {"),
        ("PUT64 a2V5 AP8=", "OK"),
        ("GET key", "VALUE64 AP8="),
        (r#"TXN {"then":[{"op":"get","key":"b"}]}"#, "TXN {"),
    ] {
        let r = send(&mut c, "POST", "/command", "", line.as_bytes());
        let reply = r
            .json()
            .get("reply")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string();
        assert_eq!(r.status, 200, "{line}: {reply}");
        assert!(reply.starts_with(answer), "{line}: {reply}");
    }

    // A serializable read on a follower says which revision it reflects.
    let mut follower = Conn::open(&cluster.addr((leader + 2) % 3));
    let r = follower.request("GET", "/kv/owner?serializable&meta", None);
    if r.status == 200 {
        assert!(number(&r.json(), "revision") >= number(&r.json(), "mod_revision"));
    } else {
        assert_eq!(r.status, 404, "not applied there yet: {}", r.text());
    }
}
