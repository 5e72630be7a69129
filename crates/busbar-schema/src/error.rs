//! The registry's errors, each carrying Confluent's `error_code` and HTTP status so the REST front
//! end maps them in one place without guessing. Messages follow Confluent's wording where clients
//! or people are known to read them.

use thiserror::Error;

/// A refused or failed registry operation.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SchemaError {
    /// 40401: no such subject.
    #[error("Subject '{0}' not found.")]
    SubjectNotFound(String),
    /// 40402: no such version in the subject.
    #[error("Version {0} not found.")]
    VersionNotFound(String),
    /// 40403: no schema with this id (or this schema is not in the subject).
    #[error("{0}")]
    SchemaNotFound(String),
    /// 40404: the subject was soft deleted.
    #[error("Subject '{0}' was soft deleted. Set permanent=true to delete permanently")]
    SubjectSoftDeleted(String),
    /// 40405: a permanent delete of a subject that was not soft deleted first.
    #[error("Subject '{0}' was not deleted first before being permanently deleted")]
    SubjectNotSoftDeleted(String),
    /// 40406: the version was soft deleted.
    #[error(
        "Subject '{0}' Version {1} was soft deleted. Set permanent=true to delete permanently"
    )]
    VersionSoftDeleted(String, u32),
    /// 40407: a permanent delete of a version that was not soft deleted first.
    #[error("Subject '{0}' Version {1} was not deleted first before being permanently deleted")]
    VersionNotSoftDeleted(String, u32),
    /// 40408: no subject-level compatibility level.
    #[error("Subject '{0}' does not have subject-level compatibility configured")]
    NoSubjectConfig(String),
    /// 40409: no subject-level mode.
    #[error("Subject '{0}' does not have subject-level mode configured")]
    NoSubjectMode(String),
    /// 40901: incompatible with an earlier schema; the messages say why.
    #[error("Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{}]", .messages.join(", "))]
    Incompatible {
        subject: String,
        messages: Vec<String>,
    },
    /// 42201: the schema does not parse or is not valid for its type.
    #[error("Invalid schema: {0}")]
    InvalidSchema(String),
    /// 42202: a version that is neither a positive 32-bit number nor `latest`.
    #[error("The specified version '{0}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\"")]
    InvalidVersion(String),
    /// 42203: an unknown compatibility level.
    #[error("Invalid compatibility level: {0}. Valid values are NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE")]
    InvalidCompatibility(String),
    /// 42204: an unknown mode.
    #[error("Invalid mode: {0}. Valid values are READWRITE, READONLY, READONLY_OVERRIDE, IMPORT")]
    InvalidMode(String),
    /// 42205: the mode forbids the operation (READONLY, or IMPORT rules).
    #[error("{0}")]
    OperationNotPermitted(String),
    /// 42206: the version is referenced by another schema.
    #[error("{0}")]
    ReferenceExists(String),
    /// 42207: an imported id already names another schema.
    #[error("{0}")]
    IdMismatch(String),
    /// 42208: an empty or otherwise unusable subject name.
    #[error("{0}")]
    InvalidSubject(String),
    /// 42209: a limit of `[schema_registry]` was reached.
    #[error("{0}")]
    TooLarge(String),
    /// 50001: the store failed; the outcome may be unknown until restart.
    #[error("Error while storing the schema registry's state: {0}")]
    Store(String),
}

impl SchemaError {
    /// Confluent's `error_code`.
    pub fn code(&self) -> u32 {
        use SchemaError::*;
        match self {
            SubjectNotFound(_) => 40401,
            VersionNotFound(_) => 40402,
            SchemaNotFound(_) => 40403,
            SubjectSoftDeleted(_) => 40404,
            SubjectNotSoftDeleted(_) => 40405,
            VersionSoftDeleted(..) => 40406,
            VersionNotSoftDeleted(..) => 40407,
            NoSubjectConfig(_) => 40408,
            NoSubjectMode(_) => 40409,
            Incompatible { .. } => 40901,
            InvalidSchema(_) => 42201,
            InvalidVersion(_) => 42202,
            InvalidCompatibility(_) => 42203,
            InvalidMode(_) => 42204,
            OperationNotPermitted(_) => 42205,
            ReferenceExists(_) => 42206,
            IdMismatch(_) => 42207,
            InvalidSubject(_) => 42208,
            TooLarge(_) => 42209,
            Store(_) => 50001,
        }
    }

    /// The HTTP status of the answer: the first three digits of the code.
    pub fn status(&self) -> u16 {
        (self.code() / 100) as u16
    }
}

/// The registry's result type.
pub type Result<T> = std::result::Result<T, SchemaError>;

impl From<busbar_broker::BrokerError> for SchemaError {
    fn from(e: busbar_broker::BrokerError) -> Self {
        SchemaError::Store(e.to_string())
    }
}
