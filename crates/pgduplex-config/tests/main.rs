//! Integration tests of `pgduplex-config`: whole files in, `Config` or errors out.
//! One test binary with a module per area (keeps link time down).

mod support;

mod env;
mod errors;
mod onetimecopy;
mod passwords;
mod tables;
mod tls;
mod valid;
