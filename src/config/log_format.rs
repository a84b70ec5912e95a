//! `[log] format`: `"combined"` (nginx), `"json"` (one object per line) or a
//! template of nginx-like `$variables`, e.g.
//!
//! ```text
//! format = "$remote_addr $request_id [$time_local] \"$request\" $status $bytes $duration_us"
//! ```
//!
//! `$name` takes the longest run of `[a-z0-9_]`; `${name}` delimits a name
//! followed by such characters; `$$` is a literal `$`. An unknown name is a
//! configuration error that lists the known ones. Parsing is pure; the
//! front's access log renders the pieces.

/// One value an access log line can show. Names (and nginx aliases) are in
/// [`VARIABLES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogVar {
    /// Client IP address.
    RemoteAddr,
    /// Client port.
    RemotePort,
    /// The connection's peer address: a trusted proxy or the load
    /// balancer that sent the PROXY header (else the client itself).
    PeerAddr,
    /// Always `-` (nginx's `$remote_user`, for pasted formats).
    RemoteUser,
    /// `24/Nov/2026:04:11:34 +0000` (nginx `$time_local`, UTC).
    TimeLocal,
    /// `2026-11-24T04:11:34.123Z`.
    TimeIso8601,
    /// `GET`.
    Method,
    /// The path as received (still percent-encoded), without the query.
    Path,
    /// The query string without `?` (empty: `-`).
    Query,
    /// Path and query as received (nginx `$request_uri`).
    Target,
    /// `GET /path?q HTTP/1.1` (nginx `$request`).
    Request,
    /// `HTTP/1.1`.
    Protocol,
    /// Response status.
    Status,
    /// Response body bytes sent (nginx `$body_bytes_sent`).
    Bytes,
    /// Request body bytes received.
    BytesIn,
    /// From the request head to the end of the response, in microseconds.
    DurationUs,
    /// The same in seconds with millisecond resolution (nginx `$request_time`).
    RequestTime,
    Referer,
    UserAgent,
    /// `Host` (or `:authority`).
    Host,
    /// The request id (the client's `X-Request-Id` if valid, else generated).
    RequestId,
    /// The worker that answered (`-` when no worker did).
    WorkerPid,
    /// From handing the request to the workers to its response head
    /// (queue wait included), in microseconds (`-` when no worker did).
    UpstreamUs,
    /// The same in seconds (nginx `$upstream_response_time`).
    UpstreamTime,
    /// The `[[proxy]]` upstream that answered (the last one tried), e.g.
    /// `127.0.0.1:9000` (nginx `$upstream_addr`; `-` when none).
    UpstreamAddr,
    /// `TLSv1.3`, `TLSv1.2`, or `-` on plain HTTP (nginx `$ssl_protocol`).
    TlsVersion,
    /// Who answered: `app`, `static`, `redirect`, `health` or `front` (an
    /// error the front answered itself).
    Route,
}

/// Variable names, edge's first, then nginx's aliases.
pub const VARIABLES: &[(&str, LogVar)] = &[
    ("remote_addr", LogVar::RemoteAddr),
    ("remote_port", LogVar::RemotePort),
    ("peer_addr", LogVar::PeerAddr),
    ("realip_remote_addr", LogVar::PeerAddr),
    ("remote_user", LogVar::RemoteUser),
    ("time", LogVar::TimeIso8601),
    ("time_iso8601", LogVar::TimeIso8601),
    ("time_local", LogVar::TimeLocal),
    ("method", LogVar::Method),
    ("request_method", LogVar::Method),
    ("path", LogVar::Path),
    ("uri", LogVar::Path),
    ("query", LogVar::Query),
    ("args", LogVar::Query),
    ("query_string", LogVar::Query),
    ("request_uri", LogVar::Target),
    ("request", LogVar::Request),
    ("protocol", LogVar::Protocol),
    ("server_protocol", LogVar::Protocol),
    ("status", LogVar::Status),
    ("bytes", LogVar::Bytes),
    ("body_bytes_sent", LogVar::Bytes),
    ("bytes_in", LogVar::BytesIn),
    ("duration_us", LogVar::DurationUs),
    ("request_time", LogVar::RequestTime),
    ("referer", LogVar::Referer),
    ("http_referer", LogVar::Referer),
    ("user_agent", LogVar::UserAgent),
    ("http_user_agent", LogVar::UserAgent),
    ("host", LogVar::Host),
    ("http_host", LogVar::Host),
    ("request_id", LogVar::RequestId),
    ("worker_pid", LogVar::WorkerPid),
    ("upstream_us", LogVar::UpstreamUs),
    ("upstream_response_time", LogVar::UpstreamTime),
    ("upstream_addr", LogVar::UpstreamAddr),
    ("tls_version", LogVar::TlsVersion),
    ("ssl_protocol", LogVar::TlsVersion),
    ("route", LogVar::Route),
];

/// A piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogPiece {
    Literal(String),
    Var(LogVar),
}

/// The access log line format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessFormat {
    /// nginx's `combined`, then the request id (as nginx users append
    /// `$request_id`).
    Combined,
    /// One JSON object per line; its keys are the first name of each
    /// variable (`remote_addr`, `time`, `method`, ...).
    Json,
    /// A template.
    Custom(Vec<LogPiece>),
}

