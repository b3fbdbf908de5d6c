//! Mail account primitives shared by the MTA (`postern`) and the panel (`postern-web`):
//! stored password schemes ([`password`]) and address syntax ([`addr`]). Pure, no IO.

pub mod addr;
pub mod password;
