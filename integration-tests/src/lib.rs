//! Test support for secondpass: the real Qdrant server ([`real_qdrant`]), a relay in front
//! of it that records what secondpass sent and can answer with faults ([`relay`]), the
//! recorded real-Qdrant exchanges and how to compare with them ([`recordings`],
//! [`grpc_json`]), and stubs of the hosted rerank APIs ([`provider_stubs`]).

pub mod grpc_json;
pub mod provider_stubs;
pub mod real_qdrant;
pub mod recordings;
pub mod relay;
