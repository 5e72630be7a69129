//! SaslHandshake once a connection is authenticated, or on a PLAINTEXT listener: ILLEGAL_SASL_STATE
//! (34), as Kafka answers (busbar does not re-authenticate, KIP-368). Before authentication on a
//! SASL listener the handshake is served by `sasl`.

use crate::sasl::ILLEGAL_SASL_STATE;
use kafka_protocol::messages::SaslHandshakeResponse;

pub fn handle() -> SaslHandshakeResponse {
    let mut r = SaslHandshakeResponse::default();
    r.error_code = ILLEGAL_SASL_STATE;
    r
}