/// `combined` | `json` | a template with `$variables`.
pub fn parse_format(text: &str) -> Result<AccessFormat, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "combined" => return Ok(AccessFormat::Combined),
        "json" => return Ok(AccessFormat::Json),
        _ => {}
    }
    if !text.contains('$') {
        return Err(format!(
            "\"{text}\": expected \"combined\", \"json\" or a template with $variables"
        ));
    }
    parse_template(text).map(AccessFormat::Custom)
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'
}

/// Split a template into literals and variables.
pub fn parse_template(text: &str) -> Result<Vec<LogPiece>, String> {
    if text.contains(['\n', '\r']) {
        return Err("a log format cannot contain a line break".into());
    }
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        literal.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        let (name, after) = if let Some(r) = rest.strip_prefix('$') {
            literal.push('$');
            rest = r;
            continue;
        } else if let Some(r) = rest.strip_prefix('{') {
            let end = r
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in \"{text}\""))?;
            (&r[..end], &r[end + 1..])
        } else {
            let end = rest.find(|c| !is_name_char(c)).unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        if name.is_empty() {
            return Err(format!(
                "a `$` without a variable name in \"{text}\" (write $$ for a literal $)"
            ));
        }
        let var = VARIABLES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                let known: Vec<&str> = VARIABLES.iter().map(|(n, _)| *n).collect();
                format!("unknown variable ${name}; known: {}", known.join(" "))
            })?;
        if !literal.is_empty() {
            pieces.push(LogPiece::Literal(std::mem::take(&mut literal)));
        }
        pieces.push(LogPiece::Var(var));
        rest = after;
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        pieces.push(LogPiece::Literal(literal));
    }
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;
    use LogPiece::{Literal, Var};

    #[test]
    fn keywords_and_templates() {
        assert_eq!(parse_format("combined"), Ok(AccessFormat::Combined));
        assert_eq!(parse_format(" JSON "), Ok(AccessFormat::Json));
        assert!(parse_format("xml").unwrap_err().contains("template"));
        assert_eq!(
            parse_format("$remote_addr [$time_local] ${status}xx $$ $request_id$path").unwrap(),
            AccessFormat::Custom(vec![
                Var(LogVar::RemoteAddr),
                Literal(" [".into()),
                Var(LogVar::TimeLocal),
                Literal("] ".into()),
                Var(LogVar::Status),
                Literal("xx $ ".into()),
                Var(LogVar::RequestId),
                Var(LogVar::Path),
            ])
        );
    }

    #[test]
    fn template_errors() {
        assert!(parse_template("$nope")
            .unwrap_err()
            .contains("unknown variable $nope"));
        assert!(parse_template("a $ b").unwrap_err().contains("$$"));
        assert!(parse_template("${status").unwrap_err().contains("unclosed"));
        assert!(parse_template("$status\n").is_err());
        // `$status_code` is one (unknown) name, not $status + "_code".
        assert!(parse_template("$status_code").is_err());
        assert_eq!(
            parse_template("${status}_code").unwrap(),
            vec![Var(LogVar::Status), Literal("_code".into())]
        );
    }

    fn load(text: &str) -> Result<crate::config::Config, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("site.toml");
        std::fs::write(&path, format!("[app]\nmodule = \"m:app\"\n{text}")).unwrap();
        crate::config::load(Some(&path), &crate::config::Overrides::default())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn observability_keys() {
        use crate::config::ErrorFormat;
        let c = load("[server]\nlisten = [\"127.0.0.1:8123\"]\n").unwrap();
        assert_eq!(c.log.error_format, ErrorFormat::Text);
        assert_eq!(c.log.request_id_header, "x-request-id");
        assert!(c.control_socket.unwrap().ends_with("edge-8123.sock"));
        let c = load(
            "[server]\ncontrol_socket = \"run/ctl.sock\"\n[log]\nerror_format = \"json\"\n\
             request_id_header = \"X-Correlation-ID\"\nformat = \"$status $request_id\"\n",
        )
        .unwrap();
        assert_eq!(c.log.error_format, ErrorFormat::Json);
        assert_eq!(c.log.request_id_header, "x-correlation-id");
        assert!(c.control_socket.unwrap().ends_with("run/ctl.sock"));
        assert_eq!(
            c.log.format,
            AccessFormat::Custom(vec![
                Var(LogVar::Status),
                Literal(" ".into()),
                Var(LogVar::RequestId)
            ])
        );
        assert!(load("[server]\ncontrol_socket = \"off\"\n")
            .unwrap()
            .control_socket
            .is_none());
        for (bad, key) in [
            ("[log]\nerror_format = \"xml\"\n", "log.error_format"),
            (
                "[log]\nrequest_id_header = \"bad header\"\n",
                "log.request_id_header",
            ),
            ("[log]\nformat = \"$nope\"\n", "log.format"),
            ("[server]\ncontrol_socket = \"\"\n", "server.control_socket"),
        ] {
            let e = load(bad).unwrap_err();
            assert!(e.contains(key), "{bad}: {e}");
        }
    }
}
