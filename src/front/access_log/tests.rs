use super::render::{json_string, nginx_escape};
use super::*;

#[test]
fn clf_dates() {
    assert_eq!(clf_time(UNIX_EPOCH), "01/Jan/1970:00:00:00 +0000");
    // 2026-11-24T04:11:34Z
    let t = UNIX_EPOCH + Duration::from_secs(1_795_493_494);
    assert_eq!(clf_time(t), "24/Nov/2026:04:11:34 +0000");
    let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
    assert_eq!(clf_time(leap), "29/Feb/2000:00:00:00 +0000");
}

fn esc(b: &[u8]) -> String {
    let mut v = Vec::new();
    nginx_escape(&mut v, b);
    String::from_utf8(v).unwrap()
}

fn js(b: &[u8]) -> String {
    let mut v = Vec::new();
    json_string(&mut v, b);
    String::from_utf8(v).unwrap()
}

#[test]
fn escaping() {
    assert_eq!(esc(b""), "-");
    assert_eq!(esc(b"a\"b"), "a\\x22b");
    assert_eq!(esc(b"x\ny"), "x\\x0Ay");
    assert_eq!(esc(b"a\\b"), "a\\x5Cb");
    assert_eq!(esc("café".as_bytes()), "caf\\xC3\\xA9");
    assert_eq!(esc(b"\xff\x7f"), "\\xFF\\x7F");
    assert_eq!(js(b"a\"\\\n"), "\"a\\\"\\\\\\n\"");
    assert_eq!(js("café \u{1}".as_bytes()), "\"café \\u0001\"");
    // Invalid UTF-8: the text \xHH, between valid runs.
    assert_eq!(js(b"a\xffb\xc3"), "\"a\\\\xFFb\\\\xC3\"");
    assert_eq!(js(b"\xe9t\xc3\xa9"), "\"\\\\xE9t\u{e9}\"");
}

fn entry() -> Entry {
    let mut e = Entry {
        remote: "10.1.2.3:5555".parse().unwrap(),
        peer: "10.9.9.9:4444".parse().unwrap(),
        method: Method::POST,
        uri: "/p\"a/th?q=1&x=\\".parse().unwrap(),
        version: Version::HTTP_11,
        referer: None,
        user_agent: Some(HeaderValue::from_bytes(b"ua \xff\"x").unwrap()),
        host: Some(HeaderValue::from_static("example.com")),
        request_id: Some(HeaderValue::from_static("rid-1")),
        tls_version: Some("TLSv1.3"),
        worker_pid: 0,
        upstream: None,
        upstream_addr: None,
        status: 0,
        route: Route::Front,
        bytes_in: 0,
        bytes: 0,
        duration: Duration::ZERO,
        time: UNIX_EPOCH,
    };
    e.status = 201;
    e.route = Route::App;
    e.bytes = 12;
    e.bytes_in = 3;
    e.duration = Duration::from_micros(1500);
    e.worker_pid = 77;
    e.upstream = Some(Duration::from_micros(900));
    e.time = UNIX_EPOCH + Duration::from_millis(1_795_493_494_007);
    e
}

fn line(format: &AccessFormat) -> String {
    let mut out = Vec::new();
    render(&mut out, &entry(), format, &mut Clock::default());
    String::from_utf8(out).unwrap()
}

#[test]
fn combined_line() {
    assert_eq!(
        line(&AccessFormat::Combined),
        "10.1.2.3 - - [24/Nov/2026:04:11:34 +0000] \"POST /p\\x22a/th?q=1&x=\\x5C HTTP/1.1\" 201 12 \"-\" \"ua \\xFF\\x22x\" rid-1\n"
    );
}

#[test]
fn json_line() {
    assert_eq!(
        line(&AccessFormat::Json),
        "{\"time\":\"2026-11-24T04:11:34.007Z\",\"remote_addr\":\"10.1.2.3\",\"remote_port\":5555,\
         \"request_id\":\"rid-1\",\"method\":\"POST\",\"path\":\"/p\\\"a/th\",\"query\":\"q=1&x=\\\\\",\
         \"protocol\":\"HTTP/1.1\",\"status\":201,\"bytes\":12,\"bytes_in\":3,\"duration_us\":1500,\
         \"referer\":null,\"user_agent\":\"ua \\\\xFF\\\"x\",\"host\":\"example.com\",\"route\":\"app\",\
         \"worker_pid\":77,\"upstream_us\":900,\"upstream_addr\":null,\"tls_version\":\"TLSv1.3\"}\n"
    );
}

#[test]
fn custom_line() {
    let f = crate::config::log_format::parse_format(
        "$remote_addr:$remote_port $request_id [$time] \"$request\" $status $bytes/$bytes_in \
         $duration_us $request_time $upstream_us $upstream_response_time $worker_pid $route \
         $tls_version $host $http_referer \"$user_agent\" $query",
    )
    .unwrap();
    assert_eq!(
        line(&f),
        "10.1.2.3:5555 rid-1 [2026-11-24T04:11:34.007Z] \"POST /p\\x22a/th?q=1&x=\\x5C HTTP/1.1\" \
         201 12/3 1500 0.002 900 0.001 77 app TLSv1.3 example.com - \"ua \\xFF\\x22x\" q=1&x=\\x5C\n"
    );
}
