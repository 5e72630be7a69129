//! SaslAuthenticate once a connection is authenticated, or on a PLAINTEXT listener:
//! ILLEGAL_SASL_STATE (34), as Kafka answers. Before authentication on a SASL listener the tokens
//! are served by `sasl`.

use super::sb;
use crate::sasl::ILLEGAL_SASL_STATE;
use kafka_protocol::messages::SaslAuthenticateResponse;

pub fn handle() -> SaslAuthenticateResponse {
    let mut r = SaslAuthenticateResponse::default();
    r.error_code = ILLEGAL_SASL_STATE;
    r.error_message = Some(sb("SaslAuthenticate is not expected on this connection"));
    r
}
