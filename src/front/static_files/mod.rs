//! Static file serving for `[[static]]` routes.
