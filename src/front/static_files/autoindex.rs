//! nginx's `autoindex on`: an HTML listing of a directory without an index
//! file, only when the route asks for it (`autoindex = true`).
//!
//! The directory is read through the descriptor `resolve::open` returned,
//! never by path again, so the listing is of exactly the directory that
//! was checked. Hidden names are left out unless the route serves them.
//! Symlinks are listed as what they are (not followed), so a link that
//! points outside the root reveals nothing about its target.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use nix::fcntl::AtFlags;
use nix::sys::stat::{fstatat, SFlag};
use percent_encoding::{percent_encode, AsciiSet, CONTROLS};

/// Bytes escaped in an `href` (a single path segment).
const HREF: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'\'')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

struct Item {
    name: Vec<u8>,
    dir: bool,
    size: i64,
    mtime: i64,
}

/// The listing of `dir` (an open directory), titled with `url_path`
/// (which ends in `/`).
pub(crate) fn render(dir: File, url_path: &str, allow_hidden: bool) -> io::Result<Bytes> {
    let stat_fd: OwnedFd = dir.try_clone()?.into();
    let mut d = nix::dir::Dir::from_fd(OwnedFd::from(dir)).map_err(io::Error::from)?;
    let mut items = Vec::new();
    for entry in d.iter() {
        let entry = entry.map_err(io::Error::from)?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        if name.starts_with(b".") && !allow_hidden && name != b".well-known" {
            continue;
        }
        let Ok(st) = fstatat(&stat_fd, entry.file_name(), AtFlags::AT_SYMLINK_NOFOLLOW) else {
            continue; // gone since readdir
        };
        let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        items.push(Item {
            name: name.to_vec(),
            dir: kind == SFlag::S_IFDIR,
            size: st.st_size,
            mtime: st.st_mtime,
        });
    }
    // Directories first, then by name (nginx's order).
    items.sort_by(|a, b| b.dir.cmp(&a.dir).then_with(|| a.name.cmp(&b.name)));

    let title = html(url_path.as_bytes());
    let mut out = format!(
        "<html>\r\n<head><title>Index of {title}</title></head>\r\n<body>\r\n\
         <h1>Index of {title}</h1><hr><pre><a href=\"../\">../</a>\r\n"
    );
    for item in &items {
        let slash = if item.dir { "/" } else { "" };
        let href = percent_encode(&item.name, HREF).to_string();
        let shown = format!("{}{slash}", String::from_utf8_lossy(&item.name));
        // nginx cuts names to 50 columns.
        let cut: String = if shown.chars().count() > 50 {
            shown.chars().take(47).collect::<String>() + "..>"
        } else {
            shown.clone()
        };
        let pad = 51usize.saturating_sub(cut.chars().count());
        let size = if item.dir {
            "-".to_string()
        } else {
            item.size.to_string()
        };
        out.push_str(&format!(
            "<a href=\"{href}{slash}\">{}</a>{:pad$}{} {:>19}\r\n",
            html(cut.as_bytes()),
            "",
            date(item.mtime),
            size,
        ));
    }
    out.push_str("</pre><hr></body>\r\n</html>\r\n");
    Ok(Bytes::from(out))
}

/// `14-Nov-2023 22:13`, nginx's listing date.
fn date(secs: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64);
    // "Tue, 14 Nov 2023 22:13:20 GMT"
    let s = httpdate::fmt_http_date(t);
    let p: Vec<&str> = s.split(' ').collect();
    match p.as_slice() {
        [_, day, mon, year, time, _] => format!("{day}-{mon}-{year} {}", &time[..5]),
        _ => s,
    }
}

/// HTML-escapes (lossily decoded) bytes.
fn html(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    for c in String::from_utf8_lossy(b).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn lists_dirs_first_escaped_without_hidden() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("sub")).unwrap();
        fs::write(tmp.path().join("b.txt"), "12345").unwrap();
        fs::write(tmp.path().join("a <&> \"q\".txt"), "").unwrap();
        fs::write(tmp.path().join(".env"), "SECRET=1").unwrap();
        std::os::unix::fs::symlink("/etc", tmp.path().join("link")).unwrap();
        let page = render(File::open(tmp.path()).unwrap(), "/s/<x>/", false).unwrap();
        let page = std::str::from_utf8(&page).unwrap();
        assert!(
            page.contains("<title>Index of /s/&lt;x&gt;/</title>"),
            "{page}"
        );
        assert!(!page.contains(".env"), "{page}");
        let sub = page.find("href=\"sub/\"").unwrap();
        let b = page.find("href=\"b.txt\"").unwrap();
        assert!(sub < b);
        assert!(
            page.contains(
                "href=\"a%20%3C%26%3E%20%22q%22.txt\">a &lt;&amp;&gt; &quot;q&quot;.txt</a>"
            ),
            "{page}"
        );
        // The symlink is listed as a link (not a directory).
        assert!(page.contains("href=\"link\""), "{page}");
        let with_hidden = render(File::open(tmp.path()).unwrap(), "/s/", true).unwrap();
        assert!(std::str::from_utf8(&with_hidden).unwrap().contains(".env"));
    }

    #[test]
    fn dates() {
        assert_eq!(date(1_700_000_000), "14-Nov-2023 22:13");
    }
}
