//! Test support for secondpass: in-process Qdrant test doubles, REST ([`qdrant_double`]) and
//! gRPC ([`grpc_double`], on the same store), and the real Qdrant server ([`real_qdrant`]).

pub mod grpc_double;
pub mod provider_stubs;
pub mod qdrant_double;
pub mod real_qdrant;
