//! The PROXY protocol header parser (`edge::front::proxy_protocol::parse`),
//! fed whatever a peer can send first: no panic; a whole header never
//! claims more bytes than it was given; a prefix of a whole header is
//! "need more" or the same header, never an error.
#![no_main]

use edge::front::proxy_protocol::parse::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(Some((header, len))) => {
            assert!(len <= data.len() && len > 0, "{len} of {}", data.len());
            // The same header whatever follows it.
            let again = parse(&data[..len]).expect("the header alone parses");
            assert_eq!(again, Some((header, len)));
            // Every shorter prefix only asks for more.
            for cut in [0, len / 2, len.saturating_sub(1)] {
                if cut < len {
                    assert_eq!(parse(&data[..cut]), Ok(None), "prefix of {cut} bytes");
                }
            }
        }
        Ok(None) => {}
        Err(_) => {}
    }
});
