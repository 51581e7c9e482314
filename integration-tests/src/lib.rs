//! Test support for secondpass: in-process Qdrant test doubles, REST ([`qdrant_double`]) and
//! gRPC ([`grpc_double`], on the same store).

pub mod grpc_double;
pub mod provider_stubs;
pub mod qdrant_double;
